"""Chapter 7's committed P-tuning results: complete, consistent with this code, and reproducible.

`benchmarks/p_tuning.json` is written by `python -m experiments.benchmark p_tuning` (the lesson shows its
BERT rows; chapter 10 reads it), at the rates of the protocol's sweeps (`benchmarks/protocol/probe/`). These tests
check that every (backbone, configuration, seed) cell is there, that the summary and table are
computed from the runs, that the runs used the current checkpoints and learning rates, and they
re-run the cheapest piece (the hand-written prompts, deterministic) against the committed numbers.
"""

import pytest
import torch

from experiments.benchmark import (P_TUNING_CONFIGS, P_TUNING_SWEEP_GRID, load_results, p_tuning_discrete,
                                       p_tuning_summary, p_tuning_table)
from minitransformer.checkpoint import model_card


@pytest.fixture(scope="module")
def results():
    return load_results("p_tuning")


def test_every_cell_has_three_seeds_and_trained(results):
    backbones = sorted({r["backbone"] for r in results["runs"]})
    assert "gpt" in backbones, "the GPT rows are missing: run `python -m experiments.benchmark p_tuning`"
    cells = {(r["backbone"], r["config"], r["seed"]) for r in results["runs"]}
    assert cells == {(b, c, s) for b in backbones for c in P_TUNING_CONFIGS for s in (0, 1, 2)}
    assert set(results["discrete"]) >= set(backbones)
    for run in results["runs"]:
        if run["backbone"] == "gpt":  # the chapter's verdicts rest on these: every GPT run must have trained
            assert not run["on_plateau"], f"gpt/{run['config']} seed {run['seed']} did not train"
            assert run["train_accuracy"] > run["majority"]
        assert len(run["curve"]) > 1 and set(run["per_relation"]) == set(results["discrete"][run["backbone"]]["prompts"])


def test_a_backbone_on_the_plateau_has_its_own_sweep_as_evidence(results):
    """The lesson gives no verdict for a backbone whose runs stayed on the plateau; its own learning-rate sweep
    (`p_tuning_sweep --backbones NAME`) must show that no rate of the grid trains it, rather than one rate untried."""
    for backbone in sorted({r["backbone"] for r in results["runs"] if r["on_plateau"]}):
        assert backbone != "gpt"
        sweep = load_results(f"p_tuning_lr_sweep_{backbone}")
        assert {(r["config"], r["lr"]) for r in sweep["runs"]} == \
            {(c, lr) for c, grid in P_TUNING_SWEEP_GRID.items() for lr in grid}
        assert all(r["on_plateau"] for r in sweep["runs"])


def test_runs_used_the_shipped_checkpoints_and_the_swept_learning_rates(results):
    from solutions.p_tuning import P_TUNING_LR

    for backbone in {r["backbone"] for r in results["runs"]}:
        assert results["checkpoints"][backbone] == model_card(backbone)["sha256"], \
            f"the {backbone} checkpoint changed since the benchmark ran: rerun it with --backbones {backbone}"
    for run in results["runs"]:
        assert run["lr"] == P_TUNING_LR[P_TUNING_CONFIGS[run["config"]][0]]
    from experiments import probe

    for kind, method in (("LSTM", "p_tuning"), ("NONE", "p_tuning_none")):  # the protocol's sweeps at 20 epochs
        check = probe.sweep_check(method, probe.epochs_of(method), P_TUNING_LR[kind])
        assert len(check.grid) >= 3 and check.swept, f"P_TUNING_LR[{kind!r}] is not its sweep's choice: {check.text()}"


def test_summary_and_table_are_computed_from_the_runs(results):
    summary = p_tuning_summary(results["runs"])
    assert summary == results["summary"]
    table = p_tuning_table(results)
    for cell in summary.values():
        assert f"{cell['mean']:.3f} ± {cell['sd']:.3f}" in table


def test_hand_written_prompts_reproduce(results):
    """Zero-shot, deterministic, about half a minute: the committed discrete-prompt scores are this code's."""
    torch.set_num_threads(results["threads"])
    for backbone, committed in results["discrete"].items():
        assert p_tuning_discrete(backbone) == committed
        assert committed["task_wording_test"] == model_card(backbone)["probe_accuracy_test"]
