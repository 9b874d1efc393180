"""Shared utilities: parameter counts, freezing, memory accounting, metrics, batching and tokenization."""

import pytest
import torch
import torch.nn as nn

from minitransformer import (MiniTransformer, SequenceClassifier, TransformerConfig, changed_tensors, count_parameters,
                             freeze, load_pretrained, print_trainable_parameters, state_fingerprint,
                             training_state_memory)
from minitransformer.tokenizer import encode, encode_words_with_labels
from minitransformer.data import classification_loader
from minitransformer.evaluation import bio_spans
from minitransformer.measure import measure_latency
from minitransformer.training import get_device, train


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


def test_compare_latency_interleaves_its_rounds_and_keeps_the_best():
    import time

    from minitransformer import compare_latency

    order = []

    def call(name, seconds):
        def fn():
            order.append(name)
            time.sleep(seconds)
        return fn

    latency = compare_latency({"fast": call("fast", 0.0), "slow": call("slow", 0.002)}, rounds=3, min_run_time=0.01)
    assert set(latency.seconds) == set(latency.ratio) == {"fast", "slow"}
    assert latency.seconds["slow"] >= 0.002 > latency.seconds["fast"]
    assert latency.ratio["fast"] == 1.0 and latency.ratio["slow"] > 10
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches == 2 * (1 + 3) - 1, "a warm-up round, then each round times every call once, in turn"
    with pytest.raises(ValueError, match="at least one call"):
        compare_latency({})
    with pytest.raises(ValueError, match="rounds >= 1"):
        compare_latency({"fast": call("fast", 0.0)}, rounds=0)


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


# ----------------------------------------------------------------------------- the standard recipe's pieces


def test_lr_schedule_warms_up_then_decays_to_zero():
    from minitransformer.training import lr_factor

    total, warmup = 100, 10
    factors = [lr_factor(s, total, warmup, "linear") for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # non-increasing after warmup
    assert factors[-1] < 0.02
    cosine = [lr_factor(s, total, warmup, "cosine") for s in range(total)]
    assert cosine[10] == pytest.approx(1.0) and cosine[-1] < 0.01
    with pytest.raises(ValueError, match="Unknown schedule"):
        lr_factor(0, total, warmup, "exponential")


def test_train_follows_the_schedule_and_records_curve_and_accuracy():
    model = tiny_classifier()
    x = torch.randint(1, 40, (8, 6))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0, 1] * 4)}
    scores = iter(range(100))
    result = train(model, [batch] * 5, epochs=2, lr=1e-2, warmup_ratio=0.2, progress=False,
                   eval_fn=lambda m: float(next(scores)))
    assert result.steps == 10 and len(result.learning_rates) == 10
    assert result.learning_rates[0] == pytest.approx(5e-3)  # warmup: step 1 of 2
    assert max(result.learning_rates) == pytest.approx(1e-2)
    assert result.learning_rates[-1] < result.learning_rates[3]
    assert result.curve == [0.0, 1.0]  # one evaluation per epoch
    assert 0.0 <= result.train_accuracy <= 1.0
    with pytest.raises(ValueError, match="warmup_ratio"):
        train(model, [batch], warmup_ratio=1.5, progress=False)


def test_a_run_that_never_leaves_the_plateau_is_flagged():
    from minitransformer.training import PlateauWarning, fit_and_evaluate

    model = tiny_classifier()
    x = torch.randint(1, 40, (8, 6))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0] * 6 + [1] * 2)}
    with torch.no_grad():  # a head that always answers class 0, and a learning rate that cannot move it
        model.head.bias.copy_(torch.tensor([10.0, -10.0]))
    with pytest.warns(PlateauWarning, match="one-class plateau"):
        experiment = fit_and_evaluate("stuck", model, [batch] * 3, [batch], epochs=1, lr=0.0, progress=False)
    assert experiment.on_plateau and experiment.majority == pytest.approx(0.75)
    assert "PLATEAU" in experiment.row()


def test_linear_probe_fits_standardised_features_and_changes_only_the_head():
    from minitransformer.linear_probe import fit_linear_probe, pooled_features

    model = tiny_classifier()
    freeze(model.backbone)
    torch.manual_seed(1)
    x = torch.randint(1, 40, (64, 6))
    # Labels that a linear function of the frozen features can represent: the sign of a random direction.
    features, _ = pooled_features(model, [{"input_ids": x, "attention_mask": torch.ones_like(x),
                                           "labels": torch.zeros(64, dtype=torch.long)}])
    direction = torch.randn(features.shape[1])
    centred = features - features.mean(0)
    labels = (centred @ direction > 0).long()
    loader = [{"input_ids": x, "attention_mask": torch.ones_like(x), "labels": labels}]
    backbone_before = state_fingerprint(model.backbone)
    experiment = fit_linear_probe("probe", model, loader, loader)
    assert experiment.score >= 0.95 and experiment.train_accuracy >= 0.95
    assert changed_tensors(model.backbone, backbone_before) == []
    unfrozen = tiny_classifier()
    with pytest.raises(ValueError, match="freeze"):
        fit_linear_probe("probe", unfrozen, loader, loader)


def test_progress_bar_does_not_redraw_on_every_step(monkeypatch):
    """A redraw per step floods a notebook kernel with messages (nbval then times out waiting for output)."""
    import minitransformer.training as training

    refreshes = []
    real_tqdm = training._tqdm

    class CountingBar(real_tqdm):
        def refresh(self, *args, **kwargs):
            refreshes.append(1)
            return super().refresh(*args, **kwargs)

    monkeypatch.setattr(training, "_tqdm", lambda *a, **k: CountingBar(*a, **{**k, "mininterval": 3600}))
    model = tiny_classifier()
    x = torch.randint(1, 40, (4, 6))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0, 1, 0, 1])}
    train(model, [batch] * 50, epochs=1, progress=True)
    assert len(refreshes) < 10, f"the bar redrew {len(refreshes)} times for 50 steps"


def test_progress_bar_redraws_a_bounded_number_of_times_however_slow_the_steps():
    """The bound that keeps a long training cell under nbval's message limit: a notebook bar sends a few
    messages per redraw, and ZeroMQ drops what exceeds 1,000 queued messages (the kernel's 'idle' with it)."""
    import io

    from minitransformer.training import MAX_REDRAWS, MIN_REDRAW_SECONDS, progress_bar

    screen = io.StringIO()
    bar = progress_bar(total=20_000, file=screen, mininterval=0)  # as if every step took longer than the interval
    for _ in range(20_000):
        bar.update(1)
    bar.close()
    redraws = screen.getvalue().count("\r")
    assert 0 < redraws <= MAX_REDRAWS + 3, f"{redraws} redraws for one bar"
    assert progress_bar(total=10, file=screen).mininterval == MIN_REDRAW_SECONDS >= 1.0
    assert progress_bar(range(500), file=screen).total == 500


def test_lr_overrides_give_a_module_its_own_learning_rate():
    model = tiny_classifier()
    x = torch.randint(1, 40, (4, 6))
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": torch.tensor([0, 1, 0, 1])}
    result = train(model, [batch] * 4, lr=1e-2, lr_overrides={"head.": 1e-4}, warmup_ratio=0.0, progress=False)
    by_size = {len(g["params"]): g for g in result.optimizer.param_groups}
    assert len(result.optimizer.param_groups) == 2
    head_group = by_size[2]  # head.weight and head.bias
    assert head_group["initial_lr"] == pytest.approx(1e-4)
    assert all(g["initial_lr"] == pytest.approx(1e-2) for g in result.optimizer.param_groups if g is not head_group)


def test_set_dropout_sets_every_layer_and_refuses_bad_probabilities():
    import torch.nn as nn

    from minitransformer import recipes
    from minitransformer.training import set_dropout

    model = recipes.fresh_classifier()  # the recipe's dropout
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {recipes.DROPOUT}
    assert set_dropout(model, 0.25) == sum(isinstance(m, nn.Dropout) for m in model.modules())
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.25}
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        set_dropout(model, 1.0)


def test_still_rising_compares_the_last_epochs_with_the_ones_before():
    from minitransformer.training import RISING_MARGIN, still_rising

    assert still_rising([0.5, 0.6, 0.7, 0.75, 0.8, 0.85])
    assert not still_rising([0.5, 0.85, 0.86, 0.85, 0.86, 0.85, 0.86])
    flat_gain = [0.8] * 3 + [0.8 + RISING_MARGIN / 2] * 3  # gains less than the margin
    assert not still_rising(flat_gain)
    with pytest.raises(ValueError, match="at least 6"):
        still_rising([0.5, 0.6])


def test_forward_cost_tells_a_merged_lora_from_an_unmerged_one():
    """Chapter 3's 'no extra inference latency' check counts FLOPs and operations: it must fail for an
    unmerged model (the extra B A x branch) and hold exactly for a merged one."""
    import copy

    from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig
    from minitransformer.measure import forward_cost
    from solutions.lora import LoraConfig, inject_lora, merge_lora

    torch.manual_seed(0)
    base = SequenceClassifier(MiniTransformer(TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=2,
                                                                n_heads=2, d_ff=32, mode="gpt")), num_labels=2).eval()
    lora = inject_lora(copy.deepcopy(base), LoraConfig(r=2), verbose=False).eval()
    ids, mask = torch.randint(0, 40, (3, 8)), torch.ones(3, 8, dtype=torch.long)
    base_cost = forward_cost(lambda: base(ids, mask))
    unmerged = forward_cost(lambda: lora(ids, mask))
    assert unmerged[0] > base_cost[0] and unmerged[1] > base_cost[1]
    merged = merge_lora(lora)
    assert forward_cost(lambda: merged(ids, mask)) == base_cost


def test_a_template_replaces_eos_and_survives_truncation():
    from minitransformer import load_pretrained
    from minitransformer.data import encode_with_template

    _, tokenizer = load_pretrained("gpt")
    tail = tokenizer.encode(" Overall, it was a", add_special_tokens=False).ids
    long_text = "The food was cold. " * 40
    ids = encode_with_template(tokenizer, long_text, " Overall, it was a", "gpt", max_len=96)
    assert len(ids) == 96 and ids[-len(tail):] == tail  # the review is cut, never the template
    assert tokenizer.token_to_id("[EOS]") not in ids
    loader = classification_loader([{"text": "It was lovely.", "label": 1}], tokenizer, "gpt", template=" Overall, it was a")
    batch = next(iter(loader))
    assert batch["input_ids"][0, -len(tail):].tolist() == tail and batch["attention_mask"].all()
    with pytest.raises(ValueError, match="GPT-mode"):
        encode_with_template(tokenizer, "x", " Overall, it was a", "bert")
    with pytest.raises(ValueError, match="fewer than max_len"):
        encode_with_template(tokenizer, "x", " Overall, it was a", "gpt", max_len=3)
