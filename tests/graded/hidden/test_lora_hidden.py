"""Hidden graded tests for chapter 3, LoRA: used when grading, left out of the student release
(`python -m curriculum.release`) and reported separately. They use only the chapter's public API."""

import torch
import torch.nn as nn

from curriculum import points

CHAPTER = "lora"


def randomized_layer(impl):
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = impl.LoraLinear(base, r=2, lora_alpha=4, lora_dropout=0.0).eval()
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p))
    return base, layer


@points(2, "Calling merge() twice must not add the update twice (refuse with an error, or do nothing), and "
           "unmerge() on a layer that is not merged must not subtract it.", part="LoraLinear")
def test_double_merge_refused_or_harmless(impl):
    base, layer = randomized_layer(impl)
    original = base.weight.detach().clone()
    x = torch.randn(4, 6)
    before = layer(x).detach()
    try:
        layer.unmerge()  # not merged yet
    except (RuntimeError, ValueError):
        pass
    assert torch.equal(base.weight, original), "unmerge() before merge() changed the base weight"
    layer.merge()
    merged = base.weight.detach().clone()
    try:
        layer.merge()
    except (RuntimeError, ValueError):
        pass
    assert torch.equal(base.weight, merged), "the second merge() changed the base weight again"
    assert torch.allclose(layer(x), before, atol=1e-5), "after merging twice the output is not the adapted output"
    layer.unmerge()
    assert torch.allclose(base.weight, original, atol=1e-6), "unmerge() after a double merge did not restore the weight"
