"""Chapter 10's soft-prompt runs on sentiment: their own learning-rate sweep on seed 0, then seeds 1 and 2."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from minitransformer import recipes
from minitransformer.evaluation import evaluate_accuracy
from minitransformer.training import progress_bar

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
SEEDS = (0, 1, 2)

# ----------------------------------------------------------------------------- soft prompts on sentiment
# The soft-prompt methods on the standard sentiment setup. Each one's learning rate comes from a sweep at the
# standard 20 epochs (seed 0); at that budget every one of their validation curves was still rising
# (training.still_rising), so their three seeds train three times as long, SOFT_PROMPT_EPOCHS, as chapter 6 found
# prompt tuning needs. Prompt tuning reads the frozen LM head through its verbaliser (chapter 6); prefix tuning on
# a classification task is the deep prompt with the MLP reparameterisation and a linear head (chapter 9's
# `p_tuning_v2_mlp`).
SOFT_PROMPT_EPOCHS = 3 * recipes.EPOCHS
SENTIMENT_SWEEP = {"p_tuning": [3e-4, 1e-3, 3e-3], "prefix_tuning": [1e-3, 3e-3, 1e-2],
                   "p_tuning_v2": [3e-2, 1e-1, 3e-1]}  # runs at 1e-2 (before the grids were narrowed) stay in the file
SENTIMENT_LABELS = {"prompt_tuning": "prompt tuning (P=20, verbaliser)", "p_tuning": "P-tuning (LSTM encoder)",
                    "prefix_tuning": "prefix tuning (MLP reparam.)", "p_tuning_v2": "P-tuning v2 (P=16)",
                    "p_tuning_v2_p4": "P-tuning v2 (P=4)", "p_tuning_v2_p32": "P-tuning v2 (P=32)"}


def _sentiment_prompt_tuning(seed: int, lr: float, epochs: int) -> dict:
    from experiments.bench_prompt_tuning import PromptTuningRun, run_prompt_tuning

    record, _ = run_prompt_tuning(PromptTuningRun("gpt_text_3x_epochs", seed=seed, epochs=epochs), lr=lr,
                                  progress=False)
    return record


def _sentiment_p_tuning(seed: int, lr: float, epochs: int) -> dict:
    from solutions.p_tuning import cloze_loader, p_tune_sentiment

    from minitransformer.training import PLATEAU_MARGIN
    from minitransformer.world import load_task

    backbone, tokenizer = recipes.fresh_backbone(recipes.BACKBONE, seed)
    run = p_tune_sentiment(backbone, tokenizer, kind="LSTM", lr=lr, seed=seed, epochs=epochs, progress=False)
    test = load_task("sentiment").test
    test_loader = cloze_loader(test, tokenizer, "text", [ex["label"] for ex in test], batch_size=64)
    model = run["model"]
    return {"validation": round(run["validation"], 4), "test": round(evaluate_accuracy(model, test_loader), 4),
            "curve": [round(c, 4) for c in run["curve"]], "train_accuracy": round(run["train_accuracy"], 4),
            "majority": round(run["majority"], 4),
            "on_plateau": run["train_accuracy"] < run["majority"] + PLATEAU_MARGIN,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()), "seconds": round(run["seconds"], 1),
            "epochs": epochs}


def _sentiment_ptv2(method: str, num_virtual_tokens: int = 16) -> Callable[[int, float], dict]:
    def run(seed: int, lr: float, epochs: int) -> dict:
        from experiments.bench_ner import run_ptv2_cell

        record = run_ptv2_cell("sentiment", recipes.BACKBONE, method, seed, lr=lr,
                               num_virtual_tokens=num_virtual_tokens, progress=False, epochs=epochs)
        return {**record, "epochs": epochs}

    return run


SENTIMENT_RUNNERS = {"prompt_tuning": _sentiment_prompt_tuning, "p_tuning": _sentiment_p_tuning,
                     "prefix_tuning": _sentiment_ptv2("p_tuning_v2_mlp"), "p_tuning_v2": _sentiment_ptv2("p_tuning_v2")}
# Chapter 9's prompt length on sentiment (seed 0, P-tuning v2's sentiment lr): P = 4 and 32 beside the default 16
# (32 is the most the context leaves: reviews are cut to 96 of the 128 positions).
PTV2_SENTIMENT_LENGTHS = {"p_tuning_v2_p4": 4, "p_tuning_v2_p32": 32}
EXTRA_RUNNERS = {name: _sentiment_ptv2("p_tuning_v2", n) for name, n in PTV2_SENTIMENT_LENGTHS.items()}
KEEP = ("validation", "test", "curve", "train_accuracy", "majority", "on_plateau", "trainable", "total", "seconds",
        "epochs")


def run_sentiment_cell(method: str, seed: int, lr: float, epochs: int = recipes.EPOCHS, threads: int = 1) -> dict:
    """One soft-prompt run on the sentiment setup, as a JSON-able dict."""
    runners = {**SENTIMENT_RUNNERS, **EXTRA_RUNNERS}
    if method not in runners:
        raise ValueError(f"Unknown soft-prompt method {method!r}; choose from {list(runners)}.")
    torch.set_num_threads(threads)
    record = runners[method](seed, lr, epochs)
    return {"method": method, "label": SENTIMENT_LABELS[method], "seed": seed, "lr": lr,
            **{k: record[k] for k in KEEP}}


def _key(run: dict) -> tuple:
    return run["method"], run["seed"], run["lr"], run["epochs"]


def _cell(args: tuple) -> dict:
    return run_sentiment_cell(*args)


def sentiment_sweep_best(runs: list[dict], method: str) -> dict:
    """The method's sweep choice (seed 0): the best validation score among the runs off the one-class plateau."""
    swept = [r for r in runs if r["method"] == method and r["seed"] == 0 and r["lr"] in SENTIMENT_SWEEP[method]
             and r["epochs"] == recipes.EPOCHS]
    trained = [r for r in swept if not r["on_plateau"]] or swept
    return max(trained, key=lambda r: r["validation"])


def sentiment_learning_rates(runs: list[dict]) -> dict[str, float]:
    from experiments.bench_prompt_tuning import PT_LR

    return {"prompt_tuning": PT_LR, **{m: sentiment_sweep_best(runs, m)["lr"] for m in SENTIMENT_SWEEP}}


def _sentiment_recipe() -> dict:
    """The standard recipe (the sweep grid is stored beside it: widening a grid keeps the finished cells)."""
    from experiments.results_io import sentiment_recipe

    recipe = sentiment_recipe()
    # The standard methods' learning rates and budgets do not touch these runs (each records its lr and epochs).
    del recipe["learning_rates"], recipe["method_epochs"]
    return recipe


def _run_plan(ready: list[tuple], jobs: int, total: int, on_done: Callable[[dict], list[tuple]]) -> None:
    """Run cells `jobs` at a time (one process each), the longest ready cell first; `on_done(run)` records a
    finished run and returns the cells it makes ready. No barrier between the sweep and the seeds: a method's
    seeds start as soon as its own sweep has finished, while the other sweeps still run."""
    ready = list(ready)

    def next_cell() -> tuple:
        ready.sort(key=lambda c: (c[0] != "prompt_tuning", -c[3]))  # prompt tuning's 60 epochs are the longest
        return ready.pop(0)

    with progress_bar(total=total, desc="soft prompts on sentiment", unit="run") as bar:
        if jobs == 1:
            while ready:
                ready += on_done(_cell(next_cell()))
                bar.update(1)
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = set()
            while ready or running:
                while ready and len(running) < jobs:
                    running.add(pool.submit(_cell, next_cell()))
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    ready += on_done(future.result())
                    bar.update(1)


def sentiment_soft_prompts(out: Path = RESULTS_DIR, jobs: int = 2, threads: int = 1,
                           prompt_lengths: bool = False) -> dict:
    """The sweep (seed 0), then seeds 0-2 at each method's best rate; cells already in `out` (same recipe and
    thread count) are kept, and every finished run is saved at once, so an interrupted command resumes where it
    stopped. `prompt_lengths` adds chapter 9's P-tuning v2 prompt lengths on sentiment (EXTRA_RUNNERS, seed 0 at
    P-tuning v2's rate): the comparison itself does not read them."""
    path = Path(out) / "comparison_sentiment.json"
    recipe = _sentiment_recipe()
    done: dict[tuple, dict] = {}
    seconds_before = 0  # the training time of the runs kept from the file
    if path.exists():
        old = json.loads(path.read_text())
        if old["recipe"] == recipe and old["threads"] == threads:
            done = {_key(r): r for r in old["runs"]}
            seconds_before = old.get("seconds", 0)
    started = time.perf_counter()
    results = {"recipe": recipe, "sweep_grid": SENTIMENT_SWEEP, "threads": threads}

    def save(order: list[tuple]) -> None:
        results["runs"] = [done[c] for c in order if c in done] + [r for c, r in done.items() if c not in order]
        Path(out).mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)

    from experiments.bench_prompt_tuning import PT_LR

    lrs = {"prompt_tuning": PT_LR}
    prompt_tuning_seed0 = _committed_prompt_tuning_seed0(out, PT_LR, threads)
    if prompt_tuning_seed0 is not None:  # chapter 6's committed 3x-budget run is this cell
        done.setdefault(_key(prompt_tuning_seed0), prompt_tuning_seed0)
    sweep = {m: [(m, 0, lr, recipes.EPOCHS) for lr in grid] for m, grid in SENTIMENT_SWEEP.items()}

    def seed_cells(method: str) -> list[tuple]:
        cells = [(method, s, lrs[method], SOFT_PROMPT_EPOCHS) for s in SEEDS]
        if method == "p_tuning_v2" and prompt_lengths:  # chapter 9's prompt lengths, at P-tuning v2's rate
            cells += [(name, 0, lrs[method], recipes.EPOCHS) for name in EXTRA_RUNNERS]
        return cells

    def unlock(method: str) -> list[tuple]:
        """The method's seed cells once its sweep is complete (its best rate is then known)."""
        if method not in sweep or method in lrs or not all(c in done for c in sweep[method]):
            return []
        lrs[method] = sentiment_sweep_best([done[c] for c in sweep[method]], method)["lr"]
        return [c for c in seed_cells(method) if c not in done]

    def on_done(run: dict) -> list[tuple]:
        done[_key(run)] = run
        save(list(done))
        return [(*c, threads) for c in unlock(run["method"])]

    ready = [c for cells in sweep.values() for c in cells if c not in done]
    ready += [c for c in seed_cells("prompt_tuning") if c not in done]
    for method in SENTIMENT_SWEEP:
        ready += unlock(method)
    total = len(ready) + sum(len(SEEDS) + (len(EXTRA_RUNNERS) if m == "p_tuning_v2" and prompt_lengths else 0)
                             for m in SENTIMENT_SWEEP if m not in lrs)  # seed cells not unlocked yet
    _run_plan([(*c, threads) for c in ready], jobs, total, on_done)
    results["learning_rates"] = {m: lrs[m] for m in SENTIMENT_RUNNERS}
    # The training time of the runs on file plus that of the runs made now (none made: unchanged).
    results["seconds"] = seconds_before + (round(time.perf_counter() - started) if ready else 0)
    # The plan's cells in the plan's order, then any other run on this recipe (the 20-epoch seeds that showed the
    # soft prompts still rising, kept as evidence).
    plan = [c for cells in sweep.values() for c in cells] + [c for m in SENTIMENT_RUNNERS for c in seed_cells(m)]
    save(plan)
    return results


def _committed_prompt_tuning_seed0(out: Path, lr: float, threads: int) -> Optional[dict]:
    path = Path(out) / "prompt_tuning.json"
    if not path.exists():
        return None
    committed = json.loads(path.read_text())
    for run in committed["runs"]:
        if run["name"] == "gpt_text_3x_epochs" and run["lr"] == lr and committed["threads"] == threads:
            return {"method": "prompt_tuning", "label": SENTIMENT_LABELS["prompt_tuning"], "seed": 0, "lr": lr,
                    **{k: run[k] for k in KEEP}}
    return None

