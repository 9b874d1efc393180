"""The committed prompt-tuning results (chapter 6): complete, on the current recipe, and reproducible.

`benchmarks/prompt_tuning_sweep.json` and `benchmarks/prompt_tuning.json` (with their trained prompts) are
written by `python -m experiments.benchmark prompt_tuning_sweep` and `... prompt_tuning`. The lesson loads
them, so these tests check that they still describe this code and recipe.
"""

from contextlib import nullcontext

import pytest
import torch

from minitransformer import recipes
from experiments.benchmark import (PT_EPOCHS, PT_LADDER, PT_LR, PT_RUNS, PT_SWEEP, PT_VERBALIZER, _pt_recipe,
                                       load_prompts, load_results, prompt_tuning_sweep_table, pt_sweep_best, prompt_tuning_table,
                                       run_prompt_tuning)
from minitransformer.checkpoint import load_pretrained, model_card
from minitransformer.training import PlateauWarning


@pytest.fixture(scope="module")
def results():
    return load_results("prompt_tuning")


@pytest.fixture(scope="module")
def sweep():
    return load_results("prompt_tuning_sweep")


def test_every_run_is_committed_on_the_current_recipe(results):
    assert [r["name"] for r in results["runs"]] == list(PT_RUNS), \
        "the runs changed: rerun `python -m experiments.benchmark prompt_tuning`"
    assert results["recipe"] == _pt_recipe(), "the recipe changed since the benchmark ran: rerun it"
    for r in results["runs"]:
        spec = PT_RUNS[r["name"]]
        assert (r["backbone"], r["method"], r["num_virtual_tokens"], r["init"]) == (
            spec.backbone, spec.method, spec.num_virtual_tokens, spec.init)
        if r["method"] == "prompt_tuning":
            assert (r["lr"], r["epochs"]) == (spec.lr or PT_LR, spec.epochs or PT_EPOCHS)
            d = model_card(r["backbone"])["config"]["d_model"]
            assert r["trainable"] == r["num_virtual_tokens"] * d, "prompt tuning trains exactly P x d numbers"
        else:
            assert (r["lr"], r["epochs"]) == (recipes.LEARNING_RATES["full"], recipes.EPOCHS)
        assert len(r["curve"]) == r["epochs"]


def test_the_prompts_are_committed_with_their_runs(results, sweep):
    prompts = load_prompts("prompt_tuning")
    expected = {r["name"]: (r["num_virtual_tokens"], model_card(r["backbone"])["config"]["d_model"])
                for r in results["runs"] if r["method"] == "prompt_tuning"}
    assert {k: tuple(v.shape) for k, v in prompts.items()} == expected
    sweep_prompts = load_prompts("prompt_tuning_sweep")
    assert set(sweep_prompts) == {f"lr{lr:g}_ep{ep}" for lr, ep in PT_SWEEP}


def test_the_learning_rate_and_budget_are_the_best_of_the_sweep(sweep):
    assert [(r["lr"], r["epochs"]) for r in sweep["runs"]] == list(PT_SWEEP)
    assert len({r["lr"] for r in sweep["runs"]}) >= 3, "the sweep must try at least 3 learning rates"
    best = pt_sweep_best(sweep["runs"])
    assert (best["lr"], best["epochs"]) == (PT_LR, PT_EPOCHS), "PT_LR / PT_EPOCHS are not the sweep's choice"


def test_tables_are_computed_from_the_runs(results, sweep):
    table = prompt_tuning_table(results)
    for r in results["runs"]:
        assert f"| {r['name']} |" in table and f"{r['validation']:.3f}" in table
    assert f"**{pt_sweep_best(sweep['runs'])['validation']:.3f}**" in prompt_tuning_sweep_table(sweep)


def test_the_ladder_is_shipped_with_cards():
    sizes = [model_card(name)["config"]["d_model"] for name in PT_LADDER]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) >= 3
    for name in PT_LADDER:
        model, tokenizer = load_pretrained(name)  # checks the sha256 of weights and tokenizer
        assert model.config.mode == "gpt"
        assert all(len(tokenizer.encode(w, add_special_tokens=False).ids) == 1 for w in PT_VERBALIZER)


def test_one_cell_reproduces_the_committed_number(results):
    """Re-run the cheapest prompt-tuning cell (d=16, P=20): the committed results must be this code's results."""
    torch.set_num_threads(results["threads"])
    committed = next(r for r in results["runs"] if r["name"] == "gpt_d16_text")
    # Chapter 6's finding: on d=16, prompt tuning never leaves the plateau, and the run says so.
    expected = pytest.warns(PlateauWarning, match="one-class plateau") if committed["on_plateau"] else nullcontext()
    with expected:
        rerun, prompt = run_prompt_tuning(PT_RUNS["gpt_d16_text"], progress=False)
    assert rerun["on_plateau"] == committed["on_plateau"]
    # Bit-identical on the machine that wrote the file; another CPU's kernels may round differently.
    assert rerun["validation"] == pytest.approx(committed["validation"], abs=0.02)
    assert rerun["trainable"] == committed["trainable"] == prompt.numel()
