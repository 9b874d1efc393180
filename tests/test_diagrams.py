"""The mechanism pictures read the real modules: their shapes, what is wrapped or trained, the real attention."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minitransformer import MiniTransformer, TransformerConfig  # noqa: E402
from minitransformer.diagrams import (_status, attention_pattern, draw_attention_patterns, draw_block,  # noqa: E402
                                      draw_lora)
from minitransformer.training import freeze  # noqa: E402
from solutions.adapters import AdapterConfig, inject_adapters  # noqa: E402
from solutions.lora import LoraConfig, inject_lora  # noqa: E402

CONFIG = TransformerConfig(vocab_size=50, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0,
                           mode="gpt")


def backbone() -> MiniTransformer:
    torch.manual_seed(0)
    model = MiniTransformer(CONFIG)
    freeze(model)
    return model.eval()


def test_the_lora_picture_reads_the_layer():
    model = inject_lora(backbone(), LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj"], modules_to_save=[]),
                        verbose=False)
    ax = draw_lora(model.blocks[0].attn.q_proj)
    texts = " ".join(t.get_text() for t in ax.texts) + ax.get_title()
    assert "32 × 32" in texts and "32 × 4" in texts and "4 × 32" in texts
    assert "= 3" in texts, "the scaling lora_alpha / r = 12 / 4"
    assert f"{4 * (32 + 32):,}" in ax.get_title()
    plt.close("all")
    with pytest.raises(TypeError, match="needs a LoRA layer"):
        draw_lora(torch.nn.Linear(3, 3))


def test_the_block_picture_marks_what_each_method_changed():
    lora = inject_lora(backbone(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], modules_to_save=[]),
                       verbose=False)
    block = lora.blocks[0]
    assert _status(block, "attn.q_proj") == ("wrapped", "Lora r=2")
    assert _status(block, "attn.k_proj") == ("frozen", None)

    adapters = inject_adapters(backbone(), AdapterConfig(bottleneck_size=4, modules_to_save=[]), verbose=False)
    block = adapters.blocks[1]
    assert _status(block, "attn.out_proj") == ("wrapped", "Adapter m=4")
    assert _status(block, "mlp.fc2") == ("wrapped", "Adapter m=4")
    assert _status(block, "ln_1") == ("trainable", "bias + weight"), "adapters train the LayerNorms"
    assert _status(block, "mlp.fc1") == ("frozen", None)

    bitfit = backbone()
    for name, p in bitfit.named_parameters():
        p.requires_grad_(name.endswith("bias"))
    assert _status(bitfit.blocks[0], "attn.k_proj") == ("trainable", "bias")
    draw_block(bitfit)
    plt.close("all")
    with pytest.raises(TypeError, match="no transformer block"):
        draw_block(torch.nn.Linear(2, 2))


def test_attention_patterns_are_the_models_own():
    model = backbone()
    ids = torch.randint(5, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, -1] = 0  # one padded position in the first example
    plain = attention_pattern(model, input_ids=ids, attention_mask=mask)
    assert len(plain) == CONFIG.n_layers and plain[0].shape == (5, 5)
    for weights in plain:
        torch.testing.assert_close(weights.sum(-1), torch.ones(5))
        allowed = torch.tril(torch.ones(5, 5, dtype=torch.bool)) & mask[0].bool()[None, :]
        assert torch.equal(weights > 0, allowed), "causal and padding masks, as the model applies them"

    P, H, h = 3, CONFIG.n_heads, CONFIG.d_model // CONFIG.n_heads
    prefix = tuple((torch.randn(2, H, P, h), torch.randn(2, H, P, h)) for _ in range(CONFIG.n_layers))
    with_prefix = attention_pattern(model, input_ids=ids, attention_mask=mask, past_key_values=prefix)
    assert with_prefix[1].shape == (5, P + 5)
    assert bool((with_prefix[1][:, :P] > 0).all()), "every query reads the whole prefix"

    prompt = torch.randn(2, P, CONFIG.d_model)
    embeds = torch.cat([prompt, model.tok_emb(ids)], dim=1)
    with_prompt = attention_pattern(model, inputs_embeds=embeds)
    assert with_prompt[0].shape == (P + 5, P + 5), "the prompt's positions are queries too"
    assert model.training is False
    fig = draw_attention_patterns({"prefix": (with_prefix, P, False), "prompt": (with_prompt, P, True)})
    assert len(fig.axes) == 4
    plt.close("all")


def test_one_colour_per_method_in_every_plot():
    from minitransformer.plots import METHOD_COLORS, method_colors

    names = ["full fine-tuning", "frozen probe (L2 0.0001)", "LoRA q,v r=8", "BitFit (all biases)", "BitFit q+i",
             "Houlsby adapters", "P-tuning v2 (deep)", "prefix tuning", "prompt tuning d=32", "something else"]
    colors = method_colors(names)
    assert colors[:4] == [METHOD_COLORS[m] for m in ("full", "frozen", "lora", "bitfit")]
    assert colors[4] is None, "a second BitFit line must not reuse BitFit's colour"
    assert colors[5:9] == [METHOD_COLORS[m] for m in ("adapters", "p_tuning_v2", "prefix_tuning", "prompt_tuning")]
    assert colors[9] is None
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS), "two methods share a colour"
