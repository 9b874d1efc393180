"""Graded tests for chapter 6, prompt tuning. Each test carries points and a hint for the student.

They judge behaviour on a tiny random GPT-mode model: shapes, the prompt in front of every row, the
mask, equality with running real tokens explicitly (positions and attention), a backbone that stays
bit-identical, and the verbaliser readout against the full LM head.
"""

import torch

from curriculum import points
from minitransformer import MiniTransformer, TransformerConfig
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.peft import changed_tensors, state_fingerprint
from minitransformer.tokenizer import load_tokenizer

CHAPTER = "prompt_tuning"

D, VOCAB, CONTEXT = 16, 2048, 24  # the shipped tokenizer's vocabulary, so that label words are real tokens


def tiny_gpt(seed=0) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=VOCAB, max_seq_len=CONTEXT, d_model=D, n_layers=2, n_heads=2, d_ff=32,
                               dropout=0.0, mode="gpt")
    return MiniTransformer(config).eval()


def padded_batch(seed=1):
    """Three rows of lengths 7, 4 and 6, right-padded to 7 (pad id 0)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, VOCAB, (3, 7), generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:], mask[2, 6:] = 0, 0
    return ids * mask, mask


def tokenizer():
    return load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")


def explicit_run(model, prompt_ids, ids, mask):
    """The reference: the prompt's tokens written in front of the input, as ordinary tokens."""
    B, P = ids.shape[0], len(prompt_ids)
    full_ids = torch.cat([prompt_ids.expand(B, -1), ids], dim=1)
    full_mask = torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], dim=1)
    return model(full_ids, full_mask), full_mask


# --------------------------------------------------------------------------- SoftPrompt


@points(2, "SoftPrompt(P, d)(embeds (B, T, d), mask (B, T)) must return embeddings (B, P+T, d) whose first P rows are "
           "the prompt (the same for every row) followed by the input, and a mask (B, P+T) with P ones in front of "
           "the input's mask.", part="SoftPrompt")
def test_soft_prompt_prepends_and_extends_the_mask(impl):
    torch.manual_seed(0)
    soft = impl.SoftPrompt(5, D)
    embeds, mask = torch.randn(3, 7, D), padded_batch()[1]
    out, out_mask = soft(embeds, mask)
    assert tuple(out.shape) == (3, 12, D), f"prompted embeddings have shape {tuple(out.shape)}, expected (3, 12, {D})"
    assert tuple(out_mask.shape) == (3, 12), f"the mask has shape {tuple(out_mask.shape)}, expected (3, 12)"
    prompt = [p for p in soft.parameters()]
    assert len(prompt) == 1 and prompt[0].numel() == 5 * D, "SoftPrompt must hold exactly one P x d parameter"
    for row in range(3):
        assert torch.equal(out[row, :5], prompt[0].detach().reshape(5, D)), "the prompt must come first, in every row"
        assert torch.equal(out[row, 5:], embeds[row]), "the input's embeddings must follow the prompt unchanged"
    assert torch.equal(out_mask[:, :5].long(), torch.ones(3, 5, dtype=torch.long)), "the prompt is never padding"
    assert torch.equal(out_mask[:, 5:].long(), mask.long()), "the input's mask must follow the prompt's ones"
    _, default_mask = soft(embeds)
    assert bool(default_mask.bool().all()) and tuple(default_mask.shape) == (3, 12), \
        "without a mask every position (prompt and input) is real"


@points(3, "With a soft prompt equal to the embeddings of real tokens, the backbone run on the prompted embeddings "
           "and mask must give the same hidden states as running those tokens written in front of the input "
           "(same positions, same mask): at every real position, also in padded rows.", part="SoftPrompt")
def test_soft_prompt_equals_explicit_tokens(impl):
    model, (ids, mask) = tiny_gpt(), padded_batch()
    prompt_ids = torch.tensor([11, 300, 42, 7])
    soft = impl.SoftPrompt(4, D, init=model.tok_emb.weight[prompt_ids].detach())
    with torch.no_grad():
        embeds, soft_mask = soft(model.tok_emb(ids), mask)
        got = model(inputs_embeds=embeds, attention_mask=soft_mask).hidden_states
        reference, full_mask = explicit_run(model, prompt_ids, ids, mask)
    real = full_mask.bool()
    assert torch.allclose(got[real], reference.hidden_states[real], atol=1e-5), \
        "the prompted run differs from writing the prompt's tokens out: check the order (prompt first) and the mask"


@points(2, "SoftPrompt's `prompts` argument (B, P, d) must replace the module's own prompt row by row: row i gets "
           "prompts[i], so one batch can mix tasks.", part="SoftPrompt")
def test_soft_prompt_takes_one_prompt_per_row(impl):
    torch.manual_seed(0)
    soft = impl.SoftPrompt(3, D)
    embeds, mask = torch.randn(2, 4, D), torch.ones(2, 4, dtype=torch.long)
    prompts = torch.randn(2, 3, D)
    out, out_mask = soft(embeds, mask, prompts)
    assert tuple(out.shape) == (2, 7, D)
    for row in range(2):
        assert torch.equal(out[row, :3], prompts[row]), "row i must start with prompts[i]"
        assert torch.equal(out[row, 3:], embeds[row])


# --------------------------------------------------------------------------- verbaliser


@points(2, "verbalizer_ids(tokenizer, words) must return the one token id of each label word, in order "
           "(' bad' and ' good' are single tokens of the shipped tokenizer).", part="verbalizer")
def test_verbalizer_ids_are_the_single_tokens(impl):
    tok = tokenizer()
    words = [" bad", " good", " terrible"]
    expected = [tok.encode(w, add_special_tokens=False).ids[0] for w in words]
    assert list(impl.verbalizer_ids(tok, words)) == expected


@points(2, "A label word that is not exactly one token (e.g. ' positive' is 4 tokens) must raise a ValueError that "
           "names the word: the readout compares one logit per class.", part="verbalizer")
def test_multi_token_label_word_is_refused(impl):
    try:
        impl.verbalizer_ids(tokenizer(), [" bad", " positive"])
    except ValueError as error:
        assert "positive" in str(error), "the message must name the word that is not one token"
    else:
        raise AssertionError("verbalizer_ids accepted ' positive', which is 4 tokens")


@points(3, "verbalizer_logits(hidden (B, T, d), mask (B, T), lm_weight (V, d), label_ids (C,)) must return (B, C): "
           "the LM head's logits of the label words at each row's LAST REAL token (right padding), i.e. the "
           "prediction of the token after the input.", part="verbalizer")
def test_verbalizer_logits_read_the_lm_head_after_the_input(impl):
    model, (ids, mask) = tiny_gpt(), padded_batch()
    label_ids = torch.tensor([1480, 1006])
    with torch.no_grad():
        out = model(ids, mask)
        got = impl.verbalizer_logits(out.hidden_states, mask, model.tok_emb.weight, label_ids)
    assert tuple(got.shape) == (3, 2), f"got shape {tuple(got.shape)}, expected (batch, classes) = (3, 2)"
    last = mask.sum(1) - 1
    expected = out.logits[torch.arange(3), last][:, label_ids]
    assert torch.allclose(got, expected, atol=1e-5), "these are not the label words' logits at the last real token"


# --------------------------------------------------------------------------- the whole classifier


@points(3, "PromptTuningClassifier's class logits must equal the explicit-token reference: with a soft prompt equal "
           "to real token embeddings, the label words' logits after the input are those of the backbone run on "
           "[prompt tokens; input] (needs SoftPrompt and verbalizer_logits).", part="PromptTuningClassifier")
def test_classifier_equals_explicit_tokens(impl):
    model, (ids, mask), tok = tiny_gpt(), padded_batch(), tokenizer()
    config = impl.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT",
                                     prompt_tuning_init_text=" bad good", verbalizer=[" bad", " good"])
    classifier = impl.PromptTuningClassifier(model, tok, config).eval()
    prompt_ids = torch.tensor(tok.encode(" bad good bad good", add_special_tokens=False).ids)
    with torch.no_grad():
        got = classifier(ids, mask).logits
        reference, full_mask = explicit_run(model, prompt_ids, ids, mask)
    label_ids = [tok.encode(w, add_special_tokens=False).ids[0] for w in (" bad", " good")]
    expected = reference.logits[torch.arange(3), full_mask.sum(1) - 1][:, label_ids]
    assert torch.allclose(got, expected, atol=1e-5), "the classifier's logits differ from the explicit-token run"


@points(2, "Training must change only the P x d soft prompt: the backbone stays bit-identical and the prompt gets a "
           "gradient (needs SoftPrompt and verbalizer_logits).", part="PromptTuningClassifier")
def test_training_changes_only_the_prompt(impl):
    model, (ids, mask), tok = tiny_gpt(), padded_batch(), tokenizer()
    classifier = impl.PromptTuningClassifier(model, tok, impl.PromptTuningConfig(num_virtual_tokens=3))
    trainable = [p for p in classifier.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 3 * D, "exactly P x d numbers must train"
    before = state_fingerprint(model)
    prompt_before = trainable[0].detach().clone()
    optimizer = torch.optim.AdamW(trainable, lr=0.1)
    for _ in range(2):
        loss = classifier(ids, mask, labels=torch.tensor([0, 1, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not changed_tensors(model, before), f"backbone tensors changed: {changed_tensors(model, before)}"
    assert not torch.equal(trainable[0].detach(), prompt_before), "the soft prompt did not move: no gradient reached it"
