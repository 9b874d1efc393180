"""Shared utilities: parameter counts, freezing, memory accounting, metrics, batching and tokenization."""

import pytest
import torch
import torch.nn as nn

from minitransformer import (MiniTransformer, SequenceClassifier, TransformerConfig, changed_tensors, count_parameters,
                             freeze, load_pretrained, print_trainable_parameters, state_fingerprint,
                             training_state_memory)
from minitransformer.tokenizer import encode, encode_words_with_labels
from minitransformer.training import bio_spans, classification_loader, get_device, measure_latency, train


def tiny_classifier():
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32, mode="bert")
    return SequenceClassifier(MiniTransformer(config), num_labels=2)


def test_print_trainable_parameters_hf_format(capsys):
    model = tiny_classifier()
    freeze(model.backbone)
    trainable, total = print_trainable_parameters(model)
    assert trainable == 16 * 2 + 2
    assert total == sum(p.numel() for p in model.parameters())
    assert "trainable params: 34 || all params:" in capsys.readouterr().out


def test_training_state_memory_counts_real_tensors():
    model = tiny_classifier()
    freeze(model.backbone)
    x = torch.randint(1, 40, (4, 6))
    loader = [{"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0, 1, 0, 1])}]
    result = train(model, loader, epochs=1, progress=False)
    memory = training_state_memory(model, result.optimizer)
    head_bytes = (16 * 2 + 2) * 4
    assert memory["gradients"] == head_bytes
    assert memory["optimizer_state"] >= 2 * head_bytes  # Adam: two moments (+ a step counter)
    assert memory["parameters"] == count_parameters(model)[1] * 4


def test_frozen_backbone_fingerprint_detects_changes():
    model = tiny_classifier()
    fingerprint = state_fingerprint(model.backbone)
    assert changed_tensors(model.backbone, fingerprint) == []
    with torch.no_grad():
        model.backbone.blocks[0].attn.q_proj.bias.add_(1e-6)
    assert changed_tensors(model.backbone, fingerprint) == ["blocks.0.attn.q_proj.bias"]


def test_train_refuses_a_fully_frozen_model():
    model = freeze(tiny_classifier())
    with pytest.raises(ValueError, match="nothing to train"):
        train(model, [], progress=False)


def test_bio_spans():
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == {(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 6, "ORG")}


def test_labels_align_with_first_subwords():
    _, tokenizer = load_pretrained("bert")
    words = ["Kenji", "Quinn", "is", "originally", "from", "Marton", "."]
    labels = [1, 2, 0, 0, 0, 3, 0]
    ids, token_labels = encode_words_with_labels(tokenizer, words, labels, "bert")
    assert len(ids) == len(token_labels)
    assert token_labels[0] == -100 and token_labels[-1] == -100  # [CLS], [SEP]
    assert [label for label in token_labels if label != -100] == labels
    assert ids == encode(tokenizer, words, "bert")


def test_loader_pads_and_masks():
    _, tokenizer = load_pretrained("bert")
    loader = classification_loader([{"text": "Good.", "label": 1}, {"text": "The soup was not good at all.", "label": 0}],
                                   tokenizer, "bert", batch_size=2)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    assert (batch["input_ids"][0][batch["attention_mask"][0] == 0] == tokenizer.token_to_id("[PAD]")).all()


def test_device_choice_and_latency():
    assert get_device("cpu").type == "cpu"
    assert get_device().type in {"cuda", "mps", "cpu"}
    layer = nn.Linear(4, 4)
    assert 0 < measure_latency(lambda: layer(torch.ones(1, 4)), min_run_time=0.05) < 0.1


def test_shuffle_order_depends_only_on_seed_and_epoch():
    _, tokenizer = load_pretrained("bert")
    examples = [{"text": f"Review number {i}.", "label": i % 2} for i in range(64)]
    loader = classification_loader(examples, tokenizer, "bert", batch_size=8, shuffle=True, seed=3)

    def first_batch(epoch):
        loader.set_epoch(epoch)
        return next(iter(loader))["input_ids"]

    a = first_batch(0)
    for _ in loader:  # a whole extra pass must not change what epoch 0 looks like
        pass
    assert torch.equal(first_batch(0), a)
    assert not torch.equal(first_batch(1), a)
