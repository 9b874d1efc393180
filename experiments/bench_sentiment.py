"""The sentiment benchmark of chapters 2-5: every main method over seeds, the ablations and the learning-rate sweep."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Optional

import torch

from minitransformer import recipes
from minitransformer.evaluation import evaluate_accuracy
from minitransformer.training import Experiment

from experiments.methods import ALL_METHODS
from experiments.results_io import README_END, README_START, RESULTS_DIR, fill_readme_section, run_epochs


def run_one(method: str, seed: int, lr: Optional[float] = None, progress: bool = True) -> dict:
    """One (method, seed) cell of the benchmark on the standard sentiment setup, as a JSON-able dict."""
    if method not in ALL_METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {list(ALL_METHODS)}.")
    spec = ALL_METHODS[method]
    setup = recipes.sentiment_setup(seed=seed, backbone=spec.backbone, template=spec.template)
    if spec.prepare is None:
        experiment = recipes.frozen_probe(setup, seed=seed)
        lr = None
    else:
        model = spec.prepare(recipes.fresh_classifier(spec.backbone, seed=seed))
        lr = lr if lr is not None else recipes.LEARNING_RATES[spec.lr_key]
        experiment = recipes.train_standard(spec.label, model, setup, spec.lr_key, lr=lr, track_curve=True,
                                            progress=progress)
    return _record(method, seed, lr, experiment, evaluate_accuracy(experiment.model, setup.test_loader))


def _record(method: str, seed: int, lr: Optional[float], e: Experiment, test_score: float) -> dict:
    return {"method": method, "label": ALL_METHODS[method].label, "seed": seed, "lr": lr,
            "validation": round(e.score, 4), "test": round(test_score, 4), "curve": [round(s, 4) for s in e.curve],
            "train_accuracy": None if e.train_accuracy is None else round(e.train_accuracy, 4),
            "majority": round(e.majority, 4), "on_plateau": e.on_plateau, "trainable": e.trainable, "total": e.total,
            "seconds": round(e.seconds, 1), "memory": e.memory, "losses": [round(x, 4) for x in e.losses]}


def summarise(runs: list[dict], key: str = "validation") -> dict[str, dict]:
    """Per method: mean and sample sd of `key` over seeds, and the ratio of the mean to full fine-tuning's."""
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    summary = {}
    for method, method_runs in by_method.items():
        scores = [r[key] for r in method_runs]
        summary[method] = {"label": method_runs[0]["label"], "n": len(scores), "mean": statistics.fmean(scores),
                           "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                           "trainable_share": method_runs[0]["trainable"] / method_runs[0]["total"],
                           "any_plateau": any(r["on_plateau"] for r in method_runs)}
    if "full" in summary:
        for s in summary.values():
            s["vs_full"] = s["mean"] / summary["full"]["mean"]
    return summary


# The sweep's grid: learning rates a factor ~3 apart around each method's usual value, widened until the
# best one is inside the grid, not at its edge.
SWEEP_GRID = {"full": [1e-4, 3e-4, 1e-3, 3e-3], "lora": [1e-3, 3e-3, 1e-2], "bitfit": [3e-3, 1e-2, 3e-2],
              "adapters": [1e-3, 3e-3, 1e-2, 3e-2]}


def _run_cell(args: tuple) -> dict:
    method, seed, lr, threads = args
    torch.set_num_threads(threads)
    return run_one(method, seed, lr=lr, progress=False)


def markdown_table(results: dict) -> str:
    """The results as a markdown table, printed by code (README and lessons embed it, never retyped)."""
    seeds = sorted({r["seed"] for r in results["runs"]})
    lines = [f"Sentiment, validation accuracy (500 reviews), mean ± sd over seeds {seeds}; "
             f"recipe: {results['recipe']['epochs']} epochs"
             + "".join(f", {ALL_METHODS[m].label if m in ALL_METHODS else m} {e}"
                       for m, e in results["recipe"].get("method_epochs", {}).items())
             + f", AdamW, {results['recipe']['warmup_ratio']:.0%} warmup then "
             f"{results['recipe']['schedule']} decay.", "",
             "| method | trainable | accuracy | ÷ full FT | test accuracy | lr |", "|---|---:|---:|---:|---:|---:|"]
    test = summarise(results["runs"], "test")
    for method, s in summarise(results["runs"]).items():
        lr = results["recipe"]["learning_rates"].get(ALL_METHODS[method].lr_key)
        stuck = " (on the one-class plateau: not trained)" if s["any_plateau"] else ""
        lines.append(f"| {s['label']} | {100 * s['trainable_share']:.3f}% | {s['mean']:.3f} ± {s['sd']:.3f}{stuck} | "
                     f"{s.get('vs_full', float('nan')):.3f} | {test[method]['mean']:.3f} ± {test[method]['sd']:.3f} | "
                     f"{'L-BFGS probe' if lr is None else f'{lr:g}'} |")
    return "\n".join(lines) + "\n"


def ablation_table(results: dict) -> str:
    lines = [f"Ablations, seed {results['seed']}: the standard recipe, each at its method family's budget "
             "(recipes.epochs_for; validation accuracy).", "",
             "| variant | trainable | validation | test | train accuracy | lr | epochs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run in results["runs"]:
        lines.append(f"| {run['label']} | {100 * run['trainable'] / run['total']:.3f}% | {run['validation']:.3f} | "
                     f"{run['test']:.3f} | {run['train_accuracy']:.3f} | {run['lr']:g} | {run_epochs(run)} |")
    return "\n".join(lines) + "\n"


def best_per_method(runs: list[dict]) -> dict[str, dict]:
    """Per method, its run with the best validation score (the first of equals)."""
    best: dict[str, dict] = {}
    for run in runs:
        if run["method"] not in best or run["validation"] > best[run["method"]]["validation"]:
            best[run["method"]] = run
    return best


def sweep_choice(runs: list[dict]) -> dict[str, dict]:
    """Per method, the sweep's choice: the best validation score among its runs at the method's own budget."""
    return best_per_method([r for r in runs if run_epochs(r) == recipes.epochs_for(ALL_METHODS[r["method"]].lr_key)])


def sweep_table(results: dict) -> str:
    from minitransformer.training import still_rising

    lines = [f"Learning-rate sweep, seed {results['seed']} (validation accuracy). Per method, the best run at the "
             f"method's own budget (recipes.epochs_for: {results['recipe']['epochs']} epochs, "
             + ", ".join(f"{m} {e}" for m, e in results["recipe"].get("method_epochs", {}).items())
             + ") is in bold: this first sweep's choice by accuracy alone. recipes.LEARNING_RATES comes from the "
             "protocol's sweep (`python -m experiments sweep sentiment`), which also records the validation loss "
             "and breaks near-ties with it. The other budget's rows are the evidence that set the budget.", "",
             "| method | epochs | lr | validation | train accuracy | plateau? | curve still rising? |",
             "|---|---:|---:|---:|---:|---|---|"]
    best = sweep_choice(results["runs"])
    for run in results["runs"]:
        score = f"{run['validation']:.3f}"
        score = f"**{score}**" if best.get(run["method"]) is run else score
        lines.append(f"| {run['label']} | {run_epochs(run)} | {run['lr']:g} | {score} | {run['train_accuracy']:.3f} | "
                     f"{'yes' if run['on_plateau'] else 'no'} | {'yes' if still_rising(run['curve']) else 'no'} |")
    return "\n".join(lines) + "\n"



def committed_experiment(method: str, seed: int = 0, directory: Path = RESULTS_DIR) -> Experiment:
    """A committed run as an Experiment (no model), for a lesson's tables and plots.

    Looks in the benchmark (`sentiment.json`), then the ablations (`ablations.json`).
    """
    for name in ("sentiment", "ablations"):
        path = Path(directory) / f"{name}.json"
        if not path.exists():
            continue
        for run in json.loads(path.read_text())["runs"]:
            if run["method"] == method and run["seed"] == seed:
                return Experiment(run["label"], run["validation"], run["trainable"], run["total"], run.get("losses", []),
                                  run["seconds"], run.get("memory", {}), None, run["curve"], run["train_accuracy"],
                                  run["majority"])
    raise KeyError(f"No committed run of {method!r} with seed {seed} in {directory}; "
                   f"run `python -m experiments.benchmark sentiment` and `... ablations`.")


def readme_with_results(readme_text: str, results: dict) -> str:
    """README's findings table replaced by the one `markdown_table` prints from the committed results."""
    return fill_readme_section(readme_text, README_START, README_END, markdown_table(results))
