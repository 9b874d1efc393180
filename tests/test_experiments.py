"""The verdict protocol (issue 22): the statistics rule, the four outcomes, convergence that can fail.

Everything here runs on synthetic run records in a temporary folder: no training.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import claims, protocol, records, sweeps
from experiments.claims import Claim
from experiments.stats import Interval, paired_interval, t_quantile_95

REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the statistics rule
def bernoulli_seeds(p_per_seed, n, rng) -> list[np.ndarray]:
    return [(rng.random(n) < p).astype(float) for p in p_per_seed]


def test_the_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    # Each simulated benchmark: 3 seeds whose skills spread around 0.85, scored on a fresh evaluation set
    # of 300 examples of varied difficulty (shared by the seeds, as the validation set is). The interval
    # must cover the population accuracy in about 95% of the benchmarks. Here neither source of noise is
    # negligible: either half-width alone covers too rarely, so forgetting one of them fails this test.
    rng = np.random.default_rng(0)

    def accuracy(p: float, difficulty: np.ndarray) -> np.ndarray:  # P(correct) of a model of skill p per example
        return 1 / (1 + np.exp(-(np.log(p / (1 - p)) + difficulty)))

    truth, trials = 0.85, 300
    population = float(np.mean(accuracy(truth, rng.normal(0, 3.0, 200_000))))  # over all examples the world makes
    covered = {"both": 0, "seeds only": 0, "examples only": 0}
    for trial in range(trials):
        seed_skills = truth + rng.normal(0, 0.03, size=3)
        difficulty = rng.normal(0, 3.0, size=300)  # one evaluation set per benchmark, shared by the seeds
        runs = [(rng.random(300) < accuracy(p, difficulty)).astype(float) for p in seed_skills]
        interval = paired_interval(runs, statistic="value", replicates=400, seed=trial)
        error = abs(interval.estimate - population)
        covered["both"] += interval.low <= population <= interval.high
        covered["seeds only"] += error <= interval.seed_half_width
        covered["examples only"] += error <= interval.sample_half_width
    coverage = {k: v / trials for k, v in covered.items()}
    assert 0.90 <= coverage["both"] <= 0.995, coverage
    assert coverage["seeds only"] < 0.90 and coverage["examples only"] < 0.90, coverage


def test_pairing_over_examples_narrows_a_comparison_of_correlated_methods() -> None:
    rng = np.random.default_rng(1)
    base = bernoulli_seeds([0.9, 0.9, 0.9], 500, rng)
    flipped = []  # b agrees with a except on a few examples
    for run in base:
        b = run.copy()
        b[rng.choice(500, 10, replace=False)] = 1 - b[rng.choice(500, 10, replace=False)]
        flipped.append(b)
    paired = paired_interval(base, flipped, statistic="difference")
    shuffled = [rng.permutation(b) for b in flipped]  # same accuracies, pairing destroyed
    unpaired = paired_interval(base, shuffled, statistic="difference")
    assert paired.sample_half_width < 0.5 * unpaired.sample_half_width


def test_identical_methods_give_ratio_one_and_no_sample_noise() -> None:
    rng = np.random.default_rng(2)
    a = bernoulli_seeds([0.8, 0.85, 0.9], 200, rng)
    interval = paired_interval(a, a, statistic="ratio")
    assert interval.estimate == pytest.approx(1.0) and interval.sample_half_width == pytest.approx(0.0)
    assert interval.seeds == 3 and interval.examples == 200


def test_seed_spread_uses_students_t() -> None:
    a = [np.ones(100) * v for v in (1.0, 1.0, 0.0)]  # per-seed values 1, 1, 0: sd 0.577
    interval = paired_interval(a, statistic="value", replicates=200)
    assert interval.seed_half_width == pytest.approx(t_quantile_95(2) * np.std([1, 1, 0], ddof=1) / np.sqrt(3))
    assert t_quantile_95(2) == pytest.approx(4.303) and t_quantile_95(1000) == pytest.approx(1.96, abs=1e-3)


@pytest.mark.parametrize("a, b, statistic, match", [
    ([[1, 0], [1, 1]], [[1, 0, 1], [1, 1, 0]], "ratio", "same seeds and evaluation examples"),
    ([[1, 0]], None, "ratio", "pass b"),
    ([[1, 0]], None, "median", "Unknown statistic"),
    ([], None, "value", "one vector of per-example scores per seed"),
])
def test_bad_input_gets_one_clear_error(a, b, statistic, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_interval(a, b, statistic=statistic)


# --------------------------------------------------------------------------- records
def record(method: str, seed: int, epochs: int, correct: list[int], examples: str = "set-a") -> dict:
    text = "".join(map(str, correct))
    return {"schema": records.SCHEMA, "task": "sentiment", "method": method, "seed": seed, "epochs": epochs,
            "validation": {"accuracy": text.count("1") / len(text), "loss": 0.3, "correct": text, "examples": examples}}


def test_a_record_is_checked_and_written_atomically(tmp_path: Path) -> None:
    path = records.save_run(record("lora", 0, 20, [1, 0, 1, 1]), tmp_path)
    assert path == tmp_path / "sentiment" / "lora" / "20ep_seed0.json"
    assert records.load_run("sentiment", "lora", 20, 0, tmp_path)["validation"]["accuracy"] == 0.75
    assert not list(tmp_path.rglob("*.tmp"))
    bad = record("lora", 1, 20, [1, 0])
    bad["validation"]["accuracy"] = 0.9
    with pytest.raises(records.RecordError, match="does not match"):
        records.save_run(bad, tmp_path)
    bad = record("lora", 1, 20, [1, 0])
    bad["validation"]["correct"] = "1x"
    with pytest.raises(records.RecordError, match="string of 0s and 1s"):
        records.save_run(bad, tmp_path)
    (tmp_path / "sentiment" / "lora" / "20ep_seed2.json").write_text("{")
    with pytest.raises(records.RecordError, match="delete it and run the benchmark again"):
        records.load_run("sentiment", "lora", 20, 2, tmp_path)


# --------------------------------------------------------------------------- the four outcomes
def swept(method: str, epochs: int, lr) -> sweeps.SweepCheck:
    """A sweep at the final budget whose best rate, inside its grid, is the one the runs use."""
    return sweeps.SweepCheck(method, epochs, 0.003, (0.001, 0.003, 0.01), 0.003, (0.80, 0.92, 0.85))


def judge(claim, root, **kwargs):
    return protocol.judge(claim, root=root, sweeps=kwargs.pop("sweeps", swept), **kwargs)


CLAIM = Claim("demo.lora_matches_full", 3, "LoRA matches full fine-tuning", "demo", "1.0", "sentiment",
              "lora", "full", "ratio", ">=", 0.97)
N = 500


def accuracy_vector(acc: float, rng: np.random.Generator, shared: np.ndarray | None = None) -> list[int]:
    """N examples with exactly round(acc * N) correct, mostly the same examples as ``shared``."""
    k = round(acc * N)
    order = np.argsort(shared + rng.random(N) * 0.05) if shared is not None else rng.permutation(N)
    correct = np.zeros(N, int)
    correct[order[N - k:]] = 1
    return correct.tolist()


def write_benchmark(root: Path, lora: tuple[float, ...], full: tuple[float, ...], doubled: dict[str, float],
                    seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    hardness = rng.random(N)  # examples both methods find easy or hard
    for method, accs in (("lora", lora), ("full", full)):
        epochs = protocol_epochs(method)
        for s, acc in enumerate(accs):
            records.save_run(record(method, s, epochs, accuracy_vector(acc, rng, hardness)), root)
        if method in doubled:
            records.save_run(record(method, 0, 2 * epochs, accuracy_vector(doubled[method], rng, hardness)), root)


def protocol_epochs(method: str) -> int:
    return CLAIM.epochs(method)


def test_reproduced(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.REPRODUCED, verdict.reason
    assert verdict.interval.low > 0.97 and all(c.converged for c in verdict.convergence)


def test_not_reproduced(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.80, 0.81, 0.80), (0.92, 0.925, 0.93), {"lora": 0.80, "full": 0.92})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_REPRODUCED and verdict.interval.high < 0.97


def test_within_noise(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.88, 0.92, 0.90), (0.92, 0.925, 0.93), {"lora": 0.89, "full": 0.92})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.WITHIN_NOISE
    assert verdict.interval.low < 0.97 < verdict.interval.high


def test_a_doubled_budget_that_still_helps_means_not_converged_never_not_reproduced(tmp_path: Path) -> None:
    # LoRA is far below full FT at its budget, but twice the budget helps by far more than the noise:
    # the run was still learning, so the claim cannot be called "not reproduced".
    write_benchmark(tmp_path, (0.80, 0.81, 0.80), (0.92, 0.925, 0.93), {"lora": 0.90, "full": 0.92})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_CONVERGED, verdict.reason
    (lora,) = [c for c in verdict.convergence if c.method == "lora"]
    assert not lora.converged and lora.gain == pytest.approx(0.10) and "STILL LEARNING" in verdict.reason


def test_a_run_on_the_one_class_plateau_is_not_converged(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    path = records.run_path("sentiment", "lora", 20, 2, tmp_path)
    data = json.loads(path.read_text())
    data["on_plateau"] = True
    path.write_text(json.dumps(data))
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_CONVERGED and "one-class plateau: lora seed 2" in verdict.reason


@pytest.mark.parametrize("check, why", [
    (sweeps.SweepCheck("lora", 20, 0.003, (), None, ()), "not swept at 20 epochs"),
    (sweeps.SweepCheck("lora", 20, 0.01, (0.001, 0.003, 0.01), 0.01, (0.8, 0.85, 0.92)), "AT THE EDGE of"),
    (sweeps.SweepCheck("lora", 20, 0.001, (0.001, 0.003, 0.01), 0.003, (0.8, 0.92, 0.85)), "the runs use 0.001"),
])
def test_a_rate_not_swept_at_the_final_budget_gives_no_definite_verdict(tmp_path: Path, check, why) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    verdict = judge(CLAIM, tmp_path, sweeps=lambda m, e, lr: check if m == "lora" else swept(m, e, lr))
    assert verdict.outcome == protocol.NOT_CONVERGED and why in verdict.reason, verdict.reason


def test_near_ties_in_a_sweep_are_reported() -> None:
    check = sweeps.SweepCheck("lora", 20, 0.003, (0.001, 0.003, 0.01), 0.003, (0.90, 0.912, 0.85))
    assert check.swept and check.near_ties == [0.001] and "within noise of it: 0.001" in check.text()


def test_no_doubled_run_means_not_converged(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"full": 0.925})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_CONVERGED and "no run at 2x 20 epochs" in verdict.reason


def test_seeds_without_seed_0_are_not_converged_and_say_why(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    records.run_path("sentiment", "lora", 20, 0, tmp_path).unlink()  # seeds 1 and 2 and the doubled run remain
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_CONVERGED and "lora: no run of seed 0 at 20 epochs yet" in verdict.reason


def test_one_seed_is_shown_not_judged(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.80,), (0.92,), {"lora": 0.80, "full": 0.92})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.SINGLE_SEED and verdict.interval is None
    assert verdict.point == pytest.approx(0.80 / 0.92)


def test_fewer_than_three_seeds_get_no_definite_verdict(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93), (0.92, 0.925), {"lora": 0.92, "full": 0.925})
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.WITHIN_NOISE and "a verdict needs 3" in verdict.reason


def test_seeds_at_different_rates_give_no_verdict(tmp_path: Path) -> None:
    """A seed left over from the rate a sweep chose before: the seeds no longer measure one recipe."""
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    for seed in (0, 1, 2):
        other = records.run_path("sentiment", "lora", 20, seed, tmp_path)
        other.write_text(json.dumps({**json.loads(other.read_text()), "lr": 0.03 if seed == 2 else 0.01}))
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_RUN and "runs at different learning rates" in verdict.reason, verdict.reason
    assert "seed 1 at lr 0.01" in verdict.reason and "seed 2 at lr 0.03" in verdict.reason


def test_no_runs_is_no_verdict(tmp_path: Path) -> None:
    verdict = judge(CLAIM, tmp_path)
    assert verdict.outcome == protocol.NOT_RUN and "python -m experiments run sentiment" in verdict.reason


def test_runs_scored_on_different_sets_are_refused(tmp_path: Path) -> None:
    write_benchmark(tmp_path, (0.92, 0.93, 0.92), (0.92, 0.925, 0.93), {"lora": 0.92, "full": 0.925})
    path = records.run_path("sentiment", "full", 20, 1, tmp_path)
    data = json.loads(path.read_text())
    data["validation"]["examples"] = "set-b"
    path.write_text(json.dumps(data))
    with pytest.raises(records.RecordError, match="different validation sets"):
        judge(CLAIM, tmp_path)


@pytest.mark.parametrize("comparison, low, high, outcome", [
    (">=", 0.98, 1.01, protocol.REPRODUCED), (">=", 0.90, 0.95, protocol.NOT_REPRODUCED),
    (">=", 0.96, 0.99, protocol.WITHIN_NOISE), ("<=", 0.60, 0.70, protocol.REPRODUCED),
    ("<=", 0.95, 0.99, protocol.NOT_REPRODUCED), ("<=", 0.85, 0.95, protocol.WITHIN_NOISE),
])
def test_the_interval_must_lie_wholly_on_one_side(comparison, low, high, outcome) -> None:
    threshold = 0.97 if comparison == ">=" else 0.90
    interval = Interval((low + high) / 2, low, high, 0.0, 0.0, 3, 500)
    assert protocol.decide(interval, comparison, threshold) == outcome


# --------------------------------------------------------------------------- the registry and its command
def test_every_claim_is_well_formed() -> None:
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    for c in claims.CLAIMS:
        assert c.comparison in (">=", "<=") and c.statistic in ("ratio", "difference", "value", "ratio_gain")
        assert (c.reference is None) == (c.statistic == "value")
        assert (c.versus is not None) == (c.statistic == "ratio_gain")
        assert c.paper and c.paper_value and c.statement
    # one yardstick: every "matches / competitive with / is enough" ratio claim uses the same threshold
    assert {c.threshold for c in claims.CLAIMS if c.statistic == "ratio" and c.comparison == ">="
            and c.reference != "frozen"} == {claims.MATCHES_FULL}


@pytest.mark.parametrize("task", ["sentiment", "probe", "data_to_text", "ner"])
def test_the_runner_plans_every_run_the_claims_read_once_their_rates_are_swept(task) -> None:
    from experiments.tasks import task_module

    module = task_module(task)
    specs = module.plan()
    ready, waiting = module.runnable(module.claimed_methods())
    for c in claims.CLAIMS:
        if c.task != task:
            continue
        for m in c.methods:
            if m not in ready:
                assert any(w.startswith(f"{m}: ") and f"experiments sweep {task} --methods {m}" in w for w in waiting)
                continue
            assert {s.seed for s in specs if s.method == m and s.budget == 1} == {0, 1, 2}
            assert any(s.method == m and s.budget == 2 for s in specs) == (not c.exact(m)), m
    with pytest.raises(ValueError, match=f"Unknown {task} method"):
        module.epochs_of("lora_r99")


def test_the_sentiment_runner_uses_the_recipes_rates() -> None:
    from experiments import sentiment
    from minitransformer import recipes

    for m in sentiment.MAIN_METHODS:  # the main methods' swept rates are the recipe's
        assert sentiment.learning_rate(m) == recipes.LEARNING_RATES.get(m)
    assert sentiment.epochs_of("lora_r4") == sentiment.epochs_of("lora") and sentiment.epochs_of("frozen") == 0


def test_the_verdicts_command_prints_every_claim() -> None:
    out = subprocess.run([sys.executable, "-m", "experiments", "verdicts", "--json"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    verdicts = json.loads(out.stdout)
    assert [v["id"] for v in verdicts] == [c.id for c in claims.CLAIMS]
    assert all(v["outcome"] in (*protocol.OUTCOMES, protocol.NOT_RUN, protocol.SINGLE_SEED) for v in verdicts)
    bad = subprocess.run([sys.executable, "-m", "experiments", "verdicts", "--chapter", "99"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "No registered claim for chapter 99" in bad.stderr


def test_the_backbone_does_not_import_the_experiments() -> None:
    for path in (REPO_ROOT / "minitransformer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "experiments" for n in names), f"{path} imports experiments"


def test_readme_verdict_section_is_the_generated_one() -> None:
    from experiments.benchmark import README

    text = README.read_text()
    assert claims.readme_with_verdicts(text) == text, \
        "README's verdict table is out of date: run `python -m experiments.benchmark readme`"


# --------------------------------------------------------------------------- more tasks, sweeps on disk, four-run claims
def test_an_unknown_task_gets_one_clear_error() -> None:
    from experiments.tasks import task_module

    with pytest.raises(ValueError, match="Unknown protocol task 'pos_tagging'.*sentiment"):
        task_module("pos_tagging")


def test_ratio_gain_compares_two_ratios() -> None:
    rng = np.random.default_rng(3)
    big_method, big_ref = bernoulli_seeds([0.90] * 3, 800, rng), bernoulli_seeds([0.92] * 3, 800, rng)
    small_method, small_ref = bernoulli_seeds([0.55] * 3, 800, rng), bernoulli_seeds([0.80] * 3, 800, rng)
    gain = paired_interval(big_method, big_ref, statistic="ratio_gain", c=small_method, d=small_ref)
    expected = np.mean(big_method) / np.mean(big_ref) - np.mean(small_method) / np.mean(small_ref)
    assert gain.estimate == pytest.approx(expected) and gain.low > 0.2
    same = paired_interval(big_method, big_ref, statistic="ratio_gain", c=big_method, d=big_ref)
    assert same.estimate == 0 and same.sample_half_width == 0
    with pytest.raises(ValueError, match="pass c and d"):
        paired_interval(big_method, big_ref, statistic="ratio_gain")
    with pytest.raises(ValueError, match="same seeds and evaluation examples"):
        paired_interval(big_method, big_ref, statistic="ratio_gain", c=small_method[:2], d=small_ref[:2])


def test_a_scale_claim_reads_four_methods(tmp_path: Path) -> None:
    claim = Claim("demo.gap_closes", 6, "the gap closes", "demo", "parity at scale", "sentiment",
                  "lora", "full", "ratio_gain", ">=", 0.0, versus=("lora_r4", "lora_r16"))
    rng = np.random.default_rng(0)
    hardness = rng.random(N)
    for method, acc in (("lora", 0.9), ("full", 0.92), ("lora_r4", 0.6), ("lora_r16", 0.9)):
        epochs = claim.epochs(method)
        for s in range(3):
            records.save_run(record(method, s, epochs, accuracy_vector(acc, rng, hardness)), tmp_path)
        records.save_run(record(method, 0, 2 * epochs, accuracy_vector(acc, rng, hardness)), tmp_path)
    verdict = judge(claim, tmp_path)
    assert verdict.outcome == protocol.REPRODUCED, verdict.reason
    assert verdict.interval.estimate == pytest.approx(0.9 / 0.92 - 0.6 / 0.9, abs=0.01)
    assert [c.method for c in verdict.convergence] == ["lora", "full", "lora_r4", "lora_r16"]
    assert claim.rule == "lora ÷ full − lora_r4 ÷ lora_r16 >= 0"


def test_near_ties_are_broken_by_the_validation_loss() -> None:
    cells = [{"lr": 0.001, "validation": 0.90, "loss": 0.25, "examples": 500},
             {"lr": 0.003, "validation": 0.91, "loss": 0.30, "examples": 500},
             {"lr": 0.01, "validation": 0.70, "loss": 0.60, "examples": 500}]
    check = sweeps.check_from_records("lora", 20, 0.001, cells)
    assert check.best == 0.001 and check.near_ties == [0.003] and check.tie_broken_by_loss
    assert not check.inside and "AT THE EDGE" in check.text()  # the lowest rate won: widen the grid
    wide = sweeps.check_from_records("lora", 20, 0.001, [{"lr": 0.0003, "validation": 0.6, "loss": 0.5}, *cells])
    assert wide.inside and wide.swept and "lowest validation loss" in wide.text()
    no_loss = sweeps.check_from_records("lora", 20, None, [{k: v for k, v in c.items() if k != "loss"} for c in cells])
    assert no_loss.best == 0.003 and not no_loss.tie_broken_by_loss  # without losses: the top accuracy
    # A run that never left the one-class plateau did not train: it cannot win on its low loss.
    stuck = [{**c, "on_plateau": c["lr"] == 0.001} for c in cells] + [{"lr": 0.03, "validation": 0.5, "loss": 0.69}]
    assert sweeps.check_from_records("lora", 20, None, stuck).best == 0.003


def test_sweep_runs_and_trained_weights_are_kept_on_disk(tmp_path: Path) -> None:
    import torch

    for lr, correct in ((0.1, [1, 0, 0, 1]), (0.3, [1, 1, 1, 0])):
        r = record("prompt_tuning", 0, 60, correct)
        r.update(sweep=True, lr=lr, _weights={"soft_prompt.weight": torch.full((2, 3), lr)})
        path = records.save_run(r, tmp_path)
        assert path == tmp_path / "sentiment" / "prompt_tuning" / "sweep" / f"60ep_lr{lr:g}.json"
    found = records.load_sweep("sentiment", "prompt_tuning", 60, tmp_path)
    assert [r["lr"] for r in found] == [0.1, 0.3] and "_weights" not in found[0]
    weights = records.load_weights(records.sweep_path("sentiment", "prompt_tuning", 60, 0.3, tmp_path))
    assert torch.equal(weights["soft_prompt.weight"], torch.full((2, 3), 0.3))
    assert records.load_weights(tmp_path / "none.json") == {}
    check = sweeps.sentiment_sweep_check("prompt_tuning", 60, None, root=tmp_path)
    assert check.grid == (0.1, 0.3) and check.losses == (0.3, 0.3)


def test_the_sweep_command_refuses_what_it_cannot_sweep() -> None:
    from experiments import probe, sentiment

    assert [str(s) for s in sentiment.sweep_plan(["lora"], [0.001, 0.003])] == [
        "lora sweep, lr 0.001, 20 epochs", "lora sweep, lr 0.003, 20 epochs"]
    with pytest.raises(ValueError, match="fit exactly"):
        sentiment.sweep_plan(["frozen"], [0.1])
    with pytest.raises(ValueError, match="zero-shot"):
        probe.sweep_plan(["handwritten"], [0.1])
    assert probe.exact("handwritten") and not probe.exact("p_tuning")


def test_runs_of_the_same_reviews_through_another_template_are_paired() -> None:
    same = [{"validation": {"examples": "ids-a", "texts": "reviews"}}, {"validation": {"examples": "ids-b", "texts": "reviews"}}]
    assert protocol._same_examples(same, "validation")
    other = [same[0], {"validation": {"examples": "ids-a", "texts": "other reviews"}}]
    assert not protocol._same_examples(other, "validation")
    assert records.text_fingerprint([{"text": "a", "label": 1}]) != records.text_fingerprint([{"text": "a", "label": 0}])


def test_the_evidence_for_a_final_budget_is_the_half_budgets_failed_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    hardness = rng.random(N)
    for seed, acc in enumerate((0.78, 0.80, 0.79)):  # the first budget, 30 epochs at lr 0.3
        run = record("prompt_tuning", seed, 30, accuracy_vector(acc, rng, hardness))
        run["lr"] = 0.3
        records.save_run(run, tmp_path)
    assert protocol.previous_budget_test("sentiment", "prompt_tuning", 60, root=tmp_path) is None, \
        "without the same run at the final budget there is no evidence"
    twice = record("prompt_tuning", 0, 60, accuracy_vector(0.90, rng, hardness))
    twice.update(lr=0.3, sweep=True)  # the final budget's sweep cell at the first budget's rate
    records.save_run(twice, tmp_path)
    test = protocol.previous_budget_test("sentiment", "prompt_tuning", 60, root=tmp_path)
    assert (test.epochs, test.score, test.doubled) == (30, 0.78, 0.90)
    assert not test.converged and "STILL LEARNING" in test.text()


def test_protocol_experiments_state_the_measured_training_memory(tmp_path: Path) -> None:
    """A protocol run read as an Experiment gets its training state from its counts: the same bytes that
    measure.training_state_memory counted on the real tensors of the committed benchmark run."""
    from experiments.benchmark import committed_experiment
    from experiments.sentiment import protocol_experiments

    for method in ("full", "lora", "bitfit"):
        runs = protocol_experiments(method)
        assert set(runs) == {0, 1, 2}
        assert runs[0].memory == committed_experiment(method).memory, method
    with pytest.raises(KeyError, match="python -m experiments run sentiment --methods lora_r1"):
        protocol_experiments("lora_r1", root=tmp_path)  # a registered ablation without protocol runs there
    with pytest.raises(ValueError, match="Unknown sentiment method 'lora_r99'"):
        protocol_experiments("lora_r99")


def test_missing_runs_are_the_commands_that_make_them(tmp_path: Path) -> None:
    """Chapter 12's claim reads QLoRA and LoRA: with nothing on file, a sweep for each and one run command; with
    LoRA complete, QLoRA's sweep on LoRA's grid; a best rate at the grid's edge gives the runner's reason."""
    from experiments.claims import missing_runs

    assert missing_runs(12, root=tmp_path)[-1] == "python -m experiments run sentiment --methods qlora lora"
    epochs = CLAIM.epochs("lora")
    for lr, acc in ((1e-3, [1, 0, 1, 1]), (3e-3, [1, 1, 1, 1]), (1e-2, [1, 0, 0, 1])):
        records.save_run({**record("lora", 0, epochs, acc), "sweep": True, "lr": lr}, tmp_path)
    for seed in (0, 1, 2):
        records.save_run(record("lora", seed, epochs, [1, 1, 1, 0]), tmp_path)
    records.save_run(record("lora", 0, 2 * epochs, [1, 1, 1, 0]), tmp_path)
    assert missing_runs(12, root=tmp_path) == ["python -m experiments sweep sentiment --methods qlora --lrs 0.001 0.003 0.01",
                                               "python -m experiments run sentiment --methods qlora"]
    for lr, acc in ((1e-3, [1, 1, 1, 1]), (3e-3, [0, 0, 1, 1])):  # the best rate is the grid's lowest
        records.save_run({**record("qlora", 0, epochs, acc), "sweep": True, "lr": lr}, tmp_path)
    lines = missing_runs(12, root=tmp_path)
    assert lines[0].startswith("# qlora: best rate 0.001") and "AT THE EDGE" in lines[0] and "--lrs 0.0003" in lines[0]
    assert lines[1:] == ["python -m experiments run sentiment --methods qlora"]
