"""The NER protocol task (chapter 9): entity F1 from per-sentence counts, its interval, records and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import ner, protocol, records
from experiments.claims import BY_ID
from experiments.stats import entity_f1, paired_interval
from minitransformer.evaluation import f1_of_counts, span_counts


def test_span_counts_are_exact_span_and_type() -> None:
    assert span_counts(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]) == (1, 1, 1)
    assert span_counts(["B-PER", "O", "O"], ["B-PER", "I-PER", "O"]) == (0, 1, 1)  # a span cut short is wrong
    assert span_counts(["B-LOC", "I-LOC", "O"], ["B-PER", "I-PER", "O"]) == (0, 1, 1)  # the wrong type is wrong
    assert f1_of_counts([(1, 1, 1), (0, 1, 1)]) == pytest.approx(0.5)
    assert f1_of_counts([(0, 0, 2)]) == 0.0


def rows(rng, n: int, hit: float) -> list[list[int]]:
    gold = rng.integers(1, 4, n)
    correct = rng.binomial(gold, hit)
    predicted = correct + rng.binomial(gold - correct, 0.5)
    return np.stack([correct, predicted, gold], axis=1).tolist()


def test_the_interval_of_a_corpus_f1_resamples_sentences() -> None:
    rng = np.random.default_rng(0)
    seeds = [rows(rng, 300, 0.8) for _ in range(3)]
    one = paired_interval(seeds, statistic="value", reduce="entity_f1")
    pooled = np.asarray(seeds, dtype=float).sum(axis=(0, 1))
    assert one.estimate == pytest.approx(float(entity_f1(pooled)))
    assert one.low < one.estimate < one.high and one.sample_half_width > 0
    same = paired_interval(seeds, seeds, statistic="ratio", reduce="entity_f1")
    assert same.estimate == pytest.approx(1.0) and same.half_width == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="Unknown reduce"):
        paired_interval(seeds, statistic="value", reduce="bleu")
    with pytest.raises(ValueError, match="one row of counts per example"):
        paired_interval([[1.0, 0.0]], statistic="value", reduce="entity_f1")


def counted(method: str, seed: int, epochs: int, counts: list[list[int]], lr: float | None = 0.1) -> dict:
    return {"schema": records.SCHEMA, "task": ner.TASK, "method": method, "seed": seed, "epochs": epochs, "lr": lr,
            "validation": {"accuracy": f1_of_counts(counts), "counts": counts, "loss": 0.2, "texts": "set-a",
                           "examples": "set-a"}}


def test_a_record_of_counts_is_checked(tmp_path: Path) -> None:
    records.save_run(counted("full", 0, 40, [[1, 1, 1], [0, 1, 2]]), tmp_path)
    bad = counted("full", 1, 40, [[1, 1, 1]])
    bad["validation"]["accuracy"] = 0.5
    with pytest.raises(records.RecordError, match="not the entity F1 of its counts"):
        records.save_run(bad, tmp_path)
    with pytest.raises(records.RecordError, match="correct at most predicted and gold"):
        records.save_run(counted("full", 1, 40, [[2, 1, 1]]), tmp_path)


def swept(method, epochs, lr):
    from experiments.sweeps import SweepCheck

    return SweepCheck(method, epochs, lr, (0.01, 0.1, 1.0), 0.1, (0.5, 0.8, 0.6))


@pytest.mark.parametrize("hit, outcome", [(0.95, protocol.REPRODUCED), (0.5, protocol.NOT_REPRODUCED)])
def test_a_ner_claim_is_judged_on_entity_f1(tmp_path: Path, hit, outcome) -> None:
    rng = np.random.default_rng(1)
    for method, h in (("full", 0.8), ("p_tuning_v2", hit)):
        seeds = [rows(rng, 300, h) for _ in range(3)]
        for seed, counts in enumerate(seeds):
            records.save_run(counted(method, seed, ner.EPOCHS, counts), tmp_path)
        records.save_run(counted(method, 0, 2 * ner.EPOCHS, seeds[0]), tmp_path)  # converged: twice the budget, no gain
    verdict = protocol.judge(BY_ID["p_tuning_v2.matches_full_ner"], root=tmp_path, sweeps=swept)
    assert verdict.outcome == outcome, verdict.reason


def test_the_frozen_baseline_is_an_exact_probe_and_a_run_keeps_its_counts(monkeypatch) -> None:
    assert ner.exact("frozen") and ner.exact("frozen_gpt") and not ner.exact("p_tuning_v2_gpt")
    probe = ner.run(ner.RunSpec("frozen", 0, 1), progress=False)
    records.check_record(probe)
    assert probe["backbone"] == "bert"  # chapter 9's methods adapt the BERT-mode backbone; the _gpt twins the GPT one
    assert probe["epochs"] == 0 and probe["trainable"] == 7 * 129  # one linear head: 7 tags x (d + 1)
    assert len(probe["validation"]["counts"]) == 300
    monkeypatch.setattr(ner, "EPOCHS", 1)
    run = ner.run(ner.RunSpec("p_tuning_v2_gpt", 0, 1, lr=0.1), progress=False)
    records.check_record(run)
    assert run["backbone"] == "gpt" and run["sweep"] and len(run["curve"]) == 1
    assert run["validation"]["accuracy"] == pytest.approx(f1_of_counts(run["validation"]["counts"]))


def test_the_verdict_notes_keep_each_tasks_own_full_fine_tuning() -> None:
    """`full` at NER is another model and budget than `full` at sentiment: the README's notes list both."""
    from experiments.claims import verdict_table

    notes = verdict_table(markdown=True).split("claims without a verdict:")[1]
    for task in ("sentiment", "ner"):
        assert f"- {task}, full: " in notes, f"the convergence note of {task}'s full fine-tuning is missing"
    chapter9 = verdict_table(9)  # one task: no prefix needed
    assert "\n  full: 40→80 epochs" in chapter9 and "ner, " not in chapter9


def test_every_committed_ner_run_used_its_methods_backbone() -> None:
    """A record's backbone is the one its method names: `full` is BERT, `full_gpt` GPT (never mixed up)."""
    methods = ner.known_methods()
    found = list((records.RESULTS_DIR / "ner").rglob("*.json"))
    assert found, "no NER protocol run is committed"
    for path in found:
        run = records.load_run_file(path)
        assert run["backbone"] == methods[run["method"]].backbone, f"{path}: {run['method']} ran on {run['backbone']}"


def test_the_lexicon_baseline_knows_the_names_of_training_and_nothing_else() -> None:
    from minitransformer.world import load_task

    task = load_task("ner")
    lexicon = {"Wanda": "B-PER", "Stonecliff": "B-LOC"}
    assert ner.lexicon_tags(["Wanda", "met", "Zed", "in", "Stonecliff"], lexicon) == ["B-PER", "O", "O", "O", "B-LOC"]
    counts = ner.lexicon_baseline("validation")
    assert len(counts) == len(task.validation) and all(c[0] <= min(c[1], c[2]) for c in counts)
    # On the sentences it was built from it can only miss where a word's tag depends on its context.
    trained_on = ner.lexicon_baseline("train", n_train=len(task.train))
    assert f1_of_counts(trained_on) > f1_of_counts(counts)


def test_samples_bracket_entities_and_name_each_error() -> None:
    assert ner.bracketed(["Wanda", "Shepherd", "left", "Leeds"], ["B-PER", "I-PER", "O", "B-LOC"]) == \
        "[Wanda Shepherd]PER left [Leeds]LOC"
    from minitransformer.world import load_task

    perfect = [s["tags"] for s in load_task("ner").validation]
    text = ner.tagged_samples({"perfect": perfect, "lexicon": ner.lexicon_predictions("validation")}, [0])
    lines = text.splitlines()
    assert lines[1].endswith("✓") and "✗ missed" in lines[2]


def test_the_score_table_lists_methods_without_runs(tmp_path: Path) -> None:
    table = ner.score_table(["full", "p_tuning_v2_gpt"], root=tmp_path)
    assert "baseline: each word's most frequent training tag" in table
    assert table.count("not run") == 2
