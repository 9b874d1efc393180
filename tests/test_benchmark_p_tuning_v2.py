"""The committed P-tuning v2 benchmark (issue 12): complete, consistent with the recipe, reproducible.

`benchmarks/ner_lr_sweep.json`, `ner.json` and `p_tuning_v2_extra.json` are written by
`python -m experiments.benchmark ner-sweep | ner | ptv2-extra`; chapter 9 loads them.
"""

import pytest
import torch

from minitransformer import recipes
from experiments.benchmark import (NER_METHODS, NER_PLAN, NER_SWEEP_GRID, PTV2_EXTRA_PLAN, RESULTS_DIR, _ner_recipe, load_results,
                                       ptv2_summary, ptv2_table, run_ptv2_cell)


@pytest.fixture(scope="module")
def ner():
    return load_results("ner")


def test_the_sweep_covers_its_grid_and_the_recipe_uses_its_best():
    sweep = load_results("ner_lr_sweep")
    assert sweep["recipe"] | {"learning_rates": None} == _ner_recipe() | {"learning_rates": None}, \
        "the NER recipe changed since the sweep ran: rerun `python -m experiments.benchmark ner-sweep`"
    assert [(r["method"], r["lr"]) for r in sweep["runs"]] == [(m, lr) for m, lrs in NER_SWEEP_GRID.items() for lr in lrs]
    for method in NER_SWEEP_GRID:
        best = max((r for r in sweep["runs"] if r["method"] == method), key=lambda r: r["validation"])
        assert recipes.NER_LEARNING_RATES[method] == best["lr"], f"NER_LEARNING_RATES[{method!r}] is not the sweep's best"
    assert all(len(lrs) >= 3 for m, lrs in NER_SWEEP_GRID.items() if m in ("full", "p_tuning_v2"))


def test_ner_has_every_planned_cell_on_the_current_recipe(ner):
    assert ner["recipe"] == _ner_recipe(), "the NER recipe changed: rerun `python -m experiments.benchmark ner`"
    planned = [(b, m, s) for b, methods, seeds in NER_PLAN for m in methods for s in seeds]
    assert [(r["backbone"], r["method"], r["seed"]) for r in ner["runs"]] == planned
    for run in ner["runs"]:
        assert run["lr"] == recipes.NER_LEARNING_RATES[run["method"]]
        assert len(run["curve"]) == recipes.NER_EPOCHS and run["validation"] == run["curve"][-1]
        assert 0.0 <= run["test"] <= 1.0 and run["trainable"] <= run["total"]


def test_extra_runs_cover_the_plan():
    if not (RESULTS_DIR / "p_tuning_v2_extra.json").exists():
        pytest.skip("prompt-length runs not committed yet: run `python -m experiments.benchmark ptv2-extra`")
    extra = load_results("p_tuning_v2_extra")
    planned = {(task, method, n) for task, method, lengths in PTV2_EXTRA_PLAN for n in lengths}
    assert {(r["task"], r["method"], r["num_virtual_tokens"]) for r in extra["runs"]} == planned
    assert all(r["method"] in NER_METHODS for r in extra["runs"])


def test_summary_and_table_are_computed_from_the_runs(ner):
    summary = ptv2_summary(ner["runs"])
    table = ptv2_table(ner, "title")
    for key, s in summary.items():
        task, backbone, method, length = key.split("/")
        scores = [r["validation"] for r in ner["runs"] if (r["backbone"], r["method"]) == (backbone, method)]
        assert s["mean"] == pytest.approx(sum(scores) / len(scores))
        assert f"{s['mean']:.3f} ± {s['sd']:.3f}" in table


def test_full_fine_tuning_ranks_above_frozen_and_below_perfect(ner):
    """The calibration issue 12 asks for: full FT between 0.85 and 0.97 test F1 (BERT), frozen + head clearly below."""
    test = ptv2_summary(ner["runs"], "test")
    full, frozen = test[f"ner/bert/full/None"]["mean"], test[f"ner/bert/frozen/None"]["mean"]
    assert 0.85 <= full <= 0.97, f"full fine-tuning test F1 {full:.3f}"
    assert frozen <= full - 0.10, f"frozen + head {frozen:.3f} is not clearly below full fine-tuning {full:.3f}"


def test_one_cell_reproduces_the_committed_number(ner):
    """Re-run P-tuning v2, BERT, seed 0 (about 40 s): the committed results must be this code's results."""
    torch.set_num_threads(ner["threads"])
    committed = next(r for r in ner["runs"] if (r["backbone"], r["method"], r["seed"]) == ("bert", "p_tuning_v2", 0))
    rerun = run_ptv2_cell("ner", "bert", "p_tuning_v2", 0, progress=False)
    # Bit-identical on the machine that wrote the file; another CPU's kernels may round differently.
    assert rerun["validation"] == pytest.approx(committed["validation"], abs=0.02)
    assert rerun["trainable"] == committed["trainable"]


@pytest.mark.parametrize("backbone", ["bert", "gpt"])
def test_ner_setup_encodes_one_label_per_first_subword(backbone):
    setup = recipes.ner_setup(backbone)
    assert len(setup.train_loader.dataset) == recipes.NER_N_TRAIN and setup.labels[0] == "O"
    batch = next(iter(setup.train_loader))
    assert batch["labels"].shape == batch["input_ids"].shape
    assert ((batch["labels"] != -100) <= batch["attention_mask"].bool()).all()  # labels only on real tokens
    tagger = recipes.fresh_tagger(setup)
    assert tagger.num_labels == len(setup.labels) and tagger.backbone.config.mode == backbone
