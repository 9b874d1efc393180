"""Unit tests for the backbone: masking, caches, prefixes, heads, determinism and bad input."""

import pytest
import torch

from minitransformer import (ConfigError, MiniTransformer, SequenceClassifier, TokenClassifier, TransformerConfig,
                             set_seed)


def tiny(mode="gpt", **overrides) -> MiniTransformer:
    set_seed(0)
    config = TransformerConfig(vocab_size=50, max_seq_len=32, d_model=16, n_layers=2, n_heads=2, d_ff=64,
                               dropout=0.0, mode=mode, **overrides)
    return MiniTransformer(config).eval()


def ids(batch=2, length=8, seed=1):
    return torch.randint(1, 50, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_causal_mask_no_future_leakage():
    model = tiny("gpt")
    x = ids()
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % 49 + 1  # change only the future of position 4
    a, b = model(x).logits, model(changed).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_bert_mode_is_bidirectional():
    model = tiny("bert")
    x = ids()
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 3) % 49 + 1
    assert not torch.allclose(model(x).logits[:, 0], model(changed).logits[:, 0])


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_padding_mask_hides_pad_tokens(mode):
    model = tiny(mode)
    x = ids(batch=1, length=6)
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    garbage = padded.clone()
    garbage[:, 6:] = 17  # what sits under the padding must not matter
    torch.testing.assert_close(model(x).hidden_states, model(padded, mask).hidden_states[:, :6])
    torch.testing.assert_close(model(padded, mask).hidden_states[:, :6], model(garbage, mask).hidden_states[:, :6])


def test_kv_cache_forward_equals_full_forward():
    model = tiny("gpt")
    x = ids(length=10)
    full = model(x).logits
    first = model(x[:, :6], use_cache=True)
    rest = model(x[:, 6:], past_key_values=first.past_key_values)
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], dim=1), full, rtol=1e-5, atol=1e-5)


def test_generate_with_cache_equals_recompute():
    model = tiny("gpt")
    prompt = ids(length=4)
    with_cache = model.generate(prompt, max_new_tokens=12, use_cache=True)
    without = model.generate(prompt, max_new_tokens=12, use_cache=False)
    assert torch.equal(with_cache, without)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = model.generate(prompt, 12, do_sample=True, top_k=10, generator=g1, use_cache=True)
    s2 = model.generate(prompt, 12, do_sample=True, top_k=10, generator=g2, use_cache=False)
    assert torch.equal(s1, s2)


def test_inputs_embeds_path_equals_ids_path():
    model = tiny("gpt")
    x = ids()
    torch.testing.assert_close(model(inputs_embeds=model.tok_emb(x)).logits, model(x).logits)


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_past_key_values_offset_positions(mode):
    """Real tokens after a P-token past sit at positions P.., exactly as if the past were real tokens."""
    model = tiny(mode)
    x = ids(length=9)
    if mode == "gpt":
        past = model(x[:, :4], use_cache=True).past_key_values
        torch.testing.assert_close(model(x[:, 4:], past_key_values=past).logits, model(x).logits[:, 4:], rtol=1e-5, atol=1e-5)
    # A learned prefix: arbitrary key/values of length P; the output must depend on them and
    # the attention mask may be given for the new tokens only or for prefix + new tokens.
    P = 3
    prefix = tuple((torch.randn(2, 2, P, 8), torch.randn(2, 2, P, 8)) for _ in range(2))
    a = model(x, past_key_values=prefix).logits
    b = model(x, torch.ones(2, 9, dtype=torch.long), past_key_values=prefix).logits
    c = model(x, torch.ones(2, P + 9, dtype=torch.long), past_key_values=prefix).logits
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, model(x).logits)


def test_heads_shapes_and_pooling():
    gpt = tiny("gpt")
    seq = SequenceClassifier(gpt, num_labels=3).eval()
    x = ids(length=7)
    mask = torch.ones_like(x)
    mask[0, 5:] = 0
    out = seq(x, mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0
    # GPT pooling uses the last real token, so padding after it changes nothing.
    torch.testing.assert_close(seq(x[:1, :5]).logits, out.logits[:1])
    tok = TokenClassifier(tiny("bert"), num_labels=5)
    assert tok(x, labels=torch.zeros_like(x)).logits.shape == (2, 7, 5)


def test_determinism_same_seed_same_numbers():
    def run():
        model = tiny("gpt", )
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        x = ids()
        for _ in range(3):
            loss = model(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item(), model(x).logits
    (l1, o1), (l2, o2) = run(), run()
    assert l1 == l2 and torch.equal(o1, o2)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(d_model=30, n_heads=4), "not divisible"),
    (dict(n_layers=0), "positive integer"),
    (dict(mode="t5"), "mode must be one of"),
    (dict(dropout=1.5), "dropout"),
    (dict(pad_token_id=99, vocab_size=50), "outside the vocabulary"),
])
def test_bad_config_gets_one_clear_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TransformerConfig(**kwargs)


def test_bad_inputs_get_clear_errors():
    model = tiny("gpt")
    with pytest.raises(ValueError, match="exceeds the context length"):
        model(torch.ones(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D"):
        model(torch.ones(8, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        model(torch.full((1, 4), 50))
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids(), torch.ones(2, 3))
    prefix = tuple((torch.randn(1, 2, 30, 8), torch.randn(1, 2, 30, 8)) for _ in range(2))
    with pytest.raises(ValueError, match="prefix"):
        model(torch.ones(1, 5, dtype=torch.long), past_key_values=prefix)  # 30 + 5 > 32
    with pytest.raises(ValueError, match="batch"):
        model(ids(batch=2), past_key_values=prefix)  # prefix not expanded to the batch
    with pytest.raises(ValueError, match="causal"):
        tiny("bert").generate(ids(), 3)
    with pytest.raises(ConfigError, match="num_labels"):
        SequenceClassifier(model, num_labels=1)
    with pytest.raises(ConfigError, match="Unknown TransformerConfig field"):
        TransformerConfig.from_dict({"d_modle": 16})
