"""The committed benchmark: complete, reproducible by its own command, and calibrated.

`benchmarks/sentiment.json` is written by `python -m experiments.benchmark sentiment`. The
lessons and README load it, so these tests check that it still describes this code: one
(method, seed) cell is re-run and must give the committed number, and the calibration targets
of the course (issue 7) are checked on the mean of the three seeds.
"""

import json

import pytest
import torch

from experiments import benchmark
from minitransformer import recipes
from experiments.benchmark import ABLATIONS, METHODS, load_results, markdown_table, run_epochs, run_one, summarise
from minitransformer.training import still_rising


@pytest.fixture(scope="module")
def results():
    return load_results("sentiment")


def test_every_method_has_three_seeds_on_the_current_recipe(results):
    seeds = {(r["method"], r["seed"]) for r in results["runs"]}
    assert seeds == {(m, s) for m in METHODS for s in (0, 1, 2)}
    recipe = results["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["warmup_ratio"], recipe["schedule"], recipe.get("dropout")) == (
        recipes.EPOCHS, recipes.BATCH_SIZE, recipes.WARMUP_RATIO, recipes.SCHEDULE, recipes.DROPOUT), \
        "the recipe changed since the benchmark ran: rerun `python -m experiments.benchmark sentiment`"
    assert recipe["learning_rates"] == recipes.LEARNING_RATES
    for run in results["runs"]:
        if run["method"] != "frozen":
            assert run_epochs(run) == recipes.epochs_for(run["method"]), \
                f"{run['method']} seed {run['seed']} ran another budget than recipes.epochs_for: rerun it"


def test_ablations_train_at_their_familys_budget():
    for run in load_results("ablations")["runs"]:
        family = ABLATIONS[run["method"]].lr_key
        assert run_epochs(run) == recipes.epochs_for(family), f"{run['method']}: rerun the ablation at its budget"


def test_ablations_cover_every_variant():
    ablations = load_results("ablations")
    assert [r["method"] for r in ablations["runs"]] == list(ABLATIONS)


def test_learning_rates_are_the_protocol_sweeps_choice():
    """The recipe's rates are the protocol sweep's choice at each method's budget: the best validation accuracy,
    near-ties broken by validation loss, strictly inside a grid of at least 3 rates."""
    from experiments.sweeps import sentiment_sweep_check

    for method in ("full", "lora", "bitfit", "adapters"):
        check = sentiment_sweep_check(method, recipes.epochs_for(method), recipes.LEARNING_RATES[method])
        assert len(check.grid) >= 3, f"the sweep must try at least 3 learning rates for {method} at its budget"
        assert check.losses is not None, f"{method}: the sweep has no validation losses: re-run it under the protocol"
        assert check.swept, check.text()


def test_summary_and_table_are_computed_from_the_runs(results):
    summary = summarise(results["runs"])
    for method, s in summary.items():
        scores = [r["validation"] for r in results["runs"] if r["method"] == method]
        assert s["mean"] == pytest.approx(sum(scores) / len(scores))
    table = markdown_table(results)
    for s in summary.values():
        assert f"{s['mean']:.3f} ± {s['sd']:.3f}" in table


# Every committed table next to the JSON it was printed from, with the function that prints it. The two
# lr_sweep_* evidence files keep the preamble of the commit that wrote them, so they are not regenerated.
COMMITTED_TABLES = {"sentiment": "markdown_table", "ablations": "ablation_table", "lr_sweep": "sweep_table",
                    "prompt_tuning": "prompt_tuning_table", "prompt_tuning_sweep": "prompt_tuning_sweep_table",
                    "p_tuning": "p_tuning_table",
                    "p_tuning_lr_sweep_bert": "p_tuning_sweep_table", "ner_lr_sweep": "ner_sweep_table"}


@pytest.mark.parametrize("name", COMMITTED_TABLES)
def test_committed_markdown_is_what_the_code_prints_from_the_json(name):
    printed = getattr(benchmark, COMMITTED_TABLES[name])(json.loads((benchmark.RESULTS_DIR / f"{name}.json").read_text()))
    assert printed == (benchmark.RESULTS_DIR / f"{name}.md").read_text(), (
        f"benchmarks/{name}.md is stale: rewrite it from {name}.json with the command that writes both")


def test_one_cell_reproduces_the_committed_number(results):
    """Re-run LoRA, seed 0 (about a minute): the committed results must be this code's results."""
    torch.set_num_threads(results["threads"])
    committed = next(r for r in results["runs"] if r["method"] == "lora" and r["seed"] == 0)
    rerun = run_one("lora", 0, progress=False)
    # Bit-identical on the machine that wrote the file; another CPU's kernels may round differently,
    # which can flip a few of the 500 predictions.
    assert rerun["validation"] == pytest.approx(committed["validation"], abs=0.02)
    assert rerun["trainable"] == committed["trainable"]


# ----------------------------------------------------------------------------- calibration (mean of 3 seeds)


def _mean(results, method):
    return summarise(results["runs"])[method]["mean"]


def _rising_seeds(results, method):
    return [r["seed"] for r in results["runs"] if r["method"] == method and still_rising(r["curve"])]


def test_no_method_stays_on_the_one_class_plateau(results):
    stuck = [f"{r['method']} seed {r['seed']}" for r in results["runs"] if r["on_plateau"]]
    assert not stuck, f"runs that never left the one-class plateau: {stuck}"


def test_the_reference_points_have_converged(results):
    """Full fine-tuning and the frozen probe are what every method is judged against: their runs must be done."""
    assert not _rising_seeds(results, "full"), "full fine-tuning's validation curve still rises: raise EPOCHS"


def test_the_longer_budgets_rest_on_evidence():
    """A method gets more than EPOCHS only if its 20-epoch sweep run (at the rate that sweep chose) still rose."""
    from experiments.protocol import previous_budget_test

    sweep = load_results("lr_sweep")["runs"]
    for method, epochs in recipes.METHOD_EPOCHS.items():
        short = [r for r in sweep if r["method"] == method and run_epochs(r) == recipes.EPOCHS]
        if not short:  # a protocol-judged method: at half its budget, the doubled-budget test must have failed
            first = previous_budget_test("sentiment", method, epochs)
            assert first is not None and not first.converged, \
                f"keep {method}'s {recipes.EPOCHS}-epoch sweep in lr_sweep.json, or its protocol runs at " \
                f"{epochs // 2} epochs and their doubled run: the evidence for {epochs} epochs"
            continue
        assert still_rising(max(short, key=lambda r: r["validation"])["curve"]), \
            f"{method}'s curve had flattened at {recipes.EPOCHS} epochs: drop it from METHOD_EPOCHS"


def test_frozen_probe_is_informative(results):
    """The frozen probe is a reference point, so it must have learned something; whether it is far below full
    fine-tuning is a claim of chapter 2, judged by the protocol (experiments/claims.py)."""
    assert _mean(results, "frozen") >= 0.60


def test_readme_findings_table_is_the_generated_one(results):
    from experiments.benchmark import README, readme_with_results

    text = README.read_text()
    assert readme_with_results(text, results) == text, \
        "README's findings table is out of date: run `python -m experiments.benchmark readme`"
