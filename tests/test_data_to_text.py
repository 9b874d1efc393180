"""The data-to-text helpers (minitransformer/data_to_text.py): encoding, batching, generation, scoring."""

import pytest
import torch

from minitransformer import MiniTransformer, TransformerConfig
from minitransformer.checkpoint import load_pretrained
from minitransformer.data_to_text import (data_to_text_loader, data_to_text_pairs, encode_pair, evaluate_lm_loss,
                                          generate_texts, generate_with, prompt_ids, score_texts)
from minitransformer.tokenizer import EOS, SEP
from minitransformer.world import load_task


@pytest.fixture(scope="module")
def tokenizer():
    return load_pretrained("gpt")[1]


@pytest.fixture(scope="module")
def task():
    return load_task("data_to_text")


def test_loss_is_on_the_text_only_and_aligned(tokenizer):
    mr, text = "name[The Plum], food[Italian]", "The Plum serves Italian food."
    ids, labels = encode_pair(tokenizer, mr, text)
    prompt = prompt_ids(tokenizer, mr)
    assert ids[len(prompt) - 1] == tokenizer.token_to_id(SEP) and ids[-1] == tokenizer.token_to_id(EOS)
    assert len(ids) == len(labels)
    assert all(label == -100 for label in labels[: len(prompt) - 1]), "no loss while reading the MR"
    # labels[t] is the next input token, from [SEP] (predicting the first text token) up to [EOS]
    assert labels[len(prompt) - 1: -1] == ids[len(prompt):]
    assert labels[-1] == -100
    assert tokenizer.decode(ids[len(prompt):-1]).strip() == text


def test_max_len_cuts_the_text_never_the_mr(tokenizer):
    mr = "name[The Plum], food[Italian]"
    ids, labels = encode_pair(tokenizer, mr, "word " * 50, max_len=20)
    assert len(ids) == len(labels) == 20 and ids[: len(prompt_ids(tokenizer, mr))] == prompt_ids(tokenizer, mr)
    with pytest.raises(ValueError, match="max_len"):
        encode_pair(tokenizer, mr, "text", max_len=5)


def test_pairs_and_loader(tokenizer, task):
    examples = task.train[:6]
    assert len(data_to_text_pairs(examples)) == 6
    assert len(data_to_text_pairs(examples, "all")) == sum(len(ex["references"]) for ex in examples)
    with pytest.raises(ValueError, match="first"):
        data_to_text_pairs(examples, "some")
    batch = next(iter(data_to_text_loader(examples, tokenizer, batch_size=6)))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all(), "no loss on padding"


def test_generation_is_batched_by_prompt_length_and_matches_one_by_one(tokenizer, task):
    model, _ = load_pretrained("gpt")
    examples = task.validation[:5]
    batched = generate_texts(model, examples, tokenizer, max_new_tokens=8)
    single = [generate_texts(model, [ex], tokenizer, max_new_tokens=8)[0] for ex in examples]
    assert batched == single and all(isinstance(s, str) for s in batched)


def test_generation_behind_a_prefix_and_its_errors(tokenizer, task):
    model, _ = load_pretrained("gpt")
    cfg = model.config
    prefix = tuple((torch.zeros(1, cfg.n_heads, 4, cfg.head_dim), torch.zeros(1, cfg.n_heads, 4, cfg.head_dim))
                   for _ in range(cfg.n_layers))
    assert len(generate_texts(model, task.validation[:2], tokenizer, prefix=prefix, max_new_tokens=4)) == 2
    wrong_batch = tuple((k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1)) for k, v in prefix)
    with pytest.raises(ValueError, match="batch size 1"):
        generate_texts(model, task.validation[:2], tokenizer, prefix=wrong_batch)
    huge = tuple((torch.zeros(1, cfg.n_heads, cfg.max_seq_len - 5, cfg.head_dim),) * 2 for _ in range(cfg.n_layers))
    with pytest.raises(ValueError, match="shorter prefix"):
        generate_texts(model, task.validation[:1], tokenizer, prefix=huge)
    bert = MiniTransformer(TransformerConfig(mode="bert"))
    with pytest.raises(ValueError, match="GPT-mode"):
        generate_texts(bert, task.validation[:1], tokenizer)


def test_generate_with_uses_the_prefix_of_a_wrapper(tokenizer, task):
    model, _ = load_pretrained("gpt")
    cfg = model.config
    prefix = tuple((torch.randn(1, cfg.n_heads, 3, cfg.head_dim), torch.randn(1, cfg.n_heads, 3, cfg.head_dim))
                   for _ in range(cfg.n_layers))

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model

        def get_prefix(self, batch_size):
            return prefix

    examples = task.validation[:3]
    assert generate_with(Wrapper(), examples, tokenizer, max_new_tokens=6) == \
        generate_texts(model, examples, tokenizer, prefix=prefix, max_new_tokens=6)


def test_scores_and_loss(tokenizer, task):
    examples = task.validation[:4]
    perfect = score_texts(examples, [ex["references"][0] for ex in examples])
    assert perfect["bleu"] > 90 and perfect["slot_error_rate"] == 0.0
    empty = score_texts(examples, ["" for _ in examples])
    assert empty["bleu"] < 1 and empty["slot_error_rate"] == 1.0
    model, _ = load_pretrained("gpt")
    loss = evaluate_lm_loss(model, data_to_text_loader(examples, tokenizer, batch_size=2))
    assert 0 < loss < 10
