"""Graded tests for chapter 5, adapters. Each test carries points and a hint for the student.

They judge behaviour (outputs, parameter counts, which tensors train and where the new ones
live, what survives training and a save/load round trip), not attribute names, so any
correct implementation of the notebook's API gets full marks.
"""

import json
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig

CHAPTER = "adapters"

D, L = 16, 2  # the tiny model's width and depth


def tiny_classifier(seed=0, randomize=False) -> SequenceClassifier:
    """A tiny random BERT-mode classifier; `randomize` makes every tensor distinct (LayerNorms and biases too)."""
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=D, n_layers=L, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    model = SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.3 * torch.randn_like(p) + (1.0 if p.dim() == 1 and p.shape[0] == D else 0.0))
    return model


def batch(seed=1):
    return torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(seed))


def trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def inject(impl, model, **config):
    return impl.inject_adapters(model, impl.AdapterConfig(**config), verbose=False)


def layer_norm_and_head_ids(model) -> set[int]:
    ids = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    return ids | {id(p) for p in model.head.parameters()}


def new_trainable(model) -> dict[str, torch.Tensor]:
    """Trainable parameters that are neither LayerNorms nor the head: the adapters."""
    skip = layer_norm_and_head_ids(model)
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in skip}


def adapter_size(d, m) -> int:
    return 2 * d * m + d + m


# --------------------------------------------------------------------------- BottleneckAdapter


@points(2, "At init the adapter must return its input unchanged (zero up-projection + skip connection), have "
           "2*d*m + d + m trainable parameters (down d->m and up m->d, with biases), and the up-projection "
           "must already get a gradient (so the down-projection must not start at zero).", part="BottleneckAdapter")
def test_adapter_is_identity_at_init(impl):
    torch.manual_seed(0)
    adapter = impl.BottleneckAdapter(16, 4, non_linearity="gelu")
    assert sum(p.numel() for p in trainable(adapter)) == adapter_size(16, 4), "wrong number of trainable parameters"
    h = torch.randn(3, 5, 16)
    out = adapter(h)
    assert out.shape == h.shape
    assert torch.allclose(out, h, atol=1e-6), "the adapter is not the identity at init"
    out.pow(2).sum().backward()
    # A weight matrix (not just a bias) must get a gradient, or the bottleneck can never learn.
    grads = [p.grad for p in trainable(adapter) if p.grad is not None and p.dim() >= 2]
    assert grads and max(g.abs().max().item() for g in grads) > 0, "no adapter weight matrix gets a gradient at init"


@points(2, "forward(h) must be h + up(act(down(h))): the skip connection around the bottleneck, with the "
           "chosen non_linearity between the two projections.", part="BottleneckAdapter")
def test_adapter_residual_and_nonlinearity(impl):
    h = torch.randn(4, 6)
    for m, name, act in ((1, "gelu", F.gelu), (3, "relu", F.relu)):
        adapter = impl.BottleneckAdapter(6, m, non_linearity=name)
        with torch.no_grad():
            for p in adapter.parameters():
                p.fill_(0.5)
        # All weights and biases 0.5: down(h) = 0.5*sum(h) + 0.5 in each of the m units,
        # up(a) = 0.5*m*a + 0.5 in each of the d outputs.
        bottleneck = act(0.5 * h.sum(dim=-1, keepdim=True) + 0.5)
        expected = h + 0.5 * m * bottleneck + 0.5
        assert torch.allclose(adapter(h), expected, atol=1e-5), f"wrong output for m={m}, non_linearity={name!r}"


# --------------------------------------------------------------------------- bottleneck_dim


@points(1, "bottleneck_dim must return m = bottleneck_size when it is given, else int(d_model // reduction_factor), "
           "and refuse a bottleneck that is none (m < 1 or m > d_model) with a ValueError naming the field that "
           "produced it: bottleneck_size or reduction_factor.", part="bottleneck_dim")
def test_bottleneck_dim(impl):
    assert impl.AdapterConfig(bottleneck_size=3).bottleneck_dim(D) == 3
    assert impl.AdapterConfig(reduction_factor=4).bottleneck_dim(D) == D // 4
    assert impl.AdapterConfig(reduction_factor=2.5).bottleneck_dim(D) == int(D // 2.5)
    cases = [
        (dict(bottleneck_size=2 * D), "bottleneck_size"),  # wider than d_model: no bottleneck
        (dict(reduction_factor=4 * D), "reduction_factor"),  # d_model // 64 = 0
        (dict(reduction_factor=0.25), "reduction_factor"),  # m = 4 * d_model
    ]
    for settings, field in cases:
        try:
            impl.AdapterConfig(**settings).bottleneck_dim(D)
        except ValueError as exc:
            assert field in str(exc), f"the error for {settings} must name {field!r}: {exc}"
        else:
            raise AssertionError(f"{settings} was accepted for d_model={D}")


# --------------------------------------------------------------------------- inject_adapters


@points(3, "inject_adapters must put one adapter after attn.out_proj and one after mlp.fc2 in every block "
           "(only where mh_adapter / output_adapter say), with m = d_model // reduction_factor unless "
           "bottleneck_size is given, and leave the model's output unchanged at init.", part="inject_adapters")
def test_adapters_wrap_out_proj_and_fc2(impl):
    x = batch()
    for settings, slots, m in ((dict(bottleneck_size=4), ("attn.out_proj", "mlp.fc2"), 4),
                               (dict(reduction_factor=8, output_adapter=False), ("attn.out_proj",), 2),
                               (dict(bottleneck_size=3, mh_adapter=False), ("mlp.fc2",), 3)):
        model = tiny_classifier()
        before = model(x).logits.detach()
        inject(impl, model, **settings)
        assert torch.allclose(model(x).logits, before, atol=1e-6), f"{settings}: the output changed at init"
        new = new_trainable(model)
        n_new = sum(p.numel() for p in new.values())
        expected = L * len(slots) * adapter_size(D, m)
        assert n_new == expected, f"{settings}: {n_new} new trainable parameters, expected {expected} " \
                                  f"({len(slots)} adapter(s) per block with m={m})"
        with torch.no_grad():
            for p in new.values():
                p.add_(0.5 * torch.randn_like(p))
        assert not torch.allclose(model(x).logits, before, atol=1e-4), f"{settings}: the adapters are not used"
        # Placement is judged by what the forward computes, wherever the adapters are stored (wrapped
        # layers, modules on the block called by hooks, ...): with every frozen projection zeroed, a
        # sub-layer whose projection is followed by an adapter outputs adapter(0), a non-zero constant;
        # without one it outputs 0 (and an adapter on the projection's input would give 0 too).
        for block in model.backbone.blocks:
            for slot in ("attn.out_proj", "mlp.fc2"):
                with torch.no_grad():
                    for p in block.get_submodule(slot).parameters():
                        if not p.requires_grad:
                            p.zero_()
        outputs = sublayer_outputs(model, x)
        for i in range(L):
            for slot in ("attn.out_proj", "mlp.fc2"):
                out = outputs[i, slot]
                if slot in slots:
                    assert out.abs().max() > 0 and torch.allclose(out, out[:1, :1].expand_as(out), atol=1e-6), \
                        f"{settings}: block {i}: an adapter must act on the output of {slot}"
                else:
                    assert torch.all(out == 0), f"{settings}: block {i}: unexpected adapter after {slot}"


def sublayer_outputs(model, x) -> dict[tuple[int, str], torch.Tensor]:
    """What each block's attention and MLP sub-layers add to the residual stream (read by forward hooks)."""
    seen, handles = {}, []
    for i, block in enumerate(model.backbone.blocks):
        for slot, module in (("attn.out_proj", block.attn), ("mlp.fc2", block.mlp)):
            def hook(_module, _args, out, key=(i, slot)):
                seen[key] = (out[0] if isinstance(out, tuple) else out).detach()
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@points(2, "Only the adapters, the LayerNorms (when train_layer_norms=True) and the head may train: freeze "
           "every other backbone tensor.", part="inject_adapters")
def test_only_adapters_layer_norms_and_head_train(impl):
    for train_layer_norms in (True, False):
        model = tiny_classifier(randomize=True)
        layer_norms = [p.detach().clone() for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()]
        others = [p.detach().clone() for n, p in model.backbone.named_parameters()
                  if not any(p is q for m in model.modules() if isinstance(m, nn.LayerNorm) for q in m.parameters())]
        inject(impl, model, bottleneck_size=4, train_layer_norms=train_layer_norms)
        n_head = D * 2 + 2
        n_layer_norms = (2 * L + 1) * 2 * D
        expected = n_head + 2 * L * adapter_size(D, 4) + (n_layer_norms if train_layer_norms else 0)
        n_trainable = sum(p.numel() for p in trainable(model))
        assert n_trainable == expected, f"train_layer_norms={train_layer_norms}: {n_trainable} trainable parameters, " \
                                        f"expected {expected}"
        assert all(p.requires_grad for p in model.head.parameters()), "the task head must stay trainable"
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for original in others:
            assert any(p.shape == original.shape and torch.equal(p, original) for p in frozen), \
                "a pretrained projection or embedding is trainable (or was changed)"
        pool = trainable(model) if train_layer_norms else frozen
        for original in layer_norms:
            assert any(p.shape == original.shape and torch.equal(p, original) for p in pool), \
                f"train_layer_norms={train_layer_norms}: a LayerNorm has the wrong trainability"


@points(1, "Training must leave every pretrained projection and embedding bit-for-bit unchanged, while the "
           "adapters learn.", part="inject_adapters")
def test_training_keeps_pretrained_weights(impl):
    model = tiny_classifier(randomize=True)
    layer_norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    originals = [p.detach().clone() for p in model.backbone.parameters() if id(p) not in layer_norm_ids]
    inject(impl, model, bottleneck_size=4)
    adapters_before = [p.detach().clone() for p in new_trainable(model).values()]
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(3):
        loss = model(batch(), labels=torch.tensor([0, 1, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for original in originals:
        assert any(p.shape == original.shape and torch.equal(p, original) for p in frozen), \
            "a pretrained projection or embedding changed during training"
    adapters_after = list(new_trainable(model).values())
    assert adapters_after and all(not torch.equal(a, b) for a, b in zip(adapters_before, adapters_after)), \
        "every adapter tensor should move after three optimizer steps"


# --------------------------------------------------------------------------- save / load


@points(2, "Saving and loading must give the same model: AdapterConfig.inject calls your inject_adapters, so the "
           "core's save_peft_model stores only the tensors it left trainable (adapters, LayerNorms, head) and "
           "load_peft_model, which injects again into a fresh base model, must find the same adapters under the same "
           "names.", part="inject_adapters")
def test_save_and_load_round_trip(impl):
    from minitransformer.peft import load_peft_model, save_peft_model

    model = tiny_classifier()
    config = impl.AdapterConfig(bottleneck_size=4)
    impl.inject_adapters(model, config, verbose=False)
    with torch.no_grad():
        for p in trainable(model):
            p.add_(0.3 * torch.randn_like(p))
    x = batch()
    with tempfile.TemporaryDirectory() as tmp:
        save_peft_model(model, config, tmp)
        assert json.loads((Path(tmp) / "adapter_config.json").read_text())["peft_type"] == "BOTTLENECK"
        stored = sum(f.stat().st_size for f in Path(tmp).iterdir())
        n_trainable = sum(p.numel() for p in trainable(model))
        assert stored < 4 * n_trainable + 4096, "the files hold more than the trained tensors"
        reloaded = load_peft_model(tiny_classifier(), tmp, config_class=impl.AdapterConfig)
    assert torch.allclose(reloaded.eval()(x).logits, model(x).logits, atol=1e-6), \
        "the reloaded model gives different outputs"
