"""Graded tests for chapter 7, P-tuning. Each test carries points and a hint for the student.

They judge behaviour: the prompt encoder's shapes, parameter count and bidirectionality; the
assembled template against the explicit token sequence it stands for (embeddings, mask, answer
position, logits); and the exported prompt giving the same predictions without the encoder.
That training leaves the backbone bit-identical is the lesson's given code, checked outside the grade
(tests/test_given_code.py).
"""

import tempfile

import pytest
import torch

from curriculum import points
from minitransformer import MiniTransformer, TransformerConfig
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.peft import load_peft_model, save_peft_model
from minitransformer.tokenizer import load_tokenizer

CHAPTER = "p_tuning"
TOKENIZER = load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")
CLS, SEP, MASK = (TOKENIZER.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))


def tiny_backbone(mode="gpt", seed=0) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=TOKENIZER.get_vocab_size(), max_seq_len=32, d_model=16, n_layers=2,
                               n_heads=2, d_ff=32, dropout=0.0, mode=mode)
    return MiniTransformer(config).eval()


def encoder(impl, kind="LSTM", P=5, d=16, h=8, layers=2, seed=0):
    torch.manual_seed(seed)
    config = impl.PromptEncoderConfig(num_virtual_tokens=P, token_dim=d, encoder_hidden_size=h, encoder_num_layers=layers,
                                      encoder_reparameterization_type=kind, template=[P, "[X]", "[Y]"])
    return impl.PromptEncoder(config)


def words(text):
    return TOKENIZER.encode(text, add_special_tokens=False).ids


INPUTS = [words(" The soup was cold"), words(" Lovely staff and a warm room"), words(" Fine")]
STAND_IN = [300 + i for i in range(9)]  # token ids whose embeddings play the prompt vectors


def input_batch():
    longest = max(map(len, INPUTS))
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in INPUTS])
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in INPUTS])
    return ids, mask


def explicit_rows(mode):
    """The token sequences the (3, X, 3, " as", Y[, 3]) template stands for, and where the answer is read."""
    p = STAND_IN
    if mode == "gpt":
        rows = [p[:3] + x + p[3:6] + words(" as") for x in INPUTS]
        return rows, [len(r) - 1 for r in rows]
    rows = [[CLS] + p[:3] + x + p[3:6] + words(" as") + [MASK] + p[6:9] + [SEP] for x in INPUTS]
    return rows, [len(r) - 5 for r in rows]


def template(mode):
    return [3, "[X]", 3, " as", "[Y]"] + ([3] if mode == "bert" else [])


# --------------------------------------------------------------------------- PromptEncoder


@points(2, "PromptEncoder('LSTM')() must return the P prompt vectors, shape (num_virtual_tokens, token_dim), from "
           "an nn.Embedding(P, d), a 2-layer bidirectional nn.LSTM(d, h) and an MLP Linear(2h, 2h) -> ReLU -> "
           "Linear(2h, d). The parameter count must match those layers.", part="PromptEncoder")
def test_lstm_encoder_shape_and_size(impl):
    enc = encoder(impl, "LSTM", P=5, d=16, h=8, layers=2)
    out = enc()
    assert tuple(out.shape) == (5, 16), f"expected shape (5, 16), got {tuple(out.shape)}"
    lstm = sum(2 * (4 * 8 * ((16 if i == 0 else 16) + 8) + 8 * 8) for i in range(2))  # layer 2 input is 2h = 16
    expected = 5 * 16 + lstm + (16 * 16 + 16) + (16 * 16 + 16)
    got = sum(p.numel() for p in enc.parameters())
    assert got == expected, f"{got} parameters, expected {expected} (embedding + BiLSTM + 2-layer MLP)"


@points(2, "The LSTM must be bidirectional and read the P inputs as one sequence: the first prompt vector must "
           "depend on the last input and the last vector on the first input.", part="PromptEncoder")
def test_lstm_encoder_is_bidirectional(impl):
    enc = encoder(impl, "LSTM")
    weight = next(m for m in enc.modules() if isinstance(m, torch.nn.Embedding)).weight
    base = enc().detach()
    with torch.no_grad():
        weight[-1] += 1.0
    first_changed = not torch.allclose(enc()[0], base[0])
    with torch.no_grad():
        weight[-1] -= 1.0
        weight[0] += 1.0
    last_changed = not torch.allclose(enc()[-1], base[-1])
    assert first_changed, "the first prompt vector ignores the last input: is the LSTM bidirectional, over the P inputs?"
    assert last_changed, "the last prompt vector ignores the first input"


@points(1, "encoder_reparameterization_type='MLP' means Linear(d, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, d) "
           "on each of the P inputs, no LSTM.", part="PromptEncoder")
def test_mlp_encoder(impl):
    enc = encoder(impl, "MLP", P=4, d=16, h=8)
    assert tuple(enc().shape) == (4, 16)
    expected = 4 * 16 + (16 * 8 + 8) + (8 * 8 + 8) + (8 * 16 + 16)
    assert sum(p.numel() for p in enc.parameters()) == expected
    assert not any(isinstance(m, torch.nn.LSTM) for m in enc.modules()), "the MLP encoder has no LSTM"


@points(1, "Every encoder parameter must get a gradient from a loss on the prompt vectors.", part="PromptEncoder")
def test_encoder_trains(impl):
    enc = encoder(impl, "LSTM")
    enc().pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


# --------------------------------------------------------------------------- assemble


def assembled(impl, mode):
    backbone = tiny_backbone(mode)
    segments = impl.compile_template(template(mode), TOKENIZER, mode)
    ids, mask = input_batch()
    prompt = backbone.tok_emb.weight[STAND_IN[: 6 if mode == "gpt" else 9]]
    with torch.no_grad():
        return backbone, impl.assemble(segments, backbone.tok_emb, prompt, ids, mask, backbone.config.max_seq_len)


@points(2, "assemble must put, per row: the prompt vectors in template order, the row's real input tokens (not its "
           "padding) in the input slot, the anchor tokens, and for BERT [CLS]/[MASK]/[SEP]; rows right-padded, with "
           "attention_mask 1 exactly on real positions. Compared with the explicit token sequence.", part="assemble")
def test_assemble_matches_explicit_tokens(impl):
    for mode in ("gpt", "bert"):
        backbone, (embeds, mask, answer) = assembled(impl, mode)
        rows, _ = explicit_rows(mode)
        longest = max(map(len, rows))
        expected_mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])
        assert tuple(embeds.shape) == (3, longest, 16), f"inputs_embeds shape {tuple(embeds.shape)}, expected (3, {longest}, 16)"
        assert torch.equal(mask.long(), expected_mask), "attention_mask differs from the explicit sequence's"
        for b, row in enumerate(rows):
            assert torch.equal(embeds[b, : len(row)], backbone.tok_emb(torch.tensor(row))), \
                f"row {b}: the assembled vectors differ from the explicit tokens {row}"


@points(1, "answer_index must be where the answer is read: the [MASK] position for BERT, the position just "
           "before the answer slot for GPT (it predicts the next token).", part="assemble")
def test_assemble_answer_index(impl):
    for mode in ("gpt", "bert"):
        _, (_, _, answer) = assembled(impl, mode)
        assert torch.as_tensor(answer).tolist() == explicit_rows(mode)[1]


@points(2, "Through PTuningModel, the logits at the answer must equal the backbone's on the explicit token "
           "sequence: same positions (0..L-1 in order), same mask.", part="assemble")
def test_model_logits_match_explicit_tokens(impl):
    for mode in ("gpt", "bert"):
        backbone = tiny_backbone(mode)
        n = 6 if mode == "gpt" else 9
        config = impl.PromptEncoderConfig(num_virtual_tokens=n, template=template(mode), encoder_hidden_size=8)
        model = impl.PTuningModel(backbone, TOKENIZER, config, ["bad", "good"]).eval()
        ids, mask = input_batch()
        rows, answer_at = explicit_rows(mode)
        longest = max(map(len, rows))
        with torch.no_grad():
            logits = model(ids, mask, prompt=backbone.tok_emb.weight[STAND_IN[:n]]).logits
            ref = backbone(torch.tensor([r + [0] * (longest - len(r)) for r in rows]),
                           torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])).logits
        expected = ref[torch.arange(3), torch.tensor(answer_at)][:, model.answer_ids]
        assert torch.allclose(logits, expected, atol=1e-5)


@points(1, "A batch that fits must be assembled, and an input longer than the context left by the template must "
           "raise a ValueError.", part="assemble")
def test_assemble_context_limit(impl):
    backbone = tiny_backbone("gpt")
    segments = impl.compile_template([20, "[X]", "[Y]"], TOKENIZER, "gpt")
    prompt = torch.zeros(20, 16)
    fits = torch.ones(1, 12, dtype=torch.long)
    embeds, mask, _ = impl.assemble(segments, backbone.tok_emb, prompt, fits, torch.ones_like(fits), 32)
    assert tuple(embeds.shape) == (1, 32, 16)
    too_long = torch.ones(1, 13, dtype=torch.long)
    with pytest.raises(ValueError):
        impl.assemble(segments, backbone.tok_emb, prompt, too_long, torch.ones_like(too_long), 32)


# --------------------------------------------------------------------------- training and export


def trained_model(impl, mode="gpt", steps=2):
    backbone = tiny_backbone(mode)
    n = 6 if mode == "gpt" else 9
    torch.manual_seed(0)
    model = impl.PTuningModel(backbone, TOKENIZER, impl.PromptEncoderConfig(num_virtual_tokens=n, template=template(mode),
                                                                        encoder_hidden_size=8),
                              ["bad", "good"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = input_batch()
    for _ in range(steps):
        loss = model(ids, mask, labels=torch.tensor([0, 1, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), backbone


@points(2, "export_prompt must keep the encoder's output (P x d numbers) and drop the encoder, with the same "
           "predictions; saving and loading the exported prompt must give them again.", part="export")
def test_encoder_drop_keeps_predictions(impl):
    model, _ = trained_model(impl, "gpt")
    ids, mask = input_batch()
    with torch.no_grad():
        before = model(ids, mask).logits
        config = model.export_prompt()
        after = model(ids, mask).logits
    assert torch.allclose(before, after, atol=1e-6)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 6 * 16, "the exported prompt is P x d numbers"
    with tempfile.TemporaryDirectory() as folder:
        save_peft_model(model, config, folder)
        fresh = impl.PTuningModel(tiny_backbone("gpt"), TOKENIZER, impl.PromptEncoderConfig(template=template("gpt")),
                                  ["bad", "good"])
        load_peft_model(fresh, folder)
        with torch.no_grad():
            assert torch.equal(fresh.eval()(ids, mask).logits, after)
