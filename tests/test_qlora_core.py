"""Chapter 12's pieces checked outside the grade (tests/test_bnb_interop.py compares them with bitsandbytes itself
where it installs):

* the NF4 code is the published table, bit for bit, and the 8-bit dynamic code has bitsandbytes' shape;
* quantise/pack/dequantise round trips, odd sizes and short last blocks included, within half a level gap;
* double quantisation keeps each scale within half a step of the 8-bit code, and costs the bytes the formula says;
* a Linear4bit survives state_dict(), and a whole classifier quantised with chapter 3's LoRA on top starts as the
  4-bit model, trains only LoRA and the head, and leaves every stored 4-bit tensor bit for bit as it was;
* bad input fails with an error that says what is wrong.
"""

import math

import pytest
import torch
import torch.nn as nn

from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig, changed_tensors, state_fingerprint
from solutions.lora import LoraConfig, LoraLinear, inject_lora
from solutions.qlora import (BitsAndBytesConfig, Linear4bit, create_dynamic_map, create_normal_map, dequantize_4bit,
                             dequantize_blockwise, pack_4bit, prepare_model_for_kbit_training, quantize_4bit,
                             quantize_blockwise, replace_with_bnb_linear, storage_bytes, unpack_4bit)

PUBLISHED_NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                              -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                              0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                              0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
X = torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 1, 1])


def tiny_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2, dropout=0.0).eval()


def qlora_tiny(double_quant: bool = True) -> SequenceClassifier:
    """The prepare function proposed for the protocol's `qlora` method, on a tiny classifier."""
    config = BitsAndBytesConfig(bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=torch.float32)
    model = prepare_model_for_kbit_training(replace_with_bnb_linear(tiny_classifier(), config))
    return inject_lora(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]), verbose=False)


def test_nf4_is_the_published_table_bit_for_bit():
    assert torch.equal(create_normal_map(), PUBLISHED_NF4)
    symmetric = create_normal_map(use_extra_value=False)
    assert symmetric.numel() == 15 and torch.equal(symmetric, -symmetric.flip(0))


def test_the_dynamic_map_has_bitsandbytes_shape():
    code = create_dynamic_map()
    assert code.shape == (256,) and code.dtype == torch.float32
    assert torch.all(code[1:] > code[:-1]), "256 distinct sorted levels"
    assert code.max().item() == 1.0 and (code == 0).sum() == 1 and code.min().item() > -1.0
    with pytest.raises(ValueError, match="default dynamic map"):
        create_dynamic_map(signed=False)


@pytest.mark.parametrize("shape", [(64, 64), (3, 5), (7, 9, 11), (100,)])
@pytest.mark.parametrize("double_quant", [False, True])
def test_round_trip_within_half_a_level_gap(shape, double_quant):
    A = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    packed, state = quantize_4bit(A, blocksize=64, compress_statistics=double_quant)
    n = A.numel()
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 1) // 2
    out = dequantize_4bit(packed, state)
    assert out.shape == A.shape and out.dtype == A.dtype
    _, absmax = quantize_blockwise(A, PUBLISHED_NF4, 64)  # the float32 scales, for the bound
    if double_quant:  # each recovered scale is within half a step of the 8-bit code around it
        recovered = dequantize_blockwise(state.absmax, state.state2.absmax, state.state2.code, 256) + state.offset
        step = (state.state2.code[1:] - state.state2.code[:-1]).max() / 2
        bound = state.state2.absmax.repeat_interleave(256)[: absmax.numel()] * step
        assert torch.all((recovered - absmax).abs() <= bound + 1e-7)
    else:
        recovered = absmax
    # The index was chosen with the true scale s and is read back with s': |c s' - w| <= s * half gap + |s' - s|.
    half_gap = (PUBLISHED_NF4[1:] - PUBLISHED_NF4[:-1]).max() / 2
    bound = ((absmax * half_gap + (recovered - absmax).abs()).repeat_interleave(64)[:n]).reshape(A.shape)
    assert torch.all((out - A).abs() <= bound + 1e-6)


def test_packing_round_trips_and_refuses_an_odd_count():
    indices = torch.randint(0, 16, (1000,), generator=torch.Generator().manual_seed(3)).to(torch.uint8)
    assert torch.equal(unpack_4bit(pack_4bit(indices)), indices)
    assert torch.equal(unpack_4bit(pack_4bit(indices), 999), indices[:999])
    with pytest.raises(ValueError, match="even number"):
        pack_4bit(indices[:999])


def test_an_odd_size_is_padded_with_the_zero_level():
    packed, state = quantize_4bit(torch.ones(3), compress_statistics=False)
    assert unpack_4bit(packed).tolist() == [15, 15, 15, 7]  # 1.0 three times, then the pad: the level 0.0


def test_an_all_zero_block_stays_zero():
    A = torch.zeros(2, 64)
    A[1] = torch.randn(64)
    for double_quant in (False, True):
        packed, state = quantize_4bit(A, compress_statistics=double_quant)
        out = dequantize_4bit(packed, state)
        assert torch.isfinite(out).all() and torch.equal(out[0], torch.zeros(64))


def test_memory_is_the_formula_measured_in_bytes():
    """A 1024 x 1024 layer: 4 bits per weight for the indices, 8/64 + 32/(64 * 256) for the double-quantised scales,
    the offset, the shared tables, and the float32 bias; float32 is 32 bits per weight, so the ratio is near 7.75."""
    linear = nn.Linear(1024, 1024)
    n = linear.weight.numel()
    for double_quant, scale_bits in ((False, 32 / 64), (True, 8 / 64 + 32 / (64 * 256))):
        layer = Linear4bit.from_linear(linear, compress_statistics=double_quant)
        tables = 4 * 16 + (4 * 256 + 4 if double_quant else 0)  # NF4 table; dynamic map + offset
        expected = n * (4 + scale_bits) / 8 + tables + 4 * 1024
        assert storage_bytes(layer) == expected
    ratio = storage_bytes(linear) / storage_bytes(layer)
    assert 7.5 < ratio < 8


def test_shared_code_tables_are_counted_once():
    model = replace_with_bnb_linear(tiny_classifier(), BitsAndBytesConfig(bnb_4bit_use_double_quant=True))
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert len(layers) == 12 and len({m.nested_quant_map.data_ptr() for m in layers}) == 1
    separately = sum(storage_bytes(m) for m in layers)
    assert storage_bytes(nn.ModuleList(layers)) == separately - 11 * (4 * 16 + 4 * 256)


def test_linear4bit_state_dict_round_trip():
    linear = nn.Linear(64, 32)
    layer = Linear4bit.from_linear(linear)
    fresh = Linear4bit(64, 32)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(4, 64)
    assert torch.equal(fresh(x), layer(x))
    assert set(layer.state_dict()) == {"weight", "bias", "absmax", "quant_map", "offset", "nested_absmax",
                                       "nested_quant_map"}


def test_replace_keeps_the_head_and_embeddings_in_float():
    model = replace_with_bnb_linear(tiny_classifier(), BitsAndBytesConfig())
    assert type(model.head) is nn.Linear
    assert isinstance(model.backbone.tok_emb, nn.Embedding) and model.backbone.tok_emb.weight.dtype == torch.float32
    assert all(isinstance(m, Linear4bit) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "head")


def test_qlora_starts_as_the_4bit_model_and_trains_only_lora_and_the_head():
    base4 = prepare_model_for_kbit_training(replace_with_bnb_linear(
        tiny_classifier(), BitsAndBytesConfig(bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)))
    fingerprint = state_fingerprint(base4.backbone)
    model = qlora_tiny()
    q_proj = model.backbone.blocks[0].attn.q_proj
    assert isinstance(q_proj, LoraLinear) and isinstance(q_proj.base_layer, Linear4bit)
    with torch.no_grad():
        assert torch.equal(model(X).logits, base4(X).logits)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(X, labels=LABELS).loss.backward()
        optimizer.step()
    assert changed_tensors(model.backbone, fingerprint) == []
    assert q_proj.lora_B.weight.abs().sum() > 0, "LoRA trained"


def test_clear_errors_for_bad_input():
    with pytest.raises(TypeError, match="nn.Linear"):
        Linear4bit.from_linear(nn.Conv1d(4, 4, 1))
    with pytest.raises(TypeError, match="float"):
        quantize_4bit(torch.ones(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="blocksize"):
        quantize_4bit(torch.ones(4), blocksize=63)
    with pytest.raises(ValueError, match="quant_type"):
        BitsAndBytesConfig(bnb_4bit_quant_type="fp8")
    with pytest.raises(ValueError, match="load_in_4bit"):
        BitsAndBytesConfig(load_in_4bit=False)
    with pytest.raises(ValueError, match="shape"):
        Linear4bit(8, 4).load_weight(torch.zeros(8, 4))
    with pytest.raises(ValueError, match="no nn.Linear"):
        replace_with_bnb_linear(nn.Sequential(nn.Embedding(4, 4)), BitsAndBytesConfig())
    with pytest.raises(ValueError, match="absmax"):
        dequantize_blockwise(torch.zeros(130, dtype=torch.uint8), torch.ones(2), PUBLISHED_NF4, 64)
    assert math.isfinite(float(dequantize_4bit(*quantize_4bit(torch.zeros(64))).sum()))
