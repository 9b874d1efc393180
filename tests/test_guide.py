"""Chapter 10's guide (`experiments.guide`): decisions computed over every row, none from a hard-coded method list."""

import pytest

from experiments import comparison, guide


def row(task, method, mean, sd=0.01, n=3, stored=1000, b1=1.0, b32=1.0, memory=10_000, activations=5_000):
    return {"task": task, "method": method, "label": method, "mean": mean, "sd": sd, "n": n,
            "stored_parameters": stored, "latency_b1_vs_base": b1, "latency_b32_vs_base": b32,
            "memory": {"total": memory}, "activation_bytes": activations}


def table(*extra):
    return [row("sentiment", "full", 0.90, stored=10**6, memory=4 * 10**6, activations=10**6),
            row("sentiment", "frozen", 0.60, stored=100, b1=0.97, memory=10**6, activations=10),
            row("sentiment", "lora_merged", 0.89, b1=1.03, b32=1.02), *extra]


def decision(rows, heading, ser=None):
    [text] = [d for d in guide.decisions(rows, ser) if heading in d]
    return text


def test_within_noise_uses_the_standard_error_of_the_difference():
    a, b = row("t", "a", 0.90, sd=0.03), row("t", "b", 0.86, sd=0.03)  # 2 * sqrt(2 * 0.03^2 / 3) = 0.049
    assert guide.within_noise(a, b)
    assert not guide.within_noise(a, row("t", "c", 0.84, sd=0.03))
    assert not guide.within_noise(a | {"sd": 0.0}, b | {"sd": 0.0})


def test_a_method_added_to_the_table_enters_the_latency_decision():
    # The regression the old guide had: its latency sentence named three methods, and prompt tuning (x1.54 at
    # batch 32) was never mentioned. Here a method the guide has never heard of must appear.
    rows = table(row("sentiment", "brand_new", 0.85, b1=1.01, b32=1.60))
    text = decision(rows, "latency must not grow")
    assert "brand_new x1.01/x1.60" in text
    band = guide.noise_band(rows)
    assert band == (0.97, 1.03)  # only SAME_COMPUTE rows set the band
    assert "frozen" not in text.split("real cost")[1]


def test_storage_decision_takes_the_cheapest_row_within_noise_of_the_best():
    cheap = row("sentiment", "cheap", 0.895, stored=10)
    assert "cheap 0.895, storing 10 numbers" in decision(table(cheap), "cheap to store")
    # the same cheap method, clearly worse: the best row wins and the guide says nothing cheaper is near it
    worse = row("sentiment", "cheap", 0.70, stored=10)
    text = decision(table(worse), "cheap to store")
    assert "full 0.900, a full copy" in text and "no cheaper row is within noise" in text


def test_memory_decision_counts_activations():
    small_state = row("sentiment", "small_state", 0.90, memory=1_000, activations=3 * 10**6)
    small_total = row("sentiment", "small_total", 0.90, memory=2 * 10**6, activations=10)
    text = decision(table(small_state, small_total), "training memory")
    assert "small_total" in text and "small_state" not in text


def test_mixed_batches_only_consider_methods_that_bring_the_task_as_data():
    rows = table(row("sentiment", "prompt_tuning", 0.70), row("sentiment", "bitfit", 0.91))
    text = decision(rows, "mix tasks")
    assert "prompt_tuning 0.700, below the task's best (bitfit 0.910)" in text


def test_an_unlearned_task_decides_nothing():
    rows = table(row("data_to_text", "full", 0.30, sd=0.01), row("data_to_text", "lora", 0.29, sd=0.01))
    unlearned = guide.decisions(rows, {"data_to_text": "full 0.300 [0.250, 0.350] is not above one fixed text's 0.400"})
    assert any("data_to_text decides nothing yet" in d and "not above one fixed text" in d for d in unlearned)
    assert not any("data_to_text: " in d for d in unlearned[:2])
    learned = guide.decisions(rows, {})
    assert any("data_to_text: full 0.300" in d for d in learned)


def test_learned_is_the_verdicts_own_gate_on_full_fine_tuning(tmp_path, monkeypatch):
    """Data-to-text's gate is the protocol's (full fine-tuning above one fixed text); a task without a gate passes;
    missing runs are one error naming the command."""
    from experiments import data_to_text

    assert guide.unlearned_tasks(["sentiment", "ner", "data_to_text", "probe"]) == {}  # the committed runs
    monkeypatch.setattr(data_to_text, "fixed_text_accuracy", lambda n_train, split="validation": 0.99)
    reason = guide.unlearned_tasks(["data_to_text"])["data_to_text"]
    assert reason.startswith("full ") and "is not above one fixed text's 0.990" in reason
    with pytest.raises(FileNotFoundError, match="python -m experiments run data_to_text --methods full"):
        guide.unlearned_tasks(["data_to_text"], root=tmp_path)


def test_no_same_compute_row_is_one_clear_error():
    with pytest.raises(ValueError, match="timing noise cannot be estimated"):
        guide.noise_band([row("sentiment", "lora", 0.9)])


def test_the_committed_table_gives_a_decision_for_every_concern():
    rows = comparison.load_results()["rows"]
    decisions = guide.decisions(rows, guide.unlearned_tasks(dict.fromkeys(r["task"] for r in rows)))
    for heading in ("score alone", "cheap to store", "latency must not grow", "training memory", "mix tasks"):
        assert any(heading in d for d in decisions), heading
    slow = [r for r in rows if r["latency_b32_vs_base"] > guide.noise_band(rows)[1]]
    latency = next(d for d in decisions if "latency must not grow" in d)
    assert all(f"{r['label']} x{r['latency_b1_vs_base']:.2f}" in latency for r in slow)
