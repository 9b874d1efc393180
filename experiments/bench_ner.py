"""The P-tuning v2 chapter's runs (chapter 9): NER on the BERT and GPT backbones, its sweep, and prompt lengths."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch

from minitransformer import recipes
from minitransformer.evaluation import evaluate_accuracy
from minitransformer.training import Experiment, progress_bar

from experiments.methods import NER_METHODS, PTV2_LENGTH, _ptv2
from experiments.bench_sentiment import best_per_method
from experiments.results_io import RESULTS_DIR, write_results

# ============================================================================= P-tuning v2 chapter (issue 12)
# NER (BERT and GPT backbones) and the P-tuning v2 runs on sentiment. Kept in one block:
#
#     python -m experiments.benchmark ner-sweep      # lr sweep, NER, BERT, seed 0 -> benchmarks/ner_lr_sweep.*
#     python -m experiments.benchmark ner            # methods x seeds x backbones -> benchmarks/ner.*
#     python -m experiments.benchmark ptv2-extra     # prompt length on NER -> benchmarks/p_tuning_v2_extra.*
# P-tuning v2 on sentiment, with its own learning-rate sweep, is run by `benchmark comparison` (chapter 10).
#
# A cell is (task, backbone, method, seed, lr, num_virtual_tokens). `ner` reuses a cell of the sweep file when it is
# the same cell under the same recipe (the runs are deterministic), instead of training it again.

NER_SWEEP_GRID = {"full": [3e-4, 1e-3, 3e-3, 1e-2], "p_tuning_v2": [1e-2, 3e-2, 1e-1, 3e-1],
                  "prompt_tuning": [3e-2, 1e-1, 3e-1, 1.0], "p_tuning": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
                  "p_tuning_v2_mlp": [1e-3, 3e-3, 1e-2, 3e-2], "frozen": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
                  "lora": [1e-3, 3e-3, 1e-2, 3e-2], "bitfit": [3e-3, 1e-2, 3e-2, 1e-1], "adapters": [1e-3, 3e-3, 1e-2, 3e-2]}
# (backbone, methods, seeds) of the main NER benchmark (seed 0 of BERT comes from the sweep): every method over 3
# seeds on BERT, for the comparison chapter; GPT for the backbone comparison.
NER_PLAN = [("bert", list(NER_METHODS), [0]), ("bert", list(NER_METHODS), [1, 2]),
            ("gpt", ["full", "frozen", "p_tuning_v2"], [0])]
# Prompt length on NER (seed 0): (task, method, lengths), at the method's NER learning rate.
PTV2_EXTRA_PLAN = [("ner", "p_tuning_v2", [4, 64])]


def _ner_recipe() -> dict:
    return {"n_train": recipes.NER_N_TRAIN, "epochs": recipes.NER_EPOCHS, "batch_size": recipes.NER_BATCH_SIZE,
            "warmup_ratio": recipes.WARMUP_RATIO, "schedule": recipes.SCHEDULE, "dropout": recipes.DROPOUT,
            "learning_rates": dict(recipes.NER_LEARNING_RATES)}


def run_ptv2_cell(task: str, backbone: str, method: str, seed: int, lr: Optional[float] = None,
                  num_virtual_tokens: int = PTV2_LENGTH, progress: bool = True, epochs: Optional[int] = None) -> dict:
    """One run of the P-tuning v2 chapter's benchmark, as a JSON-able dict (validation and test scores)."""
    from minitransformer.evaluation import evaluate_entity_f1

    spec = NER_METHODS[method]
    prepare = spec.prepare
    if num_virtual_tokens != PTV2_LENGTH:
        prepare = {"p_tuning_v2": _ptv2(num_virtual_tokens=num_virtual_tokens)}[method]
    if task == "ner":
        setup = recipes.ner_setup(backbone, seed=seed)
        lr = lr if lr is not None else recipes.NER_LEARNING_RATES[method]
        model = prepare(recipes.fresh_tagger(setup, seed=seed))
        e = recipes.train_ner(spec.label, model, setup, method, lr=lr, progress=progress)
        test = evaluate_entity_f1(e.model, setup.test_loader, setup.labels)
    elif task == "sentiment":
        if backbone != recipes.BACKBONE or lr is None:
            raise ValueError("sentiment runs use the standard recipe's backbone and need an explicit lr")
        setup = recipes.sentiment_setup(seed=seed)
        model = prepare(recipes.fresh_classifier(seed=seed))
        e = recipes.train_standard(spec.label, model, setup, method, lr=lr, epochs=epochs or recipes.EPOCHS,
                                   track_curve=True, progress=progress)
        test = evaluate_accuracy(e.model, setup.test_loader)
    else:
        raise ValueError(f"unknown task {task!r}")
    return {"task": task, "backbone": backbone, "method": method, "label": spec.label, "seed": seed, "lr": lr,
            "num_virtual_tokens": num_virtual_tokens if method.startswith(("p_", "prompt")) else None,
            "validation": round(e.score, 4), "test": round(test, 4), "curve": [round(s, 4) for s in e.curve],
            "train_accuracy": None if e.train_accuracy is None else round(e.train_accuracy, 4),
            "majority": round(e.majority, 4), "on_plateau": e.on_plateau, "trainable": e.trainable, "total": e.total,
            "seconds": round(e.seconds, 1), "memory": e.memory}


def _cell_key(run: dict) -> tuple:
    return (run["task"], run["backbone"], run["method"], run["seed"], run["lr"], run["num_virtual_tokens"])


def ptv2_summary(runs: list[dict], key: str = "validation") -> dict[str, dict]:
    """Per (task, backbone, method, num_virtual_tokens): mean and sample sd over seeds of `key`."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["task"], run["backbone"], run["method"], run["num_virtual_tokens"]), []).append(run)
    out = {}
    for (task, backbone, method, length), group in groups.items():
        scores = [r[key] for r in group]
        out["/".join(str(x) for x in (task, backbone, method, length))] = {
            "task": task, "backbone": backbone, "method": method, "num_virtual_tokens": length,
            "label": group[0]["label"], "n": len(scores), "seeds": sorted(r["seed"] for r in group),
            "mean": statistics.fmean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "trainable_share": group[0]["trainable"] / group[0]["total"],
            "any_plateau": any(r["on_plateau"] for r in group)}
    return out


def ptv2_table(results: dict, title: str) -> str:
    """The runs of a P-tuning v2 results file as a markdown table, mean ± sd over seeds (printed by code)."""
    test = ptv2_summary(results["runs"], "test")
    lines = [title, "", "| task | backbone | method | P | trainable | validation | test | seeds | lr |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for key, s in ptv2_summary(results["runs"]).items():
        lrs = sorted({r["lr"] for r in results["runs"] if "/".join(str(x) for x in (r["task"], r["backbone"], r["method"], r["num_virtual_tokens"])) == key})
        stuck = " (plateau: not trained)" if s["any_plateau"] else ""
        lines.append(f"| {s['task']} | {s['backbone']} | {s['label']} | {s['num_virtual_tokens'] or ''} | "
                     f"{100 * s['trainable_share']:.3f}% | {s['mean']:.3f} ± {s['sd']:.3f}{stuck} | "
                     f"{test[key]['mean']:.3f} ± {test[key]['sd']:.3f} | {s['seeds']} | {', '.join(f'{x:g}' for x in lrs)} |")
    return "\n".join(lines) + "\n"


def ner_sweep_table(results: dict) -> str:
    lines = [f"NER learning-rate sweep, BERT backbone, seed 0, {results['recipe']['epochs']} epochs, "
             f"{results['recipe']['n_train']} sentences (validation entity F1; the best per method is in bold and goes "
             "into recipes.NER_LEARNING_RATES).", "",
             "| method | lr | validation | last-epoch gain | train accuracy | plateau? |", "|---|---:|---:|---:|---:|---|"]
    best = best_per_method(results["runs"])
    for run in results["runs"]:
        score = f"{run['validation']:.3f}"
        score = f"**{score}**" if best[run["method"]] is run else score
        lines.append(f"| {run['label']} | {run['lr']:g} | {score} | {run['curve'][-1] - run['curve'][-2]:+.3f} | "
                     f"{run['train_accuracy']:.3f} | {'yes' if run['on_plateau'] else 'no'} |")
    return "\n".join(lines) + "\n"


def committed_ptv2_run(task: str, backbone: str, method: str, seed: int = 0, num_virtual_tokens: Optional[int] = None,
                       directory: Path = RESULTS_DIR) -> Experiment:
    """A committed run of the P-tuning v2 benchmark files (ner, p_tuning_v2_extra) as an Experiment (no model)."""
    if num_virtual_tokens is None and method in NER_METHODS and method not in ("full", "frozen"):
        num_virtual_tokens = PTV2_LENGTH
    for name in ("ner", "p_tuning_v2_extra"):
        path = Path(directory) / f"{name}.json"
        if not path.exists():
            continue
        for run in json.loads(path.read_text())["runs"]:
            if (run["task"], run["backbone"], run["method"], run["seed"], run["num_virtual_tokens"]) == (
                    task, backbone, method, seed, num_virtual_tokens):
                return Experiment(run["label"], run["validation"], run["trainable"], run["total"], [], run["seconds"],
                                  run["memory"], None, run["curve"], run["train_accuracy"], run["majority"])
    raise KeyError(f"No committed run {(task, backbone, method, seed, num_virtual_tokens)}; run "
                   "`python -m experiments.benchmark ner` and `... ptv2-extra`.")


def ptv2_main(command: str, out: Path = RESULTS_DIR, threads: int = 1) -> int:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    if command == "ner-sweep":
        cells = [("ner", "bert", m, 0, lr, PTV2_LENGTH) for m, lrs in NER_SWEEP_GRID.items() for lr in lrs]
    elif command == "ner":
        cells = [("ner", b, m, s, recipes.NER_LEARNING_RATES[m], PTV2_LENGTH) for b, ms, seeds in NER_PLAN
                 for m in ms for s in seeds]
    else:
        plan = PTV2_EXTRA_PLAN
        cells = [(task, "bert" if task == "ner" else recipes.BACKBONE, method, 0, recipes.NER_LEARNING_RATES[method], n)
                 for task, method, lengths in plan for n in lengths]
    cached = {}
    for name in ("ner_lr_sweep", "ner"):  # deterministic cells of the committed sweep and benchmark
        path = Path(out) / f"{name}.json"
        if command in ("ner", "ner-sweep") and path.exists():
            committed = json.loads(path.read_text())
            if committed["recipe"] | {"learning_rates": None} == _ner_recipe() | {"learning_rates": None}:
                cached |= {_cell_key(r): r for r in committed["runs"]}
    runs = []
    for cell in progress_bar(cells, desc=command, unit="run"):
        task, backbone, method, seed, lr, length = cell
        key = (task, backbone, method, seed, lr, length if method.startswith(("p_", "prompt")) else None)
        runs.append(dict(cached[key]) if key in cached else
                    run_ptv2_cell(task, backbone, method, seed, lr=lr, num_virtual_tokens=length, progress=False))
    results = {"recipe": _ner_recipe(), "threads": threads, "seconds": round(time.perf_counter() - started), "runs": runs}
    name = {"ner-sweep": "ner_lr_sweep", "ner": "ner", "ptv2-extra": "p_tuning_v2_extra",
}[command]
    if command == "ner-sweep":
        table = ner_sweep_table(results)
    else:
        title = {"ner": f"NER, entity F1 (validation: 300 sentences, test: 300), mean ± sd over seeds; "
                        f"{recipes.NER_EPOCHS} epochs on {recipes.NER_N_TRAIN} sentences, AdamW, 10% warmup then linear decay.",
                 "ptv2-extra": "P-tuning v2: prompt length on NER (BERT, entity F1, seed 0), at its NER learning rate."}[command]
        table = ptv2_table(results, title)
    write_results(results, name, table, Path(out))
    return 0
