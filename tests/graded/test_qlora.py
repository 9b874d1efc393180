"""Graded tests for chapter 12, QLoRA. Each test carries points and a hint for the student.

They judge behaviour: the NF4 levels against the table the QLoRA paper publishes (and against the construction at
another offset, so that a typed-in table does not pass), block scales and nearest levels against a reference written
here, the byte layout bitsandbytes uses, and dequantisation of hand-made quantisation states (so that the parts are
graded independently of each other). The layer's given API (`Linear4bit.from_linear`, its `weight` and `quant_state`)
is the lesson's.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from curriculum import points

CHAPTER = "qlora"

# The NF4 table the QLoRA paper publishes (Appendix E) and bitsandbytes hard-codes (get_4bit_type("nf4")).
PUBLISHED_NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                              -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                              0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                              0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
UNIFORM = torch.linspace(-1, 1, 16)  # a second code, evenly spaced, for tests that must not depend on NF4


def reference_normal_map(offset: float) -> torch.Tensor:
    """The construction, written out: 8 positive and 7 negative normal quantiles, an exact 0, scaled to [-1, 1]."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    positive = normal.icdf(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8)[:-1].double())
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (values / values.max()).float()


def nearest(values: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    return (values.reshape(-1, 1) - code).abs().argmin(dim=1)


def blocks_of(values: torch.Tensor, blocksize: int) -> list[torch.Tensor]:
    flat = values.reshape(-1)
    return [flat[i: i + blocksize] for i in range(0, flat.numel(), blocksize)]


def pack_high_first(indices: torch.Tensor) -> torch.Tensor:
    pairs = indices.reshape(-1, 2).to(torch.uint8)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def dequantize_reference(indices: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    values = code[indices.long()]
    return torch.cat([block * absmax[i] for i, block in enumerate(blocks_of(values, blocksize))])


def hand_made_state(impl, shape, blocksize=64, nested=False, seed=0):
    """(packed bytes, QuantState, the dequantised tensor it stands for), built here without the student's quantiser."""
    generator = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    indices = torch.randint(0, 16, (n,), generator=generator)
    absmax = 0.01 + torch.rand(-(-n // blocksize), generator=generator)
    state = impl.QuantState(absmax, torch.Size(shape), PUBLISHED_NF4.clone(), blocksize, torch.float32, "nf4")
    if nested:
        offset = absmax.mean()
        codes = torch.randint(0, 256, absmax.shape, generator=generator).to(torch.uint8)
        dynamic = torch.linspace(-1, 1, 256)  # any sorted 256-level code will do for the test
        nested_absmax = 0.1 + torch.rand(-(-absmax.numel() // 256), generator=generator)
        absmax = dequantize_reference(codes, nested_absmax, dynamic, 256) + offset
        state.absmax, state.offset = codes, offset
        state.state2 = impl.QuantState(nested_absmax, codes.shape, dynamic, 256, torch.float32, "dynamic")
    expected = dequantize_reference(indices, absmax, PUBLISHED_NF4, blocksize).reshape(shape)
    return pack_high_first(indices), state, expected


# --------------------------------------------------------------------------- the NF4 code


@points(3, "create_normal_map() must return the 16 NF4 levels of the QLoRA paper: 8 positive normal quantiles, 7 "
           "negative ones and an exact 0, sorted, divided by the largest so that the code spans [-1, 1].",
        part="nf4_code")
def test_nf4_is_the_published_table(impl):
    code = impl.create_normal_map()
    assert tuple(code.shape) == (16,), f"16 levels, got shape {tuple(code.shape)}"
    assert code.dtype == torch.float32, f"a float32 table, got {code.dtype}"
    assert torch.allclose(code, PUBLISHED_NF4, atol=1e-6), "the levels differ from the published NF4 table"


@points(2, "NF4 is asymmetric with an exact zero: 8 levels above 0 and 7 below, ending exactly at -1 and 1 (16 "
           "symmetric quantiles would have no zero, and zeros must stay zeros).", part="nf4_code")
def test_nf4_has_an_exact_zero_and_one_more_positive_level(impl):
    code = impl.create_normal_map()
    assert int((code == 0).sum()) == 1, "exactly one level must be exactly 0"
    assert int((code > 0).sum()) == 8 and int((code < 0).sum()) == 7, "8 levels above zero and 7 below"
    assert code.max().item() == 1.0 and code.min().item() == -1.0, "the code spans [-1, 1] exactly"
    assert torch.all(code[1:] > code[:-1]), "sorted, every level distinct"


@points(1, "The levels are built from the quantiles at probabilities from `offset` down to 1/2: another offset gives "
           "other levels (a table typed in from the paper does not follow it).", part="nf4_code")
def test_nf4_follows_the_offset(impl):
    for offset in (0.99, 0.95):
        assert torch.allclose(impl.create_normal_map(offset=offset), reference_normal_map(offset), atol=1e-6), offset


# --------------------------------------------------------------------------- block-wise quantisation and packing


@points(3, "Each block of `blocksize` CONSECUTIVE values (in the flattened tensor) gets one scale, its largest "
           "absolute value: a (4, 128) tensor in blocks of 64 has 8 scales, two per row, not one per column.",
        part="quantize_blockwise")
def test_absmax_per_block_of_consecutive_values(impl):
    generator = torch.Generator().manual_seed(0)
    A = 0.01 * torch.randn(4, 128, generator=generator)
    A[1, 70] = -3.0  # block 3 (row 1, second half)
    A[2, 5] = 2.0  # block 4
    indices, absmax = impl.quantize_blockwise(A, PUBLISHED_NF4, 64)
    expected = torch.stack([b.abs().max() for b in blocks_of(A, 64)])
    assert tuple(absmax.shape) == (8,), f"8 blocks of 64, got absmax of shape {tuple(absmax.shape)}"
    assert torch.allclose(absmax.float(), expected), "each scale is the largest |value| of its 64 consecutive values"
    assert indices.reshape(-1)[1 * 128 + 70].item() == 0 and indices.reshape(-1)[2 * 128 + 5].item() == 15, \
        "a block's largest value lands on the level -1 or 1"


@points(3, "Each value is stored as the index of the NEAREST level of the code after dividing by its block's scale "
           "(not the level below it, and not an index rounded on an evenly spaced grid).", part="quantize_blockwise")
def test_indices_are_the_nearest_level(impl):
    generator = torch.Generator().manual_seed(1)
    for code in (PUBLISHED_NF4, UNIFORM):
        A = torch.randn(3, 64, generator=generator)
        indices, absmax = impl.quantize_blockwise(A, code, 64)
        scaled = torch.cat([b / b.abs().max() for b in blocks_of(A, 64)])
        assert indices.dtype == torch.uint8, f"indices are stored as uint8, got {indices.dtype}"
        assert torch.equal(indices.reshape(-1).long(), nearest(scaled, code)), "not the nearest level"


@points(1, "The last block may be shorter than blocksize: 100 values in blocks of 64 give 2 scales, the second one "
           "from the last 36 values only.", part="quantize_blockwise")
def test_a_shorter_last_block(impl):
    A = torch.linspace(-1, 2, 100)
    indices, absmax = impl.quantize_blockwise(A, PUBLISHED_NF4, 64)
    assert indices.numel() == 100 and absmax.numel() == 2
    assert torch.allclose(absmax.float(), torch.stack([A[:64].abs().max(), A[64:].abs().max()]))


@points(2, "pack_4bit stores two 4-bit indices per byte as bitsandbytes does: the first of each pair in the HIGH "
           "nibble, so [1, 2, 3, 4] packs to the bytes 0x12, 0x34, and unpack_4bit reads it back.",
        part="quantize_blockwise")
def test_packing_layout(impl):
    packed = impl.pack_4bit(torch.tensor([1, 2, 3, 4], dtype=torch.uint8))
    assert packed.dtype == torch.uint8, f"bytes are uint8, got {packed.dtype}"
    assert packed.tolist() == [0x12, 0x34], f"got {[hex(b) for b in packed.tolist()]}"
    indices = torch.randint(0, 16, (64,), generator=torch.Generator().manual_seed(2)).to(torch.uint8)
    assert torch.equal(impl.unpack_4bit(impl.pack_4bit(indices)), indices)


# --------------------------------------------------------------------------- dequantisation and the layer


@points(3, "dequantize_4bit must return each value's level of the code times its block's scale (absmax), in the "
           "state's shape and dtype.", part="dequantize")
def test_dequantize_is_the_level_times_its_scale(impl):
    for shape, blocksize in (((6, 64), 64), ((5, 20), 32)):
        packed, state, expected = hand_made_state(impl, shape, blocksize)
        out = impl.dequantize_4bit(packed, state)
        assert tuple(out.shape) == shape and out.dtype == torch.float32, f"shape {tuple(out.shape)}, dtype {out.dtype}"
        assert torch.allclose(out, expected, atol=1e-6), f"wrong values (shape {shape}, blocksize {blocksize})"


@points(2, "With double quantisation (state.state2 set) the scales are 8-bit codes: dequantise them with state2 "
           "(code times the nested absmax of their block of 256) and add state.offset back before using them.",
        part="dequantize")
def test_dequantize_with_double_quantisation(impl):
    packed, state, expected = hand_made_state(impl, (8, 64 * 40), 64, nested=True)  # 320 scales: two nested blocks
    out = impl.dequantize_4bit(packed, state)
    assert torch.allclose(out, expected, atol=1e-5), "wrong values with a nested state (is the offset added back?)"


@points(3, "Linear4bit's forward must compute F.linear(x, W, bias) with W the dequantised weight, in compute_dtype "
           "(x's dtype when None), and return the result in x's dtype.", part="dequantize")
def test_linear4bit_forward_uses_the_dequantised_weight(impl):
    torch.manual_seed(0)
    linear = nn.Linear(64, 6)
    x = torch.randn(3, 5, 64)
    for kwargs in ({}, {"compute_dtype": torch.float64}, {"compute_dtype": torch.bfloat16}):
        layer = impl.Linear4bit.from_linear(linear, **kwargs)
        state = layer.quant_state
        absmax = state.absmax
        if state.state2 is not None:
            absmax = dequantize_reference(absmax, state.state2.absmax, state.state2.code, state.state2.blocksize) + \
                state.offset
        indices = torch.stack([layer.weight.reshape(-1) >> 4, layer.weight.reshape(-1) & 15], 1).reshape(-1)
        weight = dequantize_reference(indices[:64 * 6], absmax, state.code, state.blocksize).reshape(6, 64)
        dtype = kwargs.get("compute_dtype", torch.float32)
        expected = F.linear(x.to(dtype), weight.to(dtype), linear.bias.to(dtype)).float()
        out = layer(x)
        assert out.dtype == torch.float32, f"the output is in x's dtype, got {out.dtype}"
        assert tuple(out.shape) == (3, 5, 6)
        if dtype == torch.bfloat16:  # rounding to bfloat16 is visible: computing in float32 instead must not pass
            in_float32 = F.linear(x, weight, linear.bias)
            gap = (in_float32 - expected).abs().max()
            assert gap > 0 and (out - expected).abs().max() < gap / 4, \
                "with compute_dtype=torch.bfloat16 the matmul must run in bfloat16 (cast x, W and the bias to it)"
        else:
            assert torch.allclose(out, expected, atol=1e-5), f"not F.linear with the dequantised weight ({kwargs})"


@points(2, "The 4-bit layer stays close to the float layer it came from, and a gradient flows through it to x "
           "(LoRA's layers below it need it), while nothing of the layer itself trains.", part="dequantize")
def test_linear4bit_is_close_and_passes_gradients(impl):
    torch.manual_seed(1)
    linear = nn.Linear(128, 32)
    layer = impl.Linear4bit.from_linear(linear)
    x = torch.randn(16, 128, requires_grad=True)
    out = layer(x)
    reference = linear(x)
    assert ((out - reference).norm() / reference.norm()).item() < 0.15, "far from the float layer"
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "no gradient reached the input"
    assert not any(p.requires_grad for p in layer.parameters()), "nothing of the 4-bit layer trains"
