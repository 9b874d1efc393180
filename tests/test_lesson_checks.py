"""The lessons' exact checks can fail: each one, given a broken input, must disagree with the module it checks.

Chapter 1 recomputes attention from its equation, chapter 10 writes a prefix's attention as He et al.'s gated
sum; both assert equality with the module's forward pass. Here the same computations, on a small random model,
agree when written correctly and disagree when one term is dropped, so those asserts are not tautologies.
"""

import math

import torch

from minitransformer import MiniTransformer, TransformerConfig

CONFIG = TransformerConfig(vocab_size=50, max_seq_len=32, d_model=32, n_layers=1, n_heads=4, d_ff=64, dropout=0.0,
                           mode="gpt")


def setup():
    torch.manual_seed(0)
    model = MiniTransformer(CONFIG).eval()
    ids = torch.randint(5, 50, (1, 7), generator=torch.Generator().manual_seed(1))
    return model, ids


def attention_by_hand(model, x, causal: bool = True, scale: bool = True) -> torch.Tensor:
    """Chapter 1's equation: softmax(QK^T / sqrt(h) + M) V, heads concatenated, then W_o."""
    attn = model.blocks[0].attn
    T, H = x.shape[1], attn.n_heads
    h = CONFIG.d_model // H
    q, k, v = (proj(x).view(1, T, H, h).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(h) if scale else 1.0)
    if causal:
        scores = scores + torch.full((T, T), torch.finfo(x.dtype).min).triu(1)
    return attn.out_proj((torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(1, T, -1))


@torch.no_grad()
def test_chapter_1s_attention_check_fails_without_the_mask_or_the_scale():
    model, ids = setup()
    x = model.blocks[0].ln_1(model.tok_emb(ids) + model.pos_emb(torch.arange(ids.shape[1])))
    module_out, _ = model.blocks[0].attn(x, torch.ones(1, ids.shape[1], dtype=torch.bool))
    assert torch.allclose(attention_by_hand(model, x), module_out, atol=1e-5)
    assert not torch.allclose(attention_by_hand(model, x, causal=False), module_out, atol=1e-5)
    assert not torch.allclose(attention_by_hand(model, x, scale=False), module_out, atol=1e-5)


@torch.no_grad()
def test_chapter_10s_unified_view_check_fails_without_the_gate():
    model, ids = setup()
    attn = model.blocks[0].attn
    T, H, P = ids.shape[1], attn.n_heads, 3
    h = CONFIG.d_model // H
    g = torch.Generator().manual_seed(2)
    pk, pv = torch.randn(1, H, P, h, generator=g), torch.randn(1, H, P, h, generator=g)
    x = model.blocks[0].ln_1(model.tok_emb(ids) + model.pos_emb(torch.arange(P, P + T)))
    module_out, _ = attn(x, torch.ones(1, P + T, dtype=torch.bool), (pk, pv))
    q, k, v = (proj(x).view(1, T, H, h).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    s_in = q @ k.transpose(-2, -1) / math.sqrt(h) + torch.full((T, T), float("-inf")).triu(1)
    s_pre = q @ pk.transpose(-2, -1) / math.sqrt(h)
    lam = torch.sigmoid(s_pre.logsumexp(-1, keepdim=True) - s_in.logsumexp(-1, keepdim=True))

    def gated(gate):
        heads = (1 - gate) * (torch.softmax(s_in, -1) @ v) + gate * (torch.softmax(s_pre, -1) @ pv)
        return attn.out_proj(heads.transpose(1, 2).reshape(1, T, -1))

    assert torch.allclose(gated(lam), module_out, atol=1e-5)
    assert not torch.allclose(gated(torch.zeros_like(lam)), module_out, atol=1e-5), "no gate: the prefix is ignored"
    assert not torch.allclose(gated(torch.full_like(lam, 0.5)), module_out, atol=1e-5), "a constant gate is wrong"
