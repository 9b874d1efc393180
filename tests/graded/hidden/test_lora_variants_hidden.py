"""Hidden graded tests for chapter 11, LoRA's descendants: used when grading, left out of the student release
(`python -m curriculum.release`) and reported separately. They use only the chapter's public API, on shapes and
options the public tests do not use (a wide layer without a bias, a rank that is not 2, DoRA under LoRA+)."""

import torch
import torch.nn as nn

from curriculum import points

CHAPTER = "lora_variants"


def wide_layer(seed=3) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 9, bias=False)  # more outputs than inputs, no bias


@points(2, "DoRA on a layer without a bias and with more outputs than inputs: the magnitude has one entry per OUTPUT "
           "feature and starts as the row norms of W0, and the layer starts as the base layer.", part="dora")
def test_dora_on_a_wide_layer_without_bias(impl):
    base = wide_layer()
    layer = impl.LoraVariantLinear(wide_layer(), r=3, lora_alpha=6, use_dora=True)
    magnitude = [p for p in layer.parameters() if p.requires_grad and p.ndim == 1]
    assert len(magnitude) == 1 and tuple(magnitude[0].shape) == (9,), "one magnitude per output feature"
    assert torch.allclose(magnitude[0], base.weight.norm(dim=1), atol=1e-6)
    x = torch.randn(5, 4)
    assert torch.allclose(layer(x), base(x), atol=1e-5)


@points(2, "PiSSA at rank 3 on a wide layer: s B A is W0's best rank-3 approximation and the layer starts as the "
           "base layer.", part="pissa")
def test_pissa_at_rank_3_on_a_wide_layer(impl):
    base = wide_layer()
    layer = impl.LoraVariantLinear(wide_layer(), r=3, lora_alpha=6, init_lora_weights="pissa")
    u, s, vh = torch.linalg.svd(base.weight.detach(), full_matrices=False)
    top = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
    assert torch.allclose(layer.get_delta_weight(), top, atol=1e-5)
    x = torch.randn(5, 4)
    assert torch.allclose(layer(x), base(x), atol=1e-5)


@points(1, "LoRA+ on a DoRA layer: the magnitude vector (a 1-D trainable tensor) trains at lr * loraplus_lr_ratio, "
           "as HF PEFT groups it, and A at lr.", part="loraplus")
def test_loraplus_puts_the_magnitude_with_b(impl):
    layer = impl.LoraVariantLinear(wide_layer(), r=3, lora_alpha=6, use_dora=True)
    optimizer = impl.create_loraplus_optimizer(layer, torch.optim.AdamW, lr=2e-3, loraplus_lr_ratio=4)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    magnitude = next(p for p in layer.parameters() if p.requires_grad and p.ndim == 1)
    assert abs(rate[id(magnitude)] - 8e-3) < 1e-12
    assert abs(rate[id(layer.lora_B.weight)] - 8e-3) < 1e-12 and abs(rate[id(layer.lora_A.weight)] - 2e-3) < 1e-12
