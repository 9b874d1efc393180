"""The papers' controls (`experiments.controls`): BitFit's random subset of the same size."""

import pytest
import torch

from experiments.controls import bias_count, random_subset
from minitransformer import changed_tensors, recipes, state_fingerprint


def trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def test_the_subset_has_bitfits_count_and_starts_as_the_pretrained_model():
    model = recipes.fresh_classifier(seed=0)
    ids = torch.randint(0, 200, (2, 10))
    before = model(ids).logits
    biases = bias_count(model)
    random_subset(model, seed=0)
    counts = {n: p.numel() for n, p in trainable(model).items()}
    assert sum(v for n, v in counts.items() if not n.startswith("head.")) == biases
    assert counts["head.weight"] + counts["head.bias"] == sum(p.numel() for p in model.head.parameters())
    assert torch.equal(model(ids).logits, before)  # delta starts at zero


def test_a_training_step_moves_only_the_drawn_numbers():
    model = random_subset(recipes.fresh_classifier(seed=0), seed=0)
    originals = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("original")}
    frozen = state_fingerprint(model)
    optimizer = torch.optim.AdamW(trainable(model).values(), lr=0.1, weight_decay=0.0)
    ids = torch.randint(0, 200, (4, 10))
    torch.nn.functional.cross_entropy(model(ids).logits, torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    changed = set(changed_tensors(model, frozen))
    assert changed and all("delta" in n or n.startswith("head.") for n in changed)
    for name, p in model.named_parameters():
        if name.endswith("original"):
            assert torch.equal(p, originals[name]), f"{name}: W0 must stay bit-for-bit frozen"
    # the effective weights differ from W0 exactly where a number was drawn (and got a non-zero gradient)
    attn = model.backbone.blocks[0].attn.q_proj
    moved = (attn.weight != attn.parametrizations.weight.original).flatten().nonzero().flatten()
    assert 0 < len(moved) and set(moved.tolist()) <= set(attn.parametrizations.weight[0].indices.tolist())


def test_each_seed_draws_its_own_subset_and_the_same_seed_the_same():
    def drawn(seed):
        model = random_subset(recipes.fresh_classifier(seed=0), seed=seed)
        return {n: b.tolist() for n, b in model.named_buffers() if n.endswith("indices")}

    assert drawn(1) == drawn(1)
    assert drawn(1) != drawn(2)


def test_a_bad_count_is_one_clear_error():
    with pytest.raises(ValueError, match="count must be between 1 and"):
        random_subset(recipes.fresh_classifier(seed=0), count=0)
