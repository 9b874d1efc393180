"""Chapter 7's P-tuning runs on the knowledge probe, and their learning-rate sweep."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch

from minitransformer import recipes
from minitransformer.training import progress_bar

from experiments.results_io import RESULTS_DIR, write_results

# ============================================================================ P-tuning (chapter 7)
# The knowledge probe with one prompt per relation (solutions.p_tuning): hand-written prompts, and P-tuning
# with the LSTM encoder, plain trainable vectors ("NONE") and the LSTM with an anchor word,
# on the GPT and the BERT backbone, over several seeds. `p_tuning_sweep` is the learning-rate sweep behind
# BERT's evidence that no rate trains it (GPT's rates, P_TUNING_LR, come from the protocol's sweeps:
# `python -m experiments sweep probe ...`). Chapter 7 shows the BERT rows of benchmarks/p_tuning.json.

P_TUNING_CONFIGS = {"LSTM": ("LSTM", False), "NONE": ("NONE", False), "LSTM/anchors": ("LSTM", True)}
P_TUNING_SWEEP_GRID = {"LSTM": [1e-3, 3e-3, 1e-2], "NONE": [3e-3, 1e-2, 3e-2, 1e-1]}


def p_tuning_run(backbone: str, config: str, seed: int, lr: Optional[float] = None, threads: int = 1) -> dict:
    """One P-tuning run on the probe, as a JSON-able dict (no model)."""
    from minitransformer.world import load_task
    from solutions.p_tuning import P_TUNING_LR, p_tune_probe

    torch.set_num_threads(threads)
    kind, anchors = P_TUNING_CONFIGS[config]
    model, tokenizer = recipes.fresh_backbone(backbone, seed)  # the recipe's dropout (off)
    run = p_tune_probe(model, tokenizer, load_task("probing"), kind=kind, anchors=anchors, lr=lr, seed=seed,
                       progress=False)
    from minitransformer.training import PLATEAU_MARGIN

    return {"backbone": backbone, "config": config, "seed": seed, "lr": lr if lr is not None else P_TUNING_LR[kind],
            "validation": round(run["validation"], 4), "test": round(run["test"], 4),
            "train_accuracy": round(run["train_accuracy"], 4), "majority": round(run["majority"], 4),
            "on_plateau": run["train_accuracy"] < run["majority"] + PLATEAU_MARGIN,
            "curve": [round(c, 4) for c in run["curve"]], "seconds": round(run["seconds"], 1),
            "per_relation": {r: {k: round(v, 4) for k, v in s.items()} for r, s in run["per_relation"].items()}}


def p_tuning_discrete(backbone: str) -> dict:
    """The hand-written prompts, zero-shot: per relation and prompt, validation and test accuracy."""
    from minitransformer import load_pretrained
    from minitransformer.world import load_task
    from solutions.p_tuning import discrete_probe_scores, probe_splits, weighted

    model, tokenizer = load_pretrained(backbone)
    task = load_task("probing")
    scores = discrete_probe_scores(model, tokenizer, task)
    counts = {r: len(probe_splits(task, r)[0][2]) for r in scores}
    best = {r: max(s, key=lambda t: t[1])[2] for r, s in scores.items()}
    return {"prompts": {r: [{"prompt": p, "validation": round(v, 4), "test": round(t, 4)} for p, v, t in s]
                        for r, s in scores.items()},
            "task_wording_test": round(weighted({r: s[0][2] for r, s in scores.items()}, counts), 4),
            "best_test": round(weighted(best, counts), 4),
            "spread": {r: round(max(t for _, _, t in s) - min(t for _, _, t in s), 4) for r, s in scores.items()}}


def p_tuning_summary(runs: list[dict]) -> dict:
    cells: dict[str, list[dict]] = {}
    for run in runs:
        cells.setdefault(f"{run['backbone']}/{run['config']}", []).append(run)
    summary = {}
    for key, group in cells.items():
        tests = [r["test"] for r in sorted(group, key=lambda r: r["seed"])]
        summary[key] = {"seeds": sorted(r["seed"] for r in group), "tests": tests,
                        "mean": round(statistics.mean(tests), 4),
                        "sd": round(statistics.stdev(tests), 4) if len(tests) > 1 else 0.0,
                        "validation_mean": round(statistics.mean(r["validation"] for r in group), 4)}
    return summary


def p_tuning_table(results: dict) -> str:
    lines = [f"P-tuning on the knowledge probe (one prompt per relation; test accuracy, {results['command']})", "",
             "| backbone | prompt | test mean ± sd | seeds | validation mean |", "|---|---|---|---|---|"]
    for backbone, d in results["discrete"].items():
        lines.append(f"| {backbone} | hand-written, task wording | {d['task_wording_test']:.3f} | - | - |")
        lines.append(f"| {backbone} | best hand-written (on validation) | {d['best_test']:.3f} | - | - |")
        for key, cell in results["summary"].items():
            if key.startswith(backbone + "/"):
                lines.append(f"| {backbone} | P-tuning {key.split('/', 1)[1]} | {cell['mean']:.3f} ± {cell['sd']:.3f} | "
                             f"{', '.join(f'{t:.3f}' for t in cell['tests'])} | {cell['validation_mean']:.3f} |")
    lines += ["", "Largest one-word swing of a hand-written prompt (test accuracy, per relation): " +
              "; ".join(f"{b} {max(d['spread'].values()):.2f}" for b, d in results["discrete"].items()), ""]
    return "\n".join(lines)


def p_tuning_sweep_table(results: dict) -> str:
    lines = [f"P-tuning learning-rate sweep ({results['backbone']}, seed {results['seed']}; `{results['command']}`)", "",
             "| encoder | lr | validation | test | train accuracy | majority answer's share | plateau? |",
             "|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        lines.append(f"| {run['config']} | {run['lr']:g} | {run['validation']:.3f} | {run['test']:.3f} | "
                     f"{run['train_accuracy']:.3f} | {run['majority']:.3f} | {'yes' if run['on_plateau'] else 'no'} |")
    best = {}
    for run in results["runs"]:
        if run["config"] not in best or run["validation"] > best[run["config"]]["validation"]:
            best[run["config"]] = run
    lines += ["", "Best validation per encoder: " + ", ".join(f"{k} lr={v['lr']:g}" for k, v in best.items()), ""]
    return "\n".join(lines)


def p_tuning_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark p_tuning|p_tuning_sweep")
    parser.add_argument("command", choices=["p_tuning", "p_tuning_sweep"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbones", nargs="+", default=["gpt", "bert"], choices=["gpt", "bert"])
    parser.add_argument("--configs", nargs="+", default=list(P_TUNING_CONFIGS), choices=list(P_TUNING_CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = "python -m experiments.benchmark " + " ".join(argv)
    started = time.perf_counter()
    if args.command == "p_tuning_sweep":
        # `--backbones bert` writes p_tuning_lr_sweep_bert (BERT's own evidence); GPT's rates come from the protocol.
        backbone = args.backbones[0] if args.backbones != ["gpt", "bert"] else "gpt"
        if backbone == "gpt":
            print("error: GPT's P-tuning rates come from the protocol's sweeps: `python -m experiments sweep probe "
                  "--methods p_tuning p_tuning_none --lrs ...`; this command sweeps BERT (--backbones bert).")
            return 2
        cells = [(c, lr) for c in P_TUNING_SWEEP_GRID for lr in P_TUNING_SWEEP_GRID[c]]
        runs = [p_tuning_run(backbone, c, 0, lr, args.threads) for c, lr in progress_bar(cells, desc="p_tuning_sweep")]
        results = {"command": command, "backbone": backbone, "seed": 0, "threads": args.threads,
                   "dropout": recipes.DROPOUT, "seconds": round(time.perf_counter() - started), "runs": runs}
        name = "p_tuning_lr_sweep" + ("" if backbone == "gpt" else f"_{backbone}")
        write_results(results, name, p_tuning_sweep_table(results), args.out)
        return 0
    # Re-running some backbones keeps the committed runs of the others (e.g. after re-pretraining BERT).
    path = args.out / "p_tuning.json"
    old = json.loads(path.read_text()) if path.exists() else {"runs": [], "discrete": {}}
    runs = [r for r in old["runs"] if r["backbone"] not in args.backbones]
    discrete = {b: d for b, d in old["discrete"].items() if b not in args.backbones}
    cells = [(b, c, s) for b in args.backbones for c in args.configs for s in args.seeds]
    for backbone in args.backbones:
        discrete[backbone] = p_tuning_discrete(backbone)
    runs += [p_tuning_run(b, c, s, None, args.threads) for b, c, s in progress_bar(cells, desc="p_tuning")]
    order = {"gpt": 0, "bert": 1}
    runs.sort(key=lambda r: (order[r["backbone"]], list(P_TUNING_CONFIGS).index(r["config"]), r["seed"]))
    from minitransformer.checkpoint import model_card

    results = {"command": "python -m experiments.benchmark p_tuning", "threads": args.threads,
               "dropout": recipes.DROPOUT,
               "checkpoints": {b: model_card(b)["sha256"] for b in order},
               "discrete": {b: discrete[b] for b in order if b in discrete}, "runs": runs,
               "summary": p_tuning_summary(runs)}
    write_results(results, "p_tuning", p_tuning_table(results), args.out)
    return 0
