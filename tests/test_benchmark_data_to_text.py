"""The committed data-to-text benchmark (chapter 8): complete, consistent with the code, reproducible.

`benchmarks/data_to_text.json` and `.md` are written by `python -m experiments.benchmark data_to_text`;
the prefix-tuning lesson loads them. These tests check that they still describe this code: every
cell of the grid is there with the current recipe, the learning rates are the sweep's best, the
markdown is the one the code prints, and one cheap cell re-runs to the committed numbers.
"""

import pytest
import torch

from experiments import bench_data_to_text as bench


@pytest.fixture(scope="module")
def results():
    return bench.load_results()


def test_every_cell_is_there_on_the_current_recipe(results):
    assert results["recipe"] == bench.RECIPE, \
        "the recipe changed since the benchmark ran: rerun `python -m experiments.benchmark data_to_text`"
    assert results["sweep_grid"] == bench.SWEEP and results["low_data_grid"] == bench.LOW_DATA_SWEEP
    expected = bench.sweep_cells() + bench.cells_after_sweep(results["learning_rates"], results["low_data_learning_rates"])
    got = [(r["kind"], r["method"], r["seed"], r["lr"], r["num_virtual_tokens"]) for r in results["runs"]]
    assert got == expected


def test_learning_rates_are_the_best_of_the_sweep(results):
    assert results["learning_rates"] == bench.best_learning_rates(results["runs"])
    assert results["low_data_learning_rates"] == bench.best_learning_rates(results["runs"], "low_data_sweep")
    for method, grid in [*bench.SWEEP.items(), *bench.LOW_DATA_SWEEP.items()]:
        assert len(grid) >= 3, f"the sweep must try at least 3 learning rates for {method}"


def test_markdown_is_printed_from_the_runs(results):
    committed = (bench.RESULTS_DIR / f"{bench.NAME}.md").read_text()
    assert committed == bench.markdown_table(results), "rerun the benchmark: the markdown is out of date"


def test_runs_are_complete_records(results):
    for run in results["runs"]:
        assert len(run["curve"]) == run["epochs"] and len(run["losses"]) > 0
        assert 0 <= run["validation"]["slot_error_rate"] <= 1 and 0 <= run["validation"]["bleu"] <= 100
        assert ("test" in run) == (run["kind"] not in ("sweep", "low_data_sweep"))
        assert run["stored"] <= run["trainable"] or run["method"] == "prompt"  # a prompt exports to a bigger prefix
        if run["method"].startswith("prefix") or run["method"] == "prompt":
            assert run["stored"] == run["num_virtual_tokens"] * 4 * 2 * 128  # P * L * 2d


def test_one_cell_reproduces_the_committed_numbers(results):
    """Re-run the low-data prefix-tuning cell of seed 0 (about a minute)."""
    torch.set_num_threads(results["threads"])
    committed = next(r for r in results["runs"] if r["kind"] == "low_data" and r["method"] == "prefix" and r["seed"] == 0)
    rerun = bench.run_one("low_data", "prefix", 0, committed["lr"])
    assert (rerun["trainable"], rerun["stored"]) == (committed["trainable"], committed["stored"])
    # Bit-identical on the machine that wrote the file; another CPU's kernels may round differently and
    # change a few greedy tokens.
    assert rerun["validation"]["bleu"] == pytest.approx(committed["validation"]["bleu"], abs=2.0)
    assert rerun["curve"][-1] == pytest.approx(committed["curve"][-1], abs=0.02)
