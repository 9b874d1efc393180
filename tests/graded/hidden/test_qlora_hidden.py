"""Hidden graded tests for chapter 12, QLoRA: used when grading, left out of the student release
(`python -m curriculum.release`) and reported separately. They use only the chapter's public API, on shapes the
public tests do not use (another block size, a 3-D tensor, a layer without a bias, inputs with two batch axes)."""

import torch
import torch.nn as nn

from curriculum import points

CHAPTER = "qlora"


@points(2, "Blocks are consecutive values of the flattened tensor at any blocksize: a (3, 5, 7) tensor in blocks of "
           "32 has 4 scales, each the largest |value| of its block, and every index is the nearest level.",
        part="quantize_blockwise")
def test_blocks_of_32_on_a_3d_tensor(impl):
    torch.manual_seed(5)
    values = torch.randn(3, 5, 7)
    code = impl.create_normal_map()
    indices, absmax = impl.quantize_blockwise(values, code, blocksize=32)
    flat = values.reshape(-1)
    assert absmax.shape == (4,) and indices.shape == (105,)
    expected = torch.stack([flat[i:i + 32].abs().max() for i in range(0, 105, 32)])
    assert torch.allclose(absmax, expected)
    scaled = flat / expected.repeat_interleave(32)[:105]
    nearest = (scaled[:, None] - code[None]).abs().argmin(1)
    assert torch.equal(indices.long(), nearest)


@points(2, "A 4-bit layer without a bias works on inputs with two batch axes, and its output is F.linear with the "
           "dequantised weight.", part="dequantize")
def test_linear4bit_without_bias_on_4d_inputs(impl):
    torch.manual_seed(6)
    linear = nn.Linear(128, 24, bias=False)
    layer = impl.Linear4bit.from_linear(linear, compress_statistics=True)
    x = torch.randn(2, 3, 5, 128)
    weight = impl.dequantize_4bit(layer.weight, layer.quant_state)
    out = layer(x)
    assert out.shape == (2, 3, 5, 24)
    assert torch.allclose(out, x @ weight.T, atol=1e-5)
    assert ((out - linear(x)).norm() / linear(x).norm()).item() < 0.15
