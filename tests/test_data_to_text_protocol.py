"""The data-to-text protocol task (chapter 8): its records, baselines, BLEU intervals and verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import data_to_text as d2t
from experiments import data_to_text_scores as scores
from experiments import protocol, records
from experiments.claims import BY_ID
from minitransformer.world import load_task
from minitransformer.world.metrics import bleu, slot_error_rate, slot_errors


@pytest.fixture(scope="module")
def task():
    return load_task("data_to_text")


def test_the_template_baseline_realises_every_slot_of_every_mr(task) -> None:
    for ex in task.validation + task.test:
        assert slot_errors(ex["record"], scores.template(ex["record"])) == [], ex["meaning_representation"]


def test_a_template_that_drops_a_slot_is_caught(task) -> None:
    ex = next(e for e in task.validation if "near" in e["record"])
    without = {k: v for k, v in ex["record"].items() if k != "near"}
    assert slot_errors(ex["record"], scores.template(without)) == ["near"]


def test_the_nearest_reference_is_about_another_venue(task) -> None:
    outputs = scores.baselines(task.validation, task.train)["nearest training reference"]
    # Validation venues never occur in training, so the copied reference names the wrong venue every time.
    assert all("name" in slot_errors(ex["record"], out) for ex, out in zip(task.validation, outputs))


def test_bleu_from_summed_sentence_counts_is_sacrebleus_corpus_bleu(task) -> None:
    refs = [ex["references"] for ex in task.validation]
    for outputs in scores.baselines(task.validation, task.train).values():
        one = scores.bleu_interval([outputs], refs, replicates=200)
        assert one.estimate == pytest.approx(bleu(outputs, refs), abs=1e-9)
        assert one.seed_half_width == 0 and one.low < one.estimate < one.high


def test_the_bleu_interval_counts_the_seeds_spread(task) -> None:
    refs = [ex["references"] for ex in task.validation]
    made = scores.baselines(task.validation, task.train)
    same = scores.bleu_interval([made["template"]] * 3, refs, replicates=200)
    mixed = scores.bleu_interval([made["template"], made["nearest training reference"], made["template"]], refs,
                                 replicates=200)
    assert same.seed_half_width == pytest.approx(0.0, abs=1e-9)
    assert mixed.seed_half_width > 5 and mixed.half_width > same.half_width


def test_slot_scores_average_to_one_minus_the_ser_when_every_mr_has_as_many_slots(task) -> None:
    examples = [ex for ex in task.validation if len(ex["record"]) == 5]
    outputs = scores.baselines(examples, task.train)["nearest training reference"]
    mean = float(np.mean(d2t.slot_scores(examples, outputs)))
    assert mean == pytest.approx(1 - slot_error_rate([ex["record"] for ex in examples], outputs))


def fractional(method: str, seed: int, epochs: int, values: list[float], lr: float = 0.003) -> dict:
    return {"schema": records.SCHEMA, "task": d2t.TASK, "method": method, "seed": seed, "epochs": epochs, "lr": lr,
            "validation": {"accuracy": sum(values) / len(values), "scores": values, "loss": 1.0,
                           "texts": "set-a", "examples": "set-a"}}


def test_a_record_of_fractional_scores_is_checked(tmp_path: Path) -> None:
    records.save_run(fractional("full", 0, 20, [1.0, 0.5, 0.25]), tmp_path)
    assert records.correct_vector(records.load_run(d2t.TASK, "full", 20, 0, tmp_path)) == [1.0, 0.5, 0.25]
    bad = fractional("full", 1, 20, [1.0, 0.5])
    bad["validation"]["accuracy"] = 0.9
    with pytest.raises(records.RecordError, match="not the mean of its scores"):
        records.save_run(bad, tmp_path)
    with pytest.raises(records.RecordError, match=r"one score in \[0, 1\]"):
        records.save_run(fractional("full", 1, 20, [1.5, 0.5]), tmp_path)


def write_runs(root: Path, method: str, means: list[float], doubled: float, rng) -> None:
    epochs = d2t.epochs_of(method)
    for seed, mean in enumerate(means + [doubled]):
        values = np.clip(rng.normal(mean, 0.15, 300), 0, 1)
        values = np.round(np.clip(values + mean - values.mean(), 0, 1), 6).tolist()
        run = fractional(method, 0 if seed == len(means) else seed, 2 * epochs if seed == len(means) else epochs,
                         values)
        records.save_run(run, root)


def swept(method, epochs, lr):
    from experiments.sweeps import SweepCheck

    return SweepCheck(method, epochs, lr, (0.001, 0.003, 0.01), 0.003, (0.5, 0.8, 0.6))


@pytest.mark.parametrize("prefix, outcome", [(0.80, protocol.REPRODUCED), (0.55, protocol.NOT_REPRODUCED)])
def test_a_data_to_text_claim_is_judged_on_slot_accuracy(tmp_path: Path, prefix, outcome) -> None:
    rng = np.random.default_rng(0)
    write_runs(tmp_path, "full", [0.80, 0.81, 0.79], 0.80, rng)
    write_runs(tmp_path, "prefix", [prefix, prefix + 0.01, prefix - 0.01], prefix, rng)
    verdict = protocol.judge(BY_ID["prefix.matches_full"], root=tmp_path, sweeps=swept)
    assert verdict.outcome == outcome, verdict.reason
    assert verdict.interval.examples == 300


def test_a_run_is_recorded_with_its_outputs_and_the_sweep_cell_is_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(d2t.RECIPE, "n_train", 16)
    monkeypatch.setitem(d2t.EPOCHS, "prompt", 1)
    record = d2t.run(d2t.RunSpec("prompt", 0, 1, lr=0.3), progress=False)
    for split in ("validation", "test"):
        assert len(record[split]["outputs"]) == len(record[split]["scores"]) == 200
    assert record["stored"] == d2t.RECIPE["num_virtual_tokens"] * 4 * 2 * 128  # P x L x (key, value) x d
    path = records.save_run(record, tmp_path)
    assert path == records.sweep_path(d2t.TASK, "prompt", 1, 0.3, tmp_path)
    reused = records.reused_run(d2t.TASK, d2t.RunSpec("prompt", 0, 1), 0.3, tmp_path)
    assert reused is not None and reused["sweep"] is False and reused["validation"] == record["validation"]
    assert records.reused_run(d2t.TASK, d2t.RunSpec("prompt", 0, 1), 0.1, tmp_path) is None


def test_model_selection_keeps_the_trainable_tensors_of_the_lowest_validation_loss(monkeypatch) -> None:
    import torch

    import minitransformer.data_to_text as mdt

    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)  # frozen: never copied
    losses = iter([3.0, 1.0, 2.0])
    monkeypatch.setattr(mdt, "evaluate_lm_loss", lambda m, loader: next(losses))
    eval_fn, kept = d2t._best_epoch_keeper(None)
    for value in (1.0, 2.0, 3.0):  # epoch 1, 2, 3: the weight after each
        with torch.no_grad():
            model.weight.fill_(value)
        eval_fn(model)
    assert kept["epoch"] == 2 and kept["loss"] == 1.0 and set(kept["state"]) == {"weight"}
    assert torch.equal(kept["state"]["weight"], torch.full((1, 2), 2.0))  # a copy, not the live tensor


def test_every_variant_trains_a_main_method_and_an_unknown_one_is_named() -> None:
    for name, setting in d2t.VARIANTS.items():
        assert setting.base in d2t.EPOCHS and name in d2t.SECONDS_PER_EPOCH and name in d2t.known_methods()
    assert d2t.variant("full") == d2t.Variant("full")
    with pytest.raises(ValueError, match="Unknown data_to_text method 'prefx_low'"):
        d2t.variant("prefx_low")


def test_every_committed_data_to_text_run_used_its_methods_setting() -> None:
    """A record trained what its method names: the variant's backbone, data and model selection."""
    found = sorted((records.RESULTS_DIR / d2t.TASK).rglob("*.json"))
    assert found, "no data-to-text protocol run is committed"
    for path in found:
        run = records.load_run_file(path)
        setting = d2t.variant(run["method"])
        assert (run["backbone"], run["n_train"]) == (setting.backbone, setting.n_train), path
        assert run.get("selection", "last epoch").startswith("best") == setting.select_best, path
        assert run["num_virtual_tokens"] == setting.num_virtual_tokens, path


def test_the_scale_table_gives_each_backbones_ratio_and_says_what_is_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_runs(tmp_path, "full_d16", [0.80, 0.81, 0.79], 0.80, rng)
    write_runs(tmp_path, "prefix_d16", [0.40, 0.41, 0.39], 0.60, rng)  # twice the budget gains 0.2: still learning
    table = scores.scale_table(root=tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| gpt_d16 |"))
    ratio = float(row.split("|")[5].split()[0])
    assert ratio == pytest.approx(0.40 / 0.80, abs=0.01) and row.rstrip().endswith("| yes, STILL LEARNING |")
    assert "| gpt_d32 | | not run: full_d32 and prefix_d32 |" in table


def test_the_length_table_gives_each_lengths_difference_from_the_main_prefix(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    write_runs(tmp_path, "prefix", [0.50, 0.51, 0.49], 0.50, rng)
    write_runs(tmp_path, "prefix_p1", [0.30, 0.31, 0.29], 0.50, rng)  # twice the budget gains 0.2: still learning
    table = scores.length_table(root=tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    difference = float(row.split("|")[4].split()[0])
    assert difference == pytest.approx(0.30 - 0.50, abs=0.01) and row.rstrip().endswith("| STILL LEARNING |")
    assert next(line for line in table.splitlines() if line.startswith("| 10 |")).rstrip().endswith("| — | yes |")
    assert "| 20 | | not run: prefix_p20 | | |" in table


def test_a_claim_whose_methods_all_score_like_one_fixed_text_is_not_judged(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(d2t, "fixed_text_accuracy", lambda n_train, split="validation": 0.5)
    rng = np.random.default_rng(2)
    write_runs(tmp_path, "full_low", [0.30, 0.31, 0.29], 0.30, rng)
    write_runs(tmp_path, "prefix_low", [0.20, 0.21, 0.19], 0.20, rng)  # far below full_low, but neither read the MR
    verdict = protocol.judge(BY_ID["prefix.low_data_better"], root=tmp_path, sweeps=swept)
    assert verdict.outcome == protocol.NOT_LEARNED, verdict.reason
    assert "full_low" in verdict.reason and "one fixed text's 0.500" in verdict.reason
    write_runs(tmp_path, "full", [0.80, 0.81, 0.79], 0.80, rng)  # one method above the bar: the claim is judged
    write_runs(tmp_path, "prefix", [0.20, 0.21, 0.19], 0.20, rng)
    verdict = protocol.judge(BY_ID["prefix.matches_full"], root=tmp_path, sweeps=swept)
    assert verdict.outcome == protocol.NOT_REPRODUCED, verdict.reason


def test_one_fixed_text_is_chosen_on_training_mrs_and_ignores_the_mr(task) -> None:
    made = scores.baselines(task.validation[:5], task.train)["one fixed text"]
    assert len(set(made)) == 1 and made[0] in [ex["references"][0] for ex in task.train[:scores.FIXED_CANDIDATES]]
    fit = [ex["record"] for ex in task.train[:scores.FIXED_FIT]]
    realised = [sum(len(r) - len(slot_errors(r, ex["references"][0])) for r in fit)
                for ex in task.train[:scores.FIXED_CANDIDATES]]
    assert sum(len(r) - len(slot_errors(r, made[0])) for r in fit) == max(realised)
