"""The comparison chapter's committed results: complete, computed from the chapters' benchmarks, reproducible."""

import json

import pytest

from experiments import comparison, comparison_sentiment
from experiments.benchmark import README
from minitransformer.training import PLATEAU_MARGIN


@pytest.fixture(scope="module")
def results():
    if not (comparison.RESULTS_DIR / "comparison.json").exists():
        pytest.fail("benchmarks/comparison.json is missing: run `python -m experiments.benchmark comparison`")
    return comparison.load_results()


@pytest.fixture(scope="module")
def sentiment_runs():
    return json.loads((comparison.RESULTS_DIR / "comparison_sentiment.json").read_text())


def test_every_method_on_every_task_it_applies_to_has_three_seeds(results):
    cells = {(r["task"], r["method"]): r for r in results["rows"]}
    expected = [(t, m) for t in comparison.TASKS for m in comparison.METHODS if comparison.applies(t, m)]
    assert list(cells) == expected
    for (task, method), row in cells.items():
        if (task, method) == ("probe", "frozen"):  # zero-shot hand-written prompts: nothing trains, no seed
            assert row["n"] == 1 and row["trainable"] == 0
        else:
            assert row["n"] == 3 and sorted(row["seeds"]) == [0, 1, 2], (task, method, row["seeds"])
    # Every method of chapters 2-9 appears on at least two tasks, and each task has at least three methods;
    # chapters 11 and 12 (LoRA's descendants, QLoRA) are judged on sentiment, where their protocol runs are.
    assert all(sum(comparison.applies(t, m) for t in comparison.TASKS) >= 2
               for m in comparison.METHODS if m not in comparison.LORA_DESCENDANTS)
    assert all(comparison.applies("sentiment", m) for m in comparison.LORA_DESCENDANTS)
    assert all(sum(comparison.applies(t, m) for m in comparison.METHODS) >= 3 for t in comparison.TASKS)


def test_rows_are_computed_from_the_chapters_benchmarks(results):
    assert comparison.comparison_rows(results["costs"]) == results["rows"]
    assert comparison.markdown_table(results) == (comparison.RESULTS_DIR / "comparison.md").read_text()


def test_soft_prompt_learning_rates_come_from_their_sweep(sentiment_runs):
    lrs = comparison.sentiment_learning_rates(sentiment_runs["runs"])
    assert sentiment_runs["learning_rates"] == lrs
    assert sentiment_runs["recipe"] == comparison._sentiment_recipe(), "the recipe changed: rerun the comparison"
    for method, grid in comparison.SENTIMENT_SWEEP.items():
        assert len(grid) >= 3
        best = comparison.sentiment_sweep_best(sentiment_runs["runs"], method)
        assert min(grid) < best["lr"] < max(grid), f"{method}: the best lr {best['lr']} is at the edge of {grid}"


def test_each_method_starts_its_seeds_when_its_own_sweep_ends(tmp_path, monkeypatch):
    """The command's plan, on stand-in runs: every sweep cell, then three seeds at each method's best rate (and
    prompt tuning's fixed one), with no barrier: P-tuning's seeds run before the other methods' sweeps end.
    Chapter 9's prompt-length runs only with `prompt_lengths=True`."""
    from experiments.benchmark import PT_LR

    order = []
    best = {"p_tuning": 1e-3, "prefix_tuning": 3e-3, "p_tuning_v2": 1e-1}

    def stand_in(cell):
        method, seed, lr, epochs, _threads = cell
        order.append(cell[:4])
        score = 0.9 - abs(lr - best.get(method.split("_p")[0] if method.startswith("p_tuning_v2_") else method, lr))
        return {"method": method, "seed": seed, "lr": lr, "epochs": epochs, "validation": score,
                "on_plateau": False}

    monkeypatch.setattr(comparison_sentiment, "_cell", stand_in)
    results = comparison.sentiment_soft_prompts(tmp_path, jobs=1)
    sweep = [(m, 0, lr, comparison.recipes.EPOCHS) for m, grid in comparison.SENTIMENT_SWEEP.items() for lr in grid]
    assert results["learning_rates"] == {"prompt_tuning": PT_LR, **best}
    seeds = [(m, s, results["learning_rates"][m], comparison.SOFT_PROMPT_EPOCHS)
             for m in comparison.SENTIMENT_RUNNERS for s in comparison.SEEDS]
    assert sorted(order) == sorted(sweep + seeds), "each cell runs exactly once"
    assert order.index(("p_tuning", 0, best["p_tuning"], 60)) < order.index(sweep[-1]), "no barrier after the sweep"
    saved = json.loads((tmp_path / "comparison_sentiment.json").read_text())
    assert [comparison._key(r) for r in saved["runs"]] == sweep + seeds
    again = comparison.sentiment_soft_prompts(tmp_path, jobs=1)  # everything is on disk: nothing runs again
    assert len(order) == len(sweep + seeds) and again["learning_rates"] == results["learning_rates"]
    # Chapter 9's prompt lengths are opt-in: only they run, at P-tuning v2's swept rate.
    comparison.sentiment_soft_prompts(tmp_path, jobs=1, prompt_lengths=True)
    extras = [(name, 0, best["p_tuning_v2"], comparison.recipes.EPOCHS) for name in comparison.EXTRA_RUNNERS]
    assert order[len(sweep + seeds):] == extras
    saved = json.loads((tmp_path / "comparison_sentiment.json").read_text())
    assert [comparison._key(r) for r in saved["runs"]] == sweep + seeds + extras


def test_every_trained_run_left_the_one_class_plateau(sentiment_runs):
    lrs = sentiment_runs["learning_rates"]
    for run in sentiment_runs["runs"]:
        if run["method"] in lrs and run["lr"] == lrs[run["method"]]:
            assert run["train_accuracy"] >= run["majority"] + PLATEAU_MARGIN, (run["method"], run["seed"])


def test_costs_are_measured_not_copied(results):
    """Parameter counts, memory and file sizes are exact: re-measuring one cell gives the same bytes."""
    cell = next(c for c in results["costs"] if (c["task"], c["method"]) == ("sentiment", "lora"))
    again = comparison.measure_costs("sentiment", "lora", timings=False)
    for key in ("trainable", "total", "stored_parameters", "file_bytes", "memory", "activation_bytes"):
        assert again[key] == cell[key], key


def test_costs_are_those_of_the_deployed_model():
    """What is timed and stored is the model as served: P-tuning's LSTM encoder and the deep prompt's MLP are gone
    after `deploy` (they only helped training), and the outputs did not change (measure_costs asserts it)."""
    import torch
    from solutions.p_tuning_v2 import DeepPrompt, InputPrompt

    from experiments.comparison_costs import build, deploy

    for task, method, kind in (("ner", "p_tuning", InputPrompt), ("sentiment", "prefix_tuning", DeepPrompt)):
        model, batch, _ = build(task, method)
        prompt = next(m for m in model.modules() if isinstance(m, kind))
        assert getattr(prompt, "lstm", None) is not None or getattr(prompt, "transform", None) is not None
        model.eval()
        inputs = {k: v[:4] for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            before = model(**inputs).logits
            deploy(model)
            after = model(**inputs).logits
        assert getattr(prompt, "lstm", None) is None and getattr(prompt, "mlp", None) is None
        assert getattr(prompt, "transform", None) is None
        assert torch.allclose(before, after, atol=1e-5), (task, method)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == next(c for c in comparison.load_results()["costs"]
                                 if (c["task"], c["method"]) == (task, method))["stored_parameters"]


def test_a_deployed_prompt_keeps_its_input_vectors():
    """Data-to-text's prompt tuning (an embedding-only prefix) deploys as its P x d input vectors, the smallest
    file that serves it, not the P x L*2*d keys and values the frozen layers compute from them; outputs unchanged."""
    import torch

    from experiments.comparison_costs import build, deploy, stored_tensors

    model, batch, _ = build("data_to_text", "prompt_tuning")
    config = model.peft_config
    assert config.embedding_only and not config.prefix_projection
    model.eval()
    inputs = {k: v[:2] for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs).logits
        stored = stored_tensors(model, "prompt_tuning")
        after = model(**inputs).logits
    assert sum(t.numel() for t in stored.values()) == config.num_virtual_tokens * config.token_dim
    assert torch.equal(before, after)


def test_activation_memory_counts_what_the_backward_pass_keeps():
    """One frozen linear layer keeps nothing; a trainable one keeps its input; a frozen layer above a trainable one
    keeps what its backward reads to pass the gradient down (here the ReLU's output), never the weights."""
    import torch
    import torch.nn as nn

    from minitransformer.measure import activation_memory

    x = torch.randn(4, 10)
    layer = nn.Linear(10, 5)
    assert activation_memory(layer, lambda: layer(x).sum()) == x.numel() * 4
    layer.requires_grad_(False)
    assert activation_memory(layer, lambda: layer(x).sum()) == 0
    mlp = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    mlp[2].requires_grad_(False)  # the top frozen: the gradient passes through it and the ReLU to the bottom
    assert activation_memory(mlp, lambda: mlp(x).sum()) == (4 * 10 + 4 * 20) * 4
    mlp.requires_grad_(False)
    mlp[2].requires_grad_(True)  # only the top trains: it keeps its input, nothing below it keeps anything
    assert activation_memory(mlp, lambda: mlp(x).sum()) == 4 * 20 * 4


def test_costs_order_the_methods_as_the_papers_claim(results):
    cells = {(r["task"], r["method"]): r for r in results["rows"]}
    for task in ("sentiment", "ner", "data_to_text"):
        full = cells[(task, "full")]
        for (t, method), row in cells.items():
            if t == task and method not in ("full", "lora_merged"):
                assert row["memory"]["total"] < full["memory"]["total"], (task, method)
                assert row["file_bytes"] < full["file_bytes"] / 10, (task, method)
    assert cells[("sentiment", "lora")]["latency_b1"] > 0 and cells[("sentiment", "lora_merged")]["latency_b1"] > 0


def test_one_ner_cell_reproduces_the_committed_number(results):
    row = next(r for r in results["rows"] if (r["task"], r["method"]) == ("ner", "frozen"))
    committed = row["scores"][row["seeds"].index(1)]
    rerun = comparison.rerun_ner(seed=1, jobs=1, methods=["frozen"])["frozen"]
    assert rerun == pytest.approx(committed, abs=0.02)


def test_readme_comparison_table_is_the_generated_one(results):
    text = README.read_text()
    assert comparison.readme_with_results(text, results) == text, "run `python -m experiments.benchmark readme`"


def test_every_row_says_what_it_is_and_one_label_can_be_two_modules():
    """One name, one model, or the table says exactly what differs (chapter 10's definitions)."""
    for task in comparison.TASKS:
        for method in comparison.METHODS:
            if comparison.applies(task, method):
                assert comparison.definition(task, method)
    # the issue's two examples: "prefix tuning" and "P-tuning v2" are chapter 9's module on sentiment and NER,
    # chapter 8's on data-to-text, and the table must say so
    assert "chapter 9" in comparison.definition("sentiment", "prefix_tuning")
    assert "chapter 8" in comparison.definition("data_to_text", "prefix_tuning")
    assert "MLP" in comparison.definition("ner", "prefix_tuning") and "no MLP" in comparison.definition("ner", "p_tuning_v2")
    assert "merged" in comparison.definition("ner", "lora_merged") and "merged" not in comparison.definition("ner", "lora")
    with pytest.raises(ValueError, match="does not apply"):
        comparison.definition("probe", "lora")


def test_the_ner_column_reads_one_source(tmp_path):
    """The NER column reads the protocol's runs only once every NER row has them: never a mix of budgets."""
    from experiments import ner

    assert not comparison.protocol_complete("ner", tmp_path) and not comparison.protocol_complete("data_to_text", tmp_path)
    runs = comparison.protocol_scores("p_tuning_v2", task="ner")
    assert [r["seed"] for r in runs] == [0, 1, 2] and all(r["protocol"] and r["epochs"] == ner.EPOCHS for r in runs)
    with pytest.raises(FileNotFoundError, match="python -m experiments run ner --methods p_tuning_v2"):
        comparison.protocol_scores("p_tuning_v2", tmp_path, task="ner")
