"""Graded tests for chapter 9, P-tuning v2. Each test carries points and a hint for the student.

They judge behaviour (the key/value layout against an explicit reference, attention with the prefix
against a hand-built past_key_values, positions, mask, which tensors train, a bit-identical backbone),
not attribute names, so any correct implementation of the notebook's API gets full marks.
"""

import pytest
import torch
import torch.nn as nn

from curriculum import points
from minitransformer import MiniTransformer, SequenceClassifier, TokenClassifier, TransformerConfig

CHAPTER = "p_tuning_v2"
L, H, D = 2, 2, 16  # layers, heads, d_model of the tiny backbone


def tiny_backbone(mode="gpt", seed=0, max_seq_len=16) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=40, max_seq_len=max_seq_len, d_model=D, n_layers=L, n_heads=H, d_ff=32,
                               dropout=0.0, mode=mode)
    return MiniTransformer(config).eval()


def batch(B=3, T=6, seed=1):
    ids = torch.randint(1, 40, (B, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 2:] = 0  # a padded row
    return ids, mask


def trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


def reference_layout(prefix: torch.Tensor, num_layers: int, num_heads: int):
    """The explicit reference: for layer i, the key is slice [2i*d, (2i+1)*d) and the value the next d."""
    B, P, width = prefix.shape
    d = width // (2 * num_layers)
    h = d // num_heads
    pairs = []
    for i in range(num_layers):
        k = prefix[:, :, 2 * i * d:(2 * i + 1) * d].reshape(B, P, num_heads, h).transpose(1, 2)
        v = prefix[:, :, (2 * i + 1) * d:(2 * i + 2) * d].reshape(B, P, num_heads, h).transpose(1, 2)
        pairs.append((k, v))
    return pairs


def deep_prompt_output(impl, P=3, B=2, projection=False):
    config = impl.PTuningV2Config(num_virtual_tokens=P, token_dim=D, num_layers=L, num_attention_heads=H,
                                  prefix_projection=projection, encoder_hidden_size=8)
    torch.manual_seed(0)
    prompt = impl.DeepPrompt(config)
    return prompt, prompt(B)


# --------------------------------------------------------------------------- prefix_to_past_key_values


@points(2, "prefix_to_past_key_values must turn (B, P, L*2*d) into L (key, value) pairs of shape (B, H, P, h), "
           "HF PEFT's layout: layer i's key is the block [2i*d, (2i+1)*d) of the last dimension, its value the "
           "next block; each block splits into H heads of h = d / H. Use .view then .permute.",
        part="prefix_to_past_key_values")
def test_layout_matches_the_explicit_reference(impl):
    prefix = torch.randn(2, 3, 3 * 2 * 12)  # B=2, P=3, L=3, d=12
    pkv = impl.prefix_to_past_key_values(prefix, 3, 4)
    assert len(pkv) == 3, f"expected 3 (key, value) pairs, got {len(pkv)}"
    for (k, v), (rk, rv) in zip(pkv, reference_layout(prefix, 3, 4)):
        assert tuple(k.shape) == (2, 4, 3, 3) and tuple(v.shape) == (2, 4, 3, 3), f"got shapes {k.shape}, {v.shape}"
        assert torch.equal(k, rk) and torch.equal(v, rv)


# --------------------------------------------------------------------------- DeepPrompt


@points(2, "Without reparameterisation the deep prompt is one trainable table of num_virtual_tokens x "
           "(num_layers * 2 * token_dim) numbers, and forward(B) returns num_layers (key, value) pairs of shape "
           "(B, num_attention_heads, P, head_dim).", part="DeepPrompt")
def test_deep_prompt_parameters_and_shapes(impl):
    prompt, pkv = deep_prompt_output(impl, P=3, B=2)
    assert sum(p.numel() for p in trainable(prompt)) == 3 * L * 2 * D
    assert len(pkv) == L
    for k, v in pkv:
        assert tuple(k.shape) == (2, H, 3, D // H) and tuple(v.shape) == (2, H, 3, D // H)


@points(2, "Every example of a batch gets the same prompt (expand the table over the batch), and its "
           "rows are the table laid out as prefix_to_past_key_values lays out a (1, P, L*2*d) prefix.",
        part="DeepPrompt")
def test_deep_prompt_is_the_table_laid_out(impl):
    prompt, pkv = deep_prompt_output(impl, P=3, B=2)
    table = [p for p in trainable(prompt) if p.shape == (3, L * 2 * D)]
    assert len(table) == 1, "expected one trainable (P, L*2*d) table"
    for (k, v), (rk, rv) in zip(pkv, reference_layout(table[0].detach().unsqueeze(0), L, H)):
        assert torch.equal(k[0], rk[0]) and torch.equal(k[1], rk[0]) and torch.equal(v[1], rv[0])


@points(2, "With prefix_projection=True the table is (P, token_dim) and an MLP token_dim -> encoder_hidden_size "
           "-> num_layers*2*token_dim (Linear, Tanh, Linear) produces the prefix: count its parameters, and the "
           "gradient must reach the table through the MLP.", part="DeepPrompt")
def test_deep_prompt_with_projection(impl):
    prompt, pkv = deep_prompt_output(impl, P=3, B=2, projection=True)
    expected = 3 * D + (D * 8 + 8) + (8 * L * 2 * D + L * 2 * D)
    assert sum(p.numel() for p in trainable(prompt)) == expected
    assert tuple(pkv[0][0].shape) == (2, H, 3, D // H)
    sum(k.sum() + v.pow(2).sum() for k, v in pkv).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable(prompt))


# --------------------------------------------------------------------------- the deep-prompt classifier


def prompted_tagger(impl, mode="gpt", P=3, **kwargs):
    model = TokenClassifier(tiny_backbone(mode), num_labels=3, dropout=0.0).eval()
    config = impl.PTuningV2Config(num_virtual_tokens=P, **kwargs)
    impl.inject_p_tuning_v2(model, config, verbose=False)
    with torch.no_grad():  # as if trained: the prompt is not what it was at init
        for p in trainable(model):
            p.add_(0.5 * torch.randn_like(p))
    return model, config


def deep_pkv(model, B):
    """The model's own deep prompt for batch B: the output of the one DeepPrompt-like module that returns pairs."""
    for module in model.modules():
        if module is model:
            continue
        try:
            out = module(B)
        except Exception:
            continue
        if isinstance(out, (tuple, list)) and len(out) == L and all(len(pair) == 2 for pair in out):
            return out
    raise AssertionError("found no submodule whose forward(batch_size) returns the per-layer (key, value) pairs")


def _check_equals_explicit_past(impl, mode):
    model, _ = prompted_tagger(impl, mode)
    ids, mask = batch()
    with torch.no_grad():
        pkv = deep_pkv(model, ids.shape[0])
        base = tiny_backbone(mode)
        expected = model.head(base(ids, mask, past_key_values=pkv, return_logits=False).hidden_states)
        got = model(ids, mask).logits
    assert tuple(got.shape) == (3, 6, 3)
    assert torch.allclose(got, expected, atol=1e-6)


@points(3, "The deep-prompt tagger must equal the frozen backbone called with the prompt as past_key_values "
           "(one (key, value) pair per layer, expanded to the batch), then the head on every token: logits (B, T, "
           "num_labels). The backbone grows the mask by P and starts positions at P for you.",
        part="PromptedBackbone")
def test_deep_prompt_tagger_equals_explicit_past_key_values(impl):
    _check_equals_explicit_past(impl, "gpt")
    _check_equals_explicit_past(impl, "bert")


@points(2, "Real tokens' positions must start after the prefix (P, P+1, ...), as with a KV cache, and padded "
           "tokens must stay masked: padding a row must not change its real tokens' logits.", part="PromptedBackbone")
def test_positions_and_mask(impl):
    model, _ = prompted_tagger(impl, "bert", P=4)
    ids, mask = batch(B=2, T=5)
    mask[:] = 1
    with torch.no_grad():
        pkv = deep_pkv(model, 2)
        base = tiny_backbone("bert")
        # Reference built by hand: positions P..P+T-1 and a (B, P+T) mask of ones over the prefix.
        hidden = base.tok_emb(ids) + base.pos_emb(torch.arange(4, 9))
        full_mask = torch.ones(2, 9, dtype=torch.bool)
        for i, block in enumerate(base.blocks):
            hidden, _ = block(hidden, full_mask, pkv[i])
        expected = model.head(base.ln_f(hidden))
        assert torch.allclose(model(ids, mask).logits, expected, atol=1e-5), "positions must start at P"
        padded_ids = torch.cat([ids, torch.full((2, 3), 7)], dim=1)
        padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], dim=1)
        assert torch.allclose(model(padded_ids, padded_mask).logits[:, :5], expected, atol=1e-5), \
            "padding changed the real tokens: the mask must grow by P ones in front of the input's mask"


@points(2, "inject_p_tuning_v2 must freeze the whole backbone (bit-identical after a training step) and train only "
           "the prompt (num_virtual_tokens * num_layers * 2 * token_dim numbers) and the task head.",
        part="inject_p_tuning_v2")
def test_only_prompt_and_head_train_backbone_bit_identical(impl):
    model = SequenceClassifier(tiny_backbone("gpt"), num_labels=2, dropout=0.0)
    backbone = model.backbone  # the original module: it must stay in the model, frozen
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    impl.inject_p_tuning_v2(model, impl.PTuningV2Config(num_virtual_tokens=5), verbose=False)
    assert sum(p.numel() for p in trainable(model)) == 5 * L * 2 * D + (D * 2 + 2)
    assert not trainable(backbone), "the backbone's parameters must not require grad"
    assert any(m is backbone for m in model.modules()), "keep the original backbone inside the model"
    optimizer = torch.optim.AdamW(trainable(model), lr=0.1)
    ids, mask = batch()
    model.train()
    model(ids, mask, labels=torch.tensor([0, 1, 1])).loss.backward()
    optimizer.step()
    for name, old in before.items():
        assert torch.equal(old, backbone.state_dict()[name]), f"backbone tensor {name} changed"


@points(2, "A prompt plus an input longer than the context must raise a ValueError that names num_virtual_tokens "
           "and max_seq_len (the fix: truncate the input or use fewer virtual tokens).", part="PromptedBackbone")
def test_too_long_raises_a_clear_error(impl):
    model, _ = prompted_tagger(impl, "gpt", P=12)
    ids = torch.randint(1, 40, (2, 6))  # 12 + 6 > 16
    with pytest.raises(ValueError) as info:
        model(ids, torch.ones_like(ids))
    assert "num_virtual_tokens" in str(info.value) and "max_seq_len" in str(info.value)


@points(2, "A config whose token_dim, num_layers or num_attention_heads does not fit the backbone must be refused "
           "with a ValueError when it is injected; None means: read it from the model.", part="inject_p_tuning_v2")
def test_mismatched_config_is_refused(impl):
    model = TokenClassifier(tiny_backbone("gpt"), num_labels=3)
    with pytest.raises(ValueError):
        impl.inject_p_tuning_v2(model, impl.PTuningV2Config(num_virtual_tokens=2, num_layers=5), verbose=False)
    model = TokenClassifier(tiny_backbone("gpt"), num_labels=3)
    config = impl.PTuningV2Config(num_virtual_tokens=2)
    impl.inject_p_tuning_v2(model, config, verbose=False)
    assert (config.token_dim, config.num_layers, config.num_attention_heads) == (D, L, H)
