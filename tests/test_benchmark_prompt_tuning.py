"""Prompt-tuning results: chapter 6's ladder and live run, and chapter 10's committed runs.

Chapter 6 is judged by the protocol (`benchmarks/protocol/sentiment/prompt_tuning*`); its live run must
reproduce its record. `benchmarks/prompt_tuning_sweep.json` and `benchmarks/prompt_tuning.json` (with their
trained prompts), written by `python -m experiments.benchmark prompt_tuning_sweep` and `... prompt_tuning`,
are chapter 10's: these tests check that they still describe this code and recipe.
"""

import pytest
import torch

from minitransformer import recipes
from experiments.benchmark import (PT_EPOCHS, PT_LR, PT_RUNS, PT_SWEEP, PT_VERBALIZER, _pt_recipe,
                                   load_prompts, load_results, prompt_tuning_sweep_table, pt_sweep_best, prompt_tuning_table)
from minitransformer.checkpoint import load_pretrained, model_card


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
    """Chapter 6's scale ladder: narrower GPT backbones pretrained like the shipped one (same steps and batch)."""
    ladder = ("gpt_d16", "gpt_d32", "gpt")
    cards = [model_card(name) for name in ladder]
    sizes = [c["config"]["d_model"] for c in cards]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) >= 3
    assert len({(c["steps"], c["batch_size"], c["peak_lr"], c["documents"]) for c in cards}) == 1, \
        "the ladder must vary width only: the same pretraining budget for every size"
    for name in ladder:
        model, tokenizer = load_pretrained(name)  # checks the sha256 of weights and tokenizer
        assert model.config.mode == "gpt"
        assert all(len(tokenizer.encode(w, add_special_tokens=False).ids) == 1 for w in PT_VERBALIZER)


def test_chapter_6s_live_run_reproduces_its_protocol_record():
    """Chapter 6 trains the protocol's cheapest prompt-tuning run live (d=32, seed 0): re-run it here, training
    for real (not copied from the sweep), and compare with the committed record, review by review."""
    from experiments import records, sentiment

    spec = sentiment.RunSpec("prompt_tuning_d32", 0, 1)
    committed = records.load_run("sentiment", spec.method, spec.epochs, 0)
    assert committed is not None, "run `python -m experiments run sentiment --methods prompt_tuning_d32`"
    assert not committed["on_plateau"], "the reproduced run must be one that trains"
    torch.set_num_threads(committed["threads"])
    rerun = sentiment.run(spec, progress=False, reuse_sweep=False)
    assert rerun["lr"] == committed["lr"] and rerun["trainable"] == committed["trainable"] == 20 * 32
    # Bit-identical on the CPU that wrote the file; another CPU's kernels round differently, and over 120 epochs of
    # a model this close to chance that flips single reviews. "machine" (x86_64) does not name the CPU: "cpu" does,
    # in records made since it was added.
    assert rerun["validation"]["accuracy"] == pytest.approx(committed["validation"]["accuracy"], abs=0.02)
    if committed.get("cpu") == rerun["cpu"] and rerun["torch"] == committed["torch"]:
        mismatches = sum(a != b for a, b in zip(rerun["validation"]["correct"], committed["validation"]["correct"]))
        assert mismatches <= 10, f"{mismatches} of 500 validation predictions differ from the committed run"
