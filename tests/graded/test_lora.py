"""Graded tests for chapter 3, LoRA. Each test carries points and a hint for the student.

They judge behaviour (outputs, shapes, which tensors train, merge equality), not attribute
names, so any correct implementation of the notebook's API gets full marks.
"""

import torch
import torch.nn as nn

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig

CHAPTER = "lora"


def linear(in_features=6, out_features=5, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def tiny_classifier(seed=0) -> SequenceClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


def batch(seed=1):
    return torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(seed))


def set_all_trainable_to_ones(module: nn.Module) -> None:
    with torch.no_grad():
        for p in trainable(module):
            p.fill_(1.0)


def trained_lora_classifier(impl):
    """The tiny classifier with LoRA (r=2) on q_proj and v_proj, every trainable tensor moved as if trained."""
    model = tiny_classifier()
    config = impl.LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    impl.inject_lora(model, config, verbose=False)
    with torch.no_grad():
        for p in trainable(model):
            p.add_(0.1 * torch.randn_like(p))
    return model, config


# --------------------------------------------------------------------------- LoraLinear


@points(2, "At init the LoRA layer must give exactly the base layer's output: B starts at zero, "
           "so that the adapted model starts identical to the base model.", part="LoraLinear")
def test_starts_identical_to_base(impl):
    base = linear()
    layer = impl.LoraLinear(base, r=2, lora_alpha=4, lora_dropout=0.0)
    x = torch.randn(4, 6)
    assert torch.allclose(layer(x), base(x), atol=1e-7)


@points(2, "Only the two low-rank matrices may train: freeze the wrapped nn.Linear and create "
           "r*(in_features + out_features) new trainable parameters.", part="LoraLinear")
def test_only_low_rank_matrices_train(impl):
    base = linear(6, 5)
    layer = impl.LoraLinear(base, r=3, lora_alpha=6, lora_dropout=0.0)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert sum(p.numel() for p in trainable(layer)) == 3 * (6 + 5)
    assert sorted(tuple(p.shape) for p in trainable(layer)) == sorted([(3, 6), (5, 3)]) or \
        sorted(tuple(p.shape) for p in trainable(layer)) == sorted([(6, 3), (3, 5)])


@points(2, "A needs a random (non-zero) init while B is zero: then B gets a non-zero gradient at the "
           "first step. If both were zero, LoRA could never learn.", part="LoraLinear")
def test_learning_can_start(impl):
    layer = impl.LoraLinear(linear(), r=2, lora_alpha=4, lora_dropout=0.0)
    layer(torch.randn(4, 6)).pow(2).sum().backward()
    grads = [p.grad for p in trainable(layer)]
    assert all(g is not None for g in grads), "every LoRA matrix must receive a gradient"
    assert max(g.abs().max().item() for g in grads) > 0, "the gradient of the LoRA matrices is zero"
    # Told apart by shape, not name: A touches in_features (6), B out_features (5).
    a = [p for p in trainable(layer) if 6 in p.shape]
    b = [p for p in trainable(layer) if 5 in p.shape]
    assert len(a) == 1 and len(b) == 1, "expected two LoRA matrices, A (r x in_features) and B (out_features x r)"
    assert torch.all(b[0] == 0), "B (out_features x r) must start at zero"
    assert a[0].abs().sum() > 0, "A (r x in_features) must start random, not zero"


@points(2, "The update must be scaled by lora_alpha / r: h = W0 x + (lora_alpha / r) B A x.", part="LoraLinear")
def test_scaling_is_alpha_over_r(impl):
    base = linear()
    x = torch.randn(4, 6)
    for r, alpha in ((2, 4.0), (4, 4.0), (1, 3.0)):
        layer = impl.LoraLinear(base, r=r, lora_alpha=alpha, lora_dropout=0.0).eval()
        set_all_trainable_to_ones(layer)
        # With A and B all ones, B A = r * ones, so the update is alpha * sum(x) on every output.
        expected = base(x) + alpha * x.sum(dim=-1, keepdim=True)
        assert torch.allclose(layer(x), expected, atol=1e-5), f"wrong output for r={r}, lora_alpha={alpha}"


@points(1, "Dropout belongs on the LoRA branch only (lora_dropout(x) before A); the base layer's "
           "output must never be dropped.", part="LoraLinear")
def test_dropout_only_on_lora_branch(impl):
    base = linear()
    layer = impl.LoraLinear(base, r=2, lora_alpha=4, lora_dropout=0.5).train()
    x = torch.randn(64, 6)
    assert torch.allclose(layer(x), base(x), atol=1e-7), "with B = 0 the output must equal base(x) even in training mode"


@points(3, "merge() must fold (lora_alpha / r) B A into the base weight so the merged layer gives the same "
           "output as the unmerged one, without adding the update twice (a second merge() may do nothing or raise "
           "a RuntimeError or ValueError).", part="merge")
def test_merge_keeps_outputs(impl):
    base = linear()
    layer = impl.LoraLinear(base, r=2, lora_alpha=4, lora_dropout=0.0).eval()
    with torch.no_grad():
        for p in trainable(layer):
            p.copy_(torch.randn_like(p))
    x = torch.randn(4, 6)
    before = layer(x).detach()
    weight_before = base.weight.detach().clone()
    layer.merge()
    try:
        layer.merge()  # a second merge must not add the update again: refusing it is fine too
    except (RuntimeError, ValueError):
        pass
    assert not torch.equal(base.weight, weight_before), "merge() must change the base weight"
    assert torch.allclose(layer(x), before, atol=1e-5)
    assert torch.allclose(base(x), before, atol=1e-5), "after merging, the base layer alone must give the adapted output"


@points(2, "unmerge() must subtract the update again and restore the base weight.", part="merge")
def test_unmerge_restores_base(impl):
    base = linear()
    original = base.weight.detach().clone()
    layer = impl.LoraLinear(base, r=2, lora_alpha=4, lora_dropout=0.0).eval()
    with torch.no_grad():
        for p in trainable(layer):
            p.copy_(torch.randn_like(p))
    x = torch.randn(4, 6)
    before = layer(x).detach()
    layer.merge()
    layer.unmerge()
    assert torch.allclose(base.weight, original, atol=1e-6)
    assert torch.allclose(layer(x), before, atol=1e-5)


@points(1, "LoraLinear must reject a rank r <= 0 with a ValueError that names r.", part="LoraLinear")
def test_rejects_bad_rank(impl):
    for r in (0, -2):
        try:
            impl.LoraLinear(linear(), r=r, lora_alpha=4)
        except ValueError as exc:
            assert "r" in str(exc)
        else:
            raise AssertionError(f"r={r} was accepted")


# --------------------------------------------------------------------------- inject_lora


@points(3, "inject_lora must wrap exactly the target layers (matched by name suffix), freeze the whole "
           "backbone, keep the head trainable, and leave the model's output unchanged at init.", part="inject_lora")
def test_inject_targets_and_freezes(impl):
    model = tiny_classifier()
    x = batch()
    before = model(x).logits.detach()
    impl.inject_lora(model, impl.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]), verbose=False)
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    head = [n for n in trainable_names if n.startswith("head.")]
    lora = [n for n in trainable_names if not n.startswith("head.")]
    assert sorted(head) == ["head.bias", "head.weight"], "the task head must stay trainable"
    assert all(".q_proj." in n or ".v_proj." in n for n in lora), f"unexpected trainable tensors: {lora}"
    assert sum(model.get_parameter(n).numel() for n in lora) == 2 * 2 * 2 * (16 + 16)  # layers x {q,v} x r(d+d)
    assert torch.allclose(model(x).logits, before, atol=1e-6)


@points(2, "inject_lora must raise a ValueError naming the target when target_modules matches no layer "
           "(a typo must not silently train only the head).", part="inject_lora")
def test_inject_unknown_target(impl):
    model = tiny_classifier()
    try:
        impl.inject_lora(model, impl.LoraConfig(r=2, target_modules=["qproj"]), verbose=False)
    except ValueError as exc:
        assert "qproj" in str(exc)
    else:
        raise AssertionError("target_modules=['qproj'] was accepted")


@points(1, "inject_lora must also refuse a list in which any one entry matches nothing (here 'vproj' next to a "
           "valid 'q_proj'), naming it: use find_targets, which checks every entry.", part="inject_lora")
def test_inject_rejects_any_unmatched_entry(impl):
    model = tiny_classifier()
    try:
        impl.inject_lora(model, impl.LoraConfig(r=2, target_modules=["q_proj", "vproj"]), verbose=False)
    except ValueError as exc:
        assert "vproj" in str(exc)
    else:
        raise AssertionError("target_modules=['q_proj', 'vproj'] was accepted")


@points(2, "Training must leave every original backbone tensor bit-for-bit unchanged: "
           "only the LoRA matrices and the head may move.", part="inject_lora")
def test_training_keeps_backbone_frozen(impl):
    model = tiny_classifier()
    original = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    impl.inject_lora(model, impl.LoraConfig(r=2, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1"]),
                     verbose=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = model(batch(), labels=torch.tensor([0, 1, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    frozen = {n: p for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert len(frozen) == len(original), "the number of frozen backbone tensors changed"
    for tensor in original.values():
        assert any(t.shape == tensor.shape and torch.equal(t, tensor) for t in frozen.values())


@points(2, "merge_lora then unmerge_lora on a whole model must keep its outputs (merged) and restore its "
           "weights (unmerged).", part="merge")
def test_model_merge_round_trip(impl):
    reference = {n: p.detach().clone() for n, p in tiny_classifier().backbone.named_parameters()}
    model, _ = trained_lora_classifier(impl)
    x = batch()
    before = model(x).logits.detach()
    impl.merge_lora(model)
    assert torch.allclose(model(x).logits, before, atol=1e-5)
    impl.unmerge_lora(model)
    restored = [p for p in model.backbone.parameters() if not p.requires_grad]
    assert sum(p.numel() for p in restored) == sum(p.numel() for p in reference.values())
    assert torch.allclose(model(x).logits, before, atol=1e-5)


@points(2, "merge_and_unload must merge every LoRA update and put plain nn.Linear layers back: no LoraLinear left, "
           "same outputs.", part="merge")
def test_merge_and_unload_gives_plain_linear_layers(impl):
    model, _ = trained_lora_classifier(impl)
    x = batch()
    before = model(x).logits.detach()
    plain = impl.merge_and_unload(model)
    for block in plain.backbone.blocks:
        for layer in (block.attn.q_proj, block.attn.v_proj):
            assert type(layer) is nn.Linear, f"found a {type(layer).__name__} where a plain nn.Linear belongs"
    assert torch.allclose(plain(x).logits, before, atol=1e-5)


# --------------------------------------------------------------------------- save / load (the PEFT core)


@points(2, "Saving and loading must give the same model: LoraConfig.inject calls your inject_lora, so the core's "
           "save_peft_model stores only the tensors it left trainable (a small file) and load_peft_model, which "
           "injects again into a fresh base model, must find the same layers under the same names.",
        part="inject_lora")
def test_save_and_load_round_trip(impl):
    import json
    import tempfile
    from pathlib import Path

    from minitransformer.peft import load_peft_model, save_peft_model

    model, config = trained_lora_classifier(impl)
    x = batch()
    with tempfile.TemporaryDirectory() as tmp:
        save_peft_model(model, config, tmp)
        assert json.loads((Path(tmp) / "adapter_config.json").read_text())["peft_type"] == "LORA"
        stored = sum(f.stat().st_size for f in Path(tmp).iterdir())
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert stored < 4 * n_trainable + 4096, "the files hold more than the trained tensors"
        reloaded = load_peft_model(tiny_classifier(), tmp, config_class=impl.LoraConfig)
    assert torch.allclose(reloaded.eval()(x).logits, model(x).logits, atol=1e-6)
