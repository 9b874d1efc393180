"""Graded tests for chapter 8, prefix tuning. Each test carries points and a hint for the student.

They judge behaviour: the shapes of the prefix, its values against an explicit reference, what a
prefix does inside the backbone (positions after the prefix, a longer attention mask), which
tensors train, and that dropping the MLP changes nothing.
"""

import tempfile

import pytest
import torch
import torch.nn as nn

from curriculum import points
from minitransformer import MiniTransformer, TransformerConfig
from minitransformer.peft import load_peft_model, save_peft_model, state_fingerprint, changed_tensors

CHAPTER = "prefix_tuning"

L, H, D = 2, 2, 16  # layers, heads, d_model of the tiny backbone
HEAD = D // H


def tiny_gpt(seed=0) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=24, d_model=D, n_layers=L, n_heads=H, d_ff=32,
                               dropout=0.0, mode="gpt")
    return MiniTransformer(config).eval()


def ids(batch=3, length=5, seed=1):
    return torch.randint(1, 40, (batch, length), generator=torch.Generator().manual_seed(seed))


def trainable(module):
    return [p for p in module.parameters() if p.requires_grad]


def encoder(impl, P=3, k=8, **options):
    config = impl.PrefixTuningConfig(num_virtual_tokens=P, encoder_hidden_size=k, **options).for_backbone(tiny_gpt())
    return impl.PrefixEncoder(config)


def randomise(module, seed=2):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in trainable(module):
            p.copy_(torch.randn_like(p) * 0.5)


def prefix_model(impl, P=3, **options):
    model = impl.PrefixTuningModel(tiny_gpt(), impl.PrefixTuningConfig(num_virtual_tokens=P, encoder_hidden_size=8,
                                                                       **options))
    randomise(model)
    return model.eval()


def table_layout(flat, P):
    """The reference layout: row p of the (P, L*2*d) matrix is [layer 0 key | layer 0 value | layer 1 key | ...],
    each split into H heads. Returns L pairs of (1, H, P, h)."""
    kv = flat.view(P, 2 * L, H, HEAD).permute(1, 2, 0, 3)
    return [(kv[2 * i][None], kv[2 * i + 1][None]) for i in range(L)]


# --------------------------------------------------------------------------- PrefixEncoder


@points(2, "forward(batch_size) must return past_key_values: one (key, value) pair per layer, each "
           "(batch_size, num_attention_heads, num_virtual_tokens, head_dim), the same prefix in every row.",
        part="PrefixEncoder")
def test_prefix_shapes(impl):
    for projection in (True, False):
        prefix = encoder(impl, P=3, prefix_projection=projection)(5)
        assert len(prefix) == L, f"expected {L} (key, value) pairs, got {len(prefix)}"
        for pair in prefix:
            assert len(pair) == 2
            for t in pair:
                assert tuple(t.shape) == (5, H, 3, HEAD), f"got shape {tuple(t.shape)}, expected (5, {H}, 3, {HEAD})"
                assert torch.equal(t[0], t[4]), "every row of the batch must hold the same prefix"


@points(2, "Count the trainable parameters: with the MLP, P' (P x d) + Linear(d, k) + Linear(k, L*2*d); "
           "without it, only the prefix table (P x L*2*d).", part="PrefixEncoder")
def test_parameter_counts(impl):
    P, k = 3, 8
    width = L * 2 * D
    with_mlp = sum(p.numel() for p in trainable(encoder(impl, P, k)))
    assert with_mlp == P * D + D * k + k + k * width + width, f"with the MLP: {with_mlp} trainable parameters"
    table = sum(p.numel() for p in trainable(encoder(impl, P, k, prefix_projection=False)))
    assert table == P * width, f"without the MLP: {table} trainable parameters, expected P*L*2*d = {P * width}"


@points(3, "Without the MLP the prefix is the table itself: row p holds [layer 0 key | layer 0 value | layer 1 key | "
           "...], each split into heads of size d/H. Use view(P, L*2, H, h) and permute, not a different order.",
        part="PrefixEncoder")
def test_table_layout_is_the_reference(impl):
    enc = encoder(impl, P=3, prefix_projection=False)
    (table,) = trainable(enc)
    with torch.no_grad():
        table.copy_(torch.arange(table.numel(), dtype=torch.float32).view_as(table))
    flat = table.detach().reshape(3, -1)
    for (k, v), (k_ref, v_ref) in zip(enc(2), table_layout(flat, 3)):
        assert torch.equal(k[:1], k_ref) and torch.equal(v[:1], v_ref), "the keys/values are not where the layout puts them"


@points(3, "With prefix_projection=True the prefix is MLP(P'): Linear(d, k), Tanh, Linear(k, L*2*d) applied to "
           "each of the P rows of P' (P x d), then laid out as without the MLP.", part="PrefixEncoder")
def test_mlp_reparameterisation_is_the_reference(impl):
    enc = encoder(impl, P=3, k=8)
    randomise(enc)
    linears = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2, f"expected two nn.Linear layers in the MLP, found {len(linears)}"
    first, second = sorted(linears, key=lambda m: m.in_features != D)
    (p_prime,) = [p for p in trainable(enc) if tuple(p.shape) == (3, D)]
    flat = second(torch.tanh(first(p_prime))).detach()  # (P, L*2*d)
    for (k, v), (k_ref, v_ref) in zip(enc(1), table_layout(flat, 3)):
        assert torch.allclose(k, k_ref, atol=1e-6) and torch.allclose(v, v_ref, atol=1e-6)


# --------------------------------------------------------------------------- in the backbone


@points(3, "A prefix must act exactly like a KV cache of P earlier tokens: the real tokens' positions start at P "
           "and every token also attends to the P prefix positions (the mask grows by P ones).",
        part="PrefixTuningModel")
def test_prefix_acts_as_a_kv_cache(impl):
    backbone = tiny_gpt()
    context, x = ids(1, 4, seed=3), ids(3, 5, seed=4)
    cache = backbone(context, use_cache=True).past_key_values  # L pairs of (1, H, 4, h)
    flat = torch.stack([t[0] for pair in cache for t in pair]).permute(2, 0, 1, 3).reshape(4, -1)
    model = impl.PrefixTuningModel(tiny_gpt(), impl.PrefixTuningConfig(num_virtual_tokens=4, prefix_projection=False))
    (table,) = trainable(model)
    with torch.no_grad():
        table.copy_(flat.view_as(table))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    got = model(x, attention_mask=mask).logits  # (3, 5, V)
    full = backbone(torch.cat([context.expand(3, -1), x], 1), torch.cat([torch.ones(3, 4, dtype=torch.long), mask], 1)).logits
    for row in range(3):
        n = int(mask[row].sum())
        assert torch.allclose(got[row, :n], full[row, 4:4 + n], atol=1e-5), \
            "the prefixed model does not match the backbone reading the same keys/values as a cache"


@points(2, "Only the prefix encoder trains: the backbone is frozen, gets no gradient and stays bit-identical "
           "after an optimizer step.", part="PrefixTuningModel")
def test_backbone_frozen_and_bit_identical(impl):
    model = prefix_model(impl)
    before = state_fingerprint(model.backbone)
    assert not any(p.requires_grad for p in model.backbone.parameters()), "freeze the backbone"
    x = ids()
    model.train()
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    model(x, labels=x).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable(model)), \
        "every prefix parameter must receive a gradient"
    optimizer.step()
    assert not changed_tensors(model.backbone, before), "a backbone tensor changed"


@points(1, "Bad input must fail clearly: a prefix plus an input longer than the context is a ValueError.",
        part="PrefixTuningModel")
def test_too_long_input_is_refused(impl):
    model = prefix_model(impl, P=3)
    model(ids(2, 24 - 3))  # fits exactly
    with pytest.raises(ValueError, match="max_seq_len"):
        model(ids(2, 24 - 3 + 1))


# --------------------------------------------------------------------------- dropping the MLP


def generations(model, x):
    return model.generate(x, 6)


@points(3, "drop_prefix_mlp must keep only the prefix the MLP produces: the same logits and generations, "
           "and only P x L*2*d trainable numbers left (no MLP).", part="drop_prefix_mlp")
def test_drop_mlp_keeps_outputs(impl):
    model = prefix_model(impl, P=3)
    x = ids()
    logits, generated = model(x).logits.detach(), generations(model, x)
    impl.drop_prefix_mlp(model)
    assert torch.allclose(model(x).logits, logits, atol=1e-6), "the logits changed when the MLP was dropped"
    assert torch.equal(generations(model, x), generated), "greedy generations changed when the MLP was dropped"
    assert sum(p.numel() for p in trainable(model)) == 3 * L * 2 * D, "only the prefix table may remain trainable"
    assert not any(isinstance(m, nn.Linear) for m in model.prefix_encoder.modules()), "the MLP must be gone"


@points(2, "An embedding-only prefix (prompt tuning) exports too: its keys and values are what the frozen backbone "
           "computes from the P embeddings, stored as a per-layer prefix. Outputs must not change.",
        part="drop_prefix_mlp")
def test_drop_mlp_of_embedding_only_prefix(impl):
    model = prefix_model(impl, P=3, embedding_only=True, prefix_projection=False)
    x = ids()
    logits = model(x).logits.detach()
    impl.drop_prefix_mlp(model)
    assert torch.allclose(model(x).logits, logits, atol=1e-5), "the logits changed after the export"
    assert sum(p.numel() for p in trainable(model)) == 3 * L * 2 * D


@points(1, "After dropping the MLP, save_peft_model / load_peft_model must round-trip the prefix into a fresh "
           "PrefixTuningModel with the same outputs.", part="drop_prefix_mlp")
def test_exported_prefix_round_trips(impl):
    model = impl.drop_prefix_mlp(prefix_model(impl, P=3))
    x = ids()
    with tempfile.TemporaryDirectory() as tmp:
        save_peft_model(model, model.peft_config, tmp)
        fresh = impl.PrefixTuningModel(tiny_gpt(), impl.PrefixTuningConfig(num_virtual_tokens=3))
        load_peft_model(fresh, tmp)
    assert torch.allclose(fresh.eval()(x).logits, model(x).logits, atol=1e-6)
