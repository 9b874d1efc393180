"""Every method of the course on the standard recipe, over several seeds: `python -m minitransformer.benchmark`.

    python -m minitransformer.benchmark sentiment --seeds 0 1 2      # mean ± sd per method (~25 min on 2 CPU cores)
    python -m minitransformer.benchmark ablations                    # the chapters' ablations, seed 0 (~7 min)
    python -m minitransformer.benchmark sweep                        # the learning-rate sweep behind LEARNING_RATES
    python -m minitransformer.benchmark readme                       # README's findings table from the results
    python -m minitransformer.benchmark data_to_text                 # chapter 8: prefix tuning vs full FT and LoRA
    python -m minitransformer.benchmark p_tuning                     # chapter 7: P-tuning on the probe, 3 seeds
    python -m minitransformer.benchmark p_tuning_sweep               # chapter 7: its learning-rate sweep
    python -m minitransformer.benchmark comparison                   # chapter 10: every method on every task

Each writes a JSON (every run, with its validation curve) and a markdown table into
`benchmarks/`. The lessons load the committed results; `tests/test_benchmark.py` re-runs one
(method, seed) cell and checks it against them. Runs are deterministic for a given machine
and thread count (`--threads`, default 1).

The method implementations are the course's reference solutions (`solutions/`, generated
from the lessons), applied with the configurations each chapter teaches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from . import recipes
from .training import Experiment, evaluate_accuracy, progress_bar

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@dataclass(frozen=True)
class Method:
    name: str  # the key in the results
    label: str  # what the tables print
    prepare: Optional[Callable] = None  # model -> model, choosing what trains; None for the frozen probe
    family: str = ""  # the LEARNING_RATES key (default: name)
    backbone: str = recipes.BACKBONE  # the pretrained checkpoint it adapts

    @property
    def lr_key(self) -> str:
        return self.family or self.name


def _lora(r: int = 8, targets: tuple = ("q_proj", "v_proj")):
    def prepare(model):
        from solutions.lora import LoraConfig, inject_lora

        return inject_lora(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets)), verbose=False)

    return prepare


def _bitfit(subsets: tuple = ("all",)):
    def prepare(model):
        from solutions.bitfit import apply_bitfit

        return apply_bitfit(model, list(subsets), verbose=False)

    return prepare


def _adapters(bottleneck_size: int = 8):
    def prepare(model):
        from solutions.adapters import AdapterConfig, inject_adapters

        return inject_adapters(model, AdapterConfig(bottleneck_size=bottleneck_size), verbose=False)

    return prepare


# The main configuration of every method: the chapters' headline runs.
METHODS = {m.name: m for m in [
    Method("full", "full fine-tuning", lambda model: model),
    Method("frozen", "frozen probe"),
    Method("lora", "LoRA q,v r=8", _lora()),
    Method("bitfit", "BitFit (all biases)", _bitfit()),
    Method("adapters", "adapters m=8", _adapters()),
]}

# The chapters' ablations, at their family's learning rate (seed 0).
ABLATIONS = {m.name: m for m in [
    Method("lora_r1", "LoRA q,v r=1", _lora(1), "lora"),
    Method("lora_r4", "LoRA q,v r=4", _lora(4), "lora"),
    Method("lora_r16", "LoRA q,v r=16", _lora(16), "lora"),
    Method("lora_q_r8", "LoRA q r=8", _lora(8, ("q_proj",)), "lora"),
    Method("lora_qkvo_r2", "LoRA q,k,v,o r=2", _lora(2, ("q_proj", "k_proj", "v_proj", "out_proj")), "lora"),
    Method("bitfit_qi", "BitFit query+intermediate", _bitfit(("query", "intermediate")), "bitfit"),
    Method("adapters_m2", "adapters m=2", _adapters(2), "adapters"),
    Method("adapters_m32", "adapters m=32", _adapters(32), "adapters"),
    Method("full_bert", "full fine-tuning, BERT-mode backbone", lambda model: model, "full", backbone="bert"),
]}
ALL_METHODS = {**METHODS, **ABLATIONS}


def run_one(method: str, seed: int, lr: Optional[float] = None, progress: bool = True) -> dict:
    """One (method, seed) cell of the benchmark on the standard sentiment setup, as a JSON-able dict."""
    if method not in ALL_METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {list(ALL_METHODS)}.")
    spec = ALL_METHODS[method]
    setup = recipes.sentiment_setup(seed=seed, backbone=spec.backbone)
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


def _best_per_method(runs: list[dict]) -> dict[str, dict]:
    """Per method, its run with the best validation score (the first of equals)."""
    best: dict[str, dict] = {}
    for run in runs:
        if run["method"] not in best or run["validation"] > best[run["method"]]["validation"]:
            best[run["method"]] = run
    return best


def sweep_choice(runs: list[dict]) -> dict[str, dict]:
    """Per method, the sweep's choice: the best validation score among its runs at the method's own budget."""
    return _best_per_method([r for r in runs if run_epochs(r) == recipes.epochs_for(r["method"])])


def sweep_table(results: dict) -> str:
    from .training import still_rising

    lines = [f"Learning-rate sweep, seed {results['seed']} (validation accuracy). Per method, the best run at the "
             f"method's own budget (recipes.epochs_for: {results['recipe']['epochs']} epochs, "
             + ", ".join(f"{m} {e}" for m, e in results["recipe"].get("method_epochs", {}).items())
             + ") is in bold and goes into recipes.LEARNING_RATES; the other budget's rows are the evidence that "
             "set the budget.", "",
             "| method | epochs | lr | validation | train accuracy | plateau? | curve still rising? |",
             "|---|---:|---:|---:|---:|---|---|"]
    best = sweep_choice(results["runs"])
    for run in results["runs"]:
        score = f"{run['validation']:.3f}"
        score = f"**{score}**" if best.get(run["method"]) is run else score
        lines.append(f"| {run['label']} | {run_epochs(run)} | {run['lr']:g} | {score} | {run['train_accuracy']:.3f} | "
                     f"{'yes' if run['on_plateau'] else 'no'} | {'yes' if still_rising(run['curve']) else 'no'} |")
    return "\n".join(lines) + "\n"


def load_results(name: str = "sentiment", directory: Path = RESULTS_DIR) -> dict:
    """The committed results of `python -m minitransformer.benchmark NAME`."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}; run `python -m minitransformer.benchmark {name}`.")
    return json.loads(path.read_text())


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
                   f"run `python -m minitransformer.benchmark sentiment` and `... ablations`.")


# ============================================================================= P-tuning v2 chapter (issue 12)
# NER (BERT and GPT backbones) and the P-tuning v2 runs on sentiment. Kept in one block:
#
#     python -m minitransformer.benchmark ner-sweep      # lr sweep, NER, BERT, seed 0 -> benchmarks/ner_lr_sweep.*
#     python -m minitransformer.benchmark ner            # methods x seeds x backbones -> benchmarks/ner.*
#     python -m minitransformer.benchmark ptv2-extra     # prompt length on NER -> benchmarks/p_tuning_v2_extra.*
# P-tuning v2 on sentiment, with its own learning-rate sweep, is run by `benchmark comparison` (chapter 10).
#
# A cell is (task, backbone, method, seed, lr, num_virtual_tokens). `ner` reuses a cell of the sweep file when it is
# the same cell under the same recipe (the runs are deterministic), instead of training it again.


def _ptv2(**kwargs):
    def prepare(model):
        from solutions.p_tuning_v2 import PTuningV2Config, inject_p_tuning_v2

        return inject_p_tuning_v2(model, PTuningV2Config(**kwargs), verbose=False)

    return prepare


def _frozen_head(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


PTV2_LENGTH = 16  # the chapter's default num_virtual_tokens
NER_METHODS = {m.name: m for m in [
    Method("full", "full fine-tuning", lambda model: model),
    Method("frozen", "frozen + head", _frozen_head),
    Method("p_tuning_v2", "P-tuning v2 (deep prompts)", _ptv2(num_virtual_tokens=PTV2_LENGTH)),
    Method("p_tuning_v2_mlp", "P-tuning v2 + MLP reparam.",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prefix_projection=True, encoder_hidden_size=128)),
    Method("prompt_tuning", "prompt tuning (input only)",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prompt_depth="input", prompt_tuning_init="SAMPLE_VOCAB")),
    Method("p_tuning", "P-tuning (input, LSTM encoder)",
           _ptv2(num_virtual_tokens=PTV2_LENGTH, prompt_depth="input", encoder_reparameterization_type="LSTM",
                 encoder_hidden_size=128)),
    # Chapters 3-5's methods on NER (the comparison chapter), in the configurations those chapters teach.
    Method("lora", "LoRA q,v r=8", _lora()),
    Method("bitfit", "BitFit (all biases)", _bitfit()),
    Method("adapters", "adapters m=8", _adapters()),
]}
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
    from .training import evaluate_entity_f1

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
    best = _best_per_method(results["runs"])
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
                   "`python -m minitransformer.benchmark ner` and `... ptv2-extra`.")


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
    _write(results, name, table, Path(out))
    return 0
# ============================================================================= end of the P-tuning v2 block


README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- benchmark:sentiment -->", "<!-- /benchmark:sentiment -->"


def fill_readme_section(readme_text: str, start: str, end: str, body: str) -> str:
    """`readme_text` with the text between the markers `start` and `end` replaced by `body`."""
    if start not in readme_text or end not in readme_text:
        raise ValueError(f"README has no {start} ... {end} section to fill.")
    head, rest = readme_text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def readme_with_results(readme_text: str, results: dict) -> str:
    """README's findings table replaced by the one `markdown_table` prints from the committed results."""
    return fill_readme_section(readme_text, README_START, README_END, markdown_table(results))


def _recipe() -> dict:
    return {"backbone": recipes.BACKBONE, "n_train": recipes.N_TRAIN, "epochs": recipes.EPOCHS,
            "method_epochs": dict(recipes.METHOD_EPOCHS), "batch_size": recipes.BATCH_SIZE,
            "warmup_ratio": recipes.WARMUP_RATIO, "schedule": recipes.SCHEDULE,
            "dropout": recipes.DROPOUT,
            "learning_rates": dict(recipes.LEARNING_RATES)}


def _write(results: dict, name: str, table: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", table)):
        tmp = out / f".{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{name}{suffix}")
    print(table)
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")


# ============================================================================= prompt tuning (chapter 6)
# Everything of `python -m minitransformer.benchmark prompt_tuning` / `prompt_tuning_sweep` is in this block.
#
#     python -m minitransformer.benchmark prompt_tuning_sweep   # the lr sweep (4 runs, d=128): ~15 min
#     python -m minitransformer.benchmark prompt_tuning         # init, length, scale, a 3x budget (16 runs): ~50 min
#
# (CPU time at 1 thread; an idle 2-core laptop needs about that in wall time, a busy one several times more).
# Prompt tuning reads the class from the frozen LM head (a verbaliser), so it needs no task head; the runs use the sentiment setup, seeds and schedule of the
# standard recipe, with the learning rate and number of epochs from the recorded sweep below.

PT_LADDER = ("gpt_d16", "gpt_d32", "gpt")  # GPT-mode backbones of growing width (d = 16, 32, 128), one tokenizer
PT_VERBALIZER = [" bad", " good"]  # label words of classes 0 and 1; each one token
PT_INIT_TEXT = " bad good"  # "class-label" init (TEXT): the label words, repeated to fill the prompt
# (lr, epochs): three lrs on the standard recipe's budget
PT_SWEEP = tuple((lr, recipes.EPOCHS) for lr in (0.03, 0.1, 0.3, 1.0))
PT_LR = 0.3  # the sweep's choice (pt_sweep_best, benchmarks/prompt_tuning_sweep.md), checked by a test
PT_EPOCHS = recipes.EPOCHS
PT_MAX_PROMPT = 32  # the context left: max_seq_len 128 - inputs truncated to 96 tokens


@dataclass(frozen=True)
class PromptTuningRun:
    name: str
    backbone: str = "gpt"
    method: str = "prompt_tuning"  # or "full" (full fine-tuning of the same backbone, for the scale ratio)
    num_virtual_tokens: int = 20
    init: str = "TEXT"
    seed: int = 0
    epochs: Optional[int] = None  # None: PT_EPOCHS (full fine-tuning: the standard recipe's)
    lr: Optional[float] = None  # None: PT_LR (full fine-tuning: the standard recipe's)


def _pt_runs() -> list[PromptTuningRun]:
    # The d=128, P=20, label-init run is the sweep's cell at (PT_LR, PT_EPOCHS): a d=128 run takes ~5 CPU-min, so
    # the init and length comparisons run on the narrower backbones. Full fine-tuning of d=128 is in sentiment.json.
    runs = []
    for backbone in ("gpt_d16", "gpt_d32"):
        runs += [PromptTuningRun(f"{backbone}_full", backbone=backbone, method="full"),
                 *(PromptTuningRun(f"{backbone}_{init.lower()}", backbone=backbone, init=init)
                   for init in ("TEXT", "SAMPLE_VOCAB", "RANDOM"))]
    runs += [PromptTuningRun(f"gpt_d32_text_p{p}", backbone="gpt_d32", num_virtual_tokens=p) for p in (1, 5, PT_MAX_PROMPT)]
    # Converged or not: the d=128 sweep's curves still rise at PT_EPOCHS, so the label-init run of every size of the
    # ladder also trains three times as long.
    runs += [PromptTuningRun(f"{b}_text_3x_epochs", backbone=b, epochs=3 * PT_EPOCHS) for b in PT_LADDER]
    # The init comparison where prompt tuning trains: d=128 at the longer budget (the small models stay on the plateau).
    runs += [PromptTuningRun(f"gpt_{init.lower()}_3x_epochs", backbone="gpt", init=init, epochs=3 * PT_EPOCHS)
             for init in ("SAMPLE_VOCAB", "RANDOM")]
    # The length comparison where prompt tuning trains: d=128 at the longer budget (P = 20 is gpt_text_3x_epochs).
    runs += [PromptTuningRun(f"gpt_text_p{p}_3x_epochs", backbone="gpt", num_virtual_tokens=p, epochs=3 * PT_EPOCHS)
             for p in (1, 5, PT_MAX_PROMPT)]
    # The small backbones stay on the plateau at PT_LR (the d=128 sweep's choice): their own sweep over the rest of
    # PT_SWEEP's grid, at the longer budget, before the ladder calls them weak.
    runs += [PromptTuningRun(f"{b}_text_3x_epochs_lr{lr:g}", backbone=b, epochs=3 * PT_EPOCHS, lr=lr)
             for b in PT_LADDER[:2] for lr, _ in PT_SWEEP if lr != PT_LR]
    return runs


PT_RUNS = {r.name: r for r in _pt_runs()}


def prompt_tuning_config(run: PromptTuningRun):
    from solutions.prompt_tuning import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=run.num_virtual_tokens, prompt_tuning_init=run.init,
                              prompt_tuning_init_text=PT_INIT_TEXT if run.init == "TEXT" else None,
                              verbalizer=list(PT_VERBALIZER), init_seed=run.seed)


def run_prompt_tuning(run: PromptTuningRun, lr: Optional[float] = None, epochs: Optional[int] = None,
                      progress: bool = True) -> tuple[dict, Optional[torch.Tensor]]:
    """One run on the sentiment setup: (its record, the trained (P, d) prompt or None for full fine-tuning)."""
    from .training import fit_and_evaluate

    setup = recipes.sentiment_setup(seed=run.seed)  # the ladder shares the shipped tokenizer, so the same loaders
    if run.method == "full":
        model = recipes.fresh_classifier(run.backbone, seed=run.seed)
        lr, epochs = recipes.LEARNING_RATES["full"], recipes.EPOCHS
    else:
        from solutions.prompt_tuning import PromptTuningClassifier

        backbone, tokenizer = recipes.fresh_backbone(run.backbone, seed=run.seed)  # the recipe's dropout
        model = PromptTuningClassifier(backbone, tokenizer, prompt_tuning_config(run))
        lr, epochs = lr or run.lr or PT_LR, epochs or run.epochs or PT_EPOCHS
    e = fit_and_evaluate(run.name, model, setup.train_loader, setup.val_loader, epochs=epochs, lr=lr,
                         warmup_ratio=recipes.WARMUP_RATIO, schedule=recipes.SCHEDULE, track_curve=True,
                         progress=progress)
    record = {"name": run.name, **{k: v for k, v in vars(run).items() if k not in ("name", "epochs")}, "lr": lr,
              "epochs": epochs,
              "validation": round(e.score, 4), "test": round(evaluate_accuracy(e.model, setup.test_loader), 4),
              "curve": [round(s, 4) for s in e.curve], "train_accuracy": round(e.train_accuracy, 4),
              "majority": round(e.majority, 4), "on_plateau": e.on_plateau, "trainable": e.trainable,
              "total": e.total, "backbone_parameters": sum(p.numel() for p in e.model.backbone.parameters()),
              "seconds": round(e.seconds, 1), "losses": [round(x, 4) for x in e.losses]}
    prompt = None if run.method == "full" else e.model.soft_prompt.weight.detach().clone()
    return record, prompt


def _pt_recipe() -> dict:
    return {"n_train": recipes.N_TRAIN, "batch_size": recipes.BATCH_SIZE, "warmup_ratio": recipes.WARMUP_RATIO,
            "schedule": recipes.SCHEDULE, "lr": PT_LR, "epochs": PT_EPOCHS, "verbalizer": PT_VERBALIZER,
            "init_text": PT_INIT_TEXT, "full_lr": recipes.LEARNING_RATES["full"], "full_epochs": recipes.EPOCHS,
            "dropout": recipes.DROPOUT}


def prompt_tuning_table(results: dict) -> str:
    from .training import still_rising

    lines = [f"Prompt tuning on sentiment (validation accuracy, 500 reviews), seed 0. Each row shows its epochs and "
             f"learning rate (by default {PT_EPOCHS} epochs at lr {PT_LR:g}; AdamW, {recipes.WARMUP_RATIO:.0%} warmup, "
             f"linear decay); verbaliser {PT_VERBALIZER}. Full fine-tuning: the standard recipe. The runs on file took "
             f"{results['seconds'] / 60:.0f} min of wall time in all, summed over the commands that produced them "
             f"({results['threads']} thread per run).",
             "",
             "| run | backbone | method | P | init | epochs | lr | trainable | validation | test | train accuracy "
             "| plateau? | curve still rising? |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results["runs"]:
        full = r["method"] == "full"
        lines.append(f"| {r['name']} | {r['backbone']} | {r['method']} | {'' if full else r['num_virtual_tokens']} | "
                     f"{'' if full else r['init']} | {r['epochs']} | {r['lr']:g} | {r['trainable']:,} | {r['validation']:.3f} | "
                     f"{r['test']:.3f} | {r['train_accuracy']:.3f} | {'yes' if r['on_plateau'] else 'no'} | "
                     f"{'yes' if still_rising(r['curve']) else 'no'} |")
    return "\n".join(lines) + "\n"


def pt_sweep_best(runs: list[dict]) -> dict:
    """The sweep's choice: the best validation score among runs that left the one-class plateau; if every run stayed
    on it (validation scores are then noise around the majority share), the lowest training loss over the last epoch."""
    trained = [r for r in runs if not r["on_plateau"]]
    if trained:
        return max(trained, key=lambda r: r["validation"])
    return min(runs, key=lambda r: statistics.fmean(r["losses"][-(-recipes.N_TRAIN // recipes.BATCH_SIZE):]))


def prompt_tuning_sweep_table(results: dict) -> str:
    best = pt_sweep_best(results["runs"])
    lines = [f"Prompt-tuning learning-rate sweep: d=128 backbone, P=20, TEXT init, seed 0 (validation accuracy; the "
             f"choice, in bold, becomes PT_LR: the best run off the one-class plateau, or, if every run is on it, the "
             f"lowest last-epoch training loss). Total runtime {results['seconds'] / 60:.0f} min of wall time "
             f"({results['threads']} thread, on a shared 2-core machine; about a third of that on an idle one).", "",
             "| lr | epochs | validation | train accuracy | last-epoch train loss | plateau? |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in results["runs"]:
        score = f"**{r['validation']:.3f}**" if r is best else f"{r['validation']:.3f}"
        loss = statistics.fmean(r["losses"][-(-recipes.N_TRAIN // recipes.BATCH_SIZE):])
        lines.append(f"| {r['lr']:g} | {r['epochs']} | {score} | {r['train_accuracy']:.3f} | {loss:.4f} | "
                     f"{'yes' if r['on_plateau'] else 'no'} |")
    return "\n".join(lines) + "\n"


def load_prompts(name: str = "prompt_tuning", directory: Path = RESULTS_DIR) -> dict[str, torch.Tensor]:
    """The trained (P, d) prompts of a committed run (`prompt_tuning` or `prompt_tuning_sweep`), by run name."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / f"{name}_prompts.safetensors"))


def _prompt_tuning_command(args) -> int:
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.command == "prompt_tuning_sweep":
        grid = [(lr, PT_EPOCHS) for lr in args.lrs] if args.lrs else list(PT_SWEEP)
        runs, prompts, seconds = [], {}, 0
        path = args.out / "prompt_tuning_sweep.json"
        if args.lrs and path.exists():  # add cells to the committed sweep, if it ran on the same recipe
            old = json.loads(path.read_text())
            if _pt_recipe() | {"lr": None} == old.get("recipe", {}) | {"lr": None}:
                old_prompts = load_prompts("prompt_tuning_sweep", args.out)
                runs = [r for r in old["runs"] if (r["lr"], r["epochs"]) not in grid]
                prompts = {f"lr{r['lr']:g}_ep{r['epochs']}": old_prompts[f"lr{r['lr']:g}_ep{r['epochs']}"] for r in runs}
                seconds = old["seconds"]
        for lr, ep in progress_bar(grid, desc="prompt tuning sweep", unit="run"):
            record, prompts[f"lr{lr:g}_ep{ep}"] = run_prompt_tuning(PromptTuningRun(f"sweep_lr{lr:g}_ep{ep}"), lr=lr,
                                                                    epochs=ep)
            runs.append(record)
        runs.sort(key=lambda r: (r["lr"], r["epochs"]))
        results = {"recipe": _pt_recipe(), "threads": args.threads,
                   "seconds": seconds + round(time.perf_counter() - started), "runs": runs}
        args.out.mkdir(parents=True, exist_ok=True)
        save_file(prompts, str(args.out / "prompt_tuning_sweep_prompts.safetensors"))
        _write(results, "prompt_tuning_sweep", prompt_tuning_sweep_table(results), args.out)
        return 0
    if args.combine:  # the results of several `--runs ... --out DIR` invocations (run in parallel), in PT_RUNS order
        parts = [load_results("prompt_tuning", d) for d in args.combine]
        by_name = {r["name"]: r for part in parts for r in part["runs"]}
        prompts = {k: v for d in args.combine for k, v in load_prompts("prompt_tuning", d).items()}
        missing = [n for n in PT_RUNS if n not in by_name]
        if missing or any(p["recipe"] != _pt_recipe() for p in parts):
            raise SystemExit(f"cannot combine: runs missing {missing}, or a part ran on another recipe")
        runs, seconds = [by_name[n] for n in PT_RUNS], sum(p["seconds"] for p in parts)
    else:
        runs, prompts = [], {}
        for name in progress_bar(args.runs or list(PT_RUNS), desc="prompt tuning", unit="run"):
            record, prompt = run_prompt_tuning(PT_RUNS[name])
            runs.append(record)
            if prompt is not None:
                prompts[name] = prompt.contiguous()
        seconds = round(time.perf_counter() - started)
    results = {"recipe": _pt_recipe(), "threads": args.threads, "seconds": seconds, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(prompts, str(args.out / "prompt_tuning_prompts.safetensors"))
    _write(results, "prompt_tuning", prompt_tuning_table(results), args.out)
    return 0


def _add_prompt_tuning_parsers(sub) -> None:
    pt = sub.add_parser("prompt_tuning", help="chapter 6: init, length, budget and scale runs (16 runs, ~50 CPU-min)")
    pt.add_argument("--runs", nargs="+", choices=list(PT_RUNS), help="a subset of the runs (default: all)")
    pt.add_argument("--combine", nargs="+", type=Path, metavar="DIR",
                    help="merge the results of several --runs subsets (written with --out DIR) into --out")
    sweep = sub.add_parser("prompt_tuning_sweep", help="chapter 6: the lr sweep on d=128 (4 runs, ~15 CPU-min)")
    sweep.add_argument("--lrs", type=float, nargs="+", help="run only these learning rates and merge them into the "
                       "committed sweep (same recipe)")
    for p in (pt, sweep):
        p.add_argument("--out", type=Path, default=RESULTS_DIR)
        p.add_argument("--threads", type=int, default=1, help="torch threads; results are reproducible per count")

# ============================================================================= end of the prompt-tuning block


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ---- data-to-text (chapter 8, prefix tuning): its own module and options --------------------------------
    if argv[:1] == ["data_to_text"]:
        from . import benchmark_data_to_text

        return benchmark_data_to_text.main(argv[1:])
    if argv[:1] == ["comparison"]:  # chapter 10: every method on every task
        from . import benchmark_comparison

        return benchmark_comparison.main(argv[1:])
    if argv[:1] and argv[0] in ("p_tuning", "p_tuning_sweep"):  # chapter 7's subcommands (see the P-tuning block)
        return p_tuning_main(argv)
    parser = argparse.ArgumentParser(prog="python -m minitransformer.benchmark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("sentiment", help="every method over several seeds")
    bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bench.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    sub.add_parser("readme", help="rewrite README's findings table from the committed results")
    ablate = sub.add_parser("ablations", help="the chapters' ablations, one seed")
    ablate.add_argument("--seed", type=int, default=0)
    ablate.add_argument("--methods", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    sweep = sub.add_parser("sweep", help="the learning-rate sweep, one seed")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--methods", nargs="+", default=["full", "lora", "bitfit", "adapters"],
                       choices=[m for m in METHODS if m != "frozen"])
    sweep.add_argument("--lrs", type=float, nargs="+", help="one grid for every method (default: SWEEP_GRID)")
    for p in (bench, ablate, sweep):
        p.add_argument("--out", type=Path, default=RESULTS_DIR)
        p.add_argument("--threads", type=int, default=1, help="torch threads per run; results are reproducible per count")
        p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one process each)")
    _add_prompt_tuning_parsers(sub)  # chapter 6
    for command in ("ner-sweep", "ner", "ptv2-extra"):  # the P-tuning v2 chapter's runs (see its block above)
        ptv2 = sub.add_parser(command, help=f"P-tuning v2 chapter: {command}")
        ptv2.add_argument("--out", type=Path, default=RESULTS_DIR)
        ptv2.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command.startswith("prompt_tuning"):
        return _prompt_tuning_command(args)
    if args.command in ("ner-sweep", "ner", "ptv2-extra"):
        return ptv2_main(args.command, args.out, args.threads)
    if args.command == "readme":
        from . import benchmark_comparison

        text = readme_with_results(README.read_text(), load_results("sentiment"))
        README.write_text(benchmark_comparison.readme_with_results(text, benchmark_comparison.load_results()))
        print(f"updated {README}")
        return 0
    if args.command == "sentiment":
        cells = [(m, s, None, args.threads) for m in args.methods for s in args.seeds]
    elif args.command == "ablations":
        cells = [(m, args.seed, None, args.threads) for m in args.methods]
    else:
        cells = [(m, args.seed, lr, args.threads) for m in args.methods for lr in (args.lrs or SWEEP_GRID[m])]
    started = time.perf_counter()
    epochs = sum(recipes.epochs_for(ALL_METHODS[m].lr_key) for m, *_ in cells if ALL_METHODS[m].prepare is not None)
    # about 5 s per epoch and run on one thread of this course's reference laptop
    print(f"{len(cells)} runs, {args.jobs} at a time: about {epochs * 5 // args.jobs // 60 + 1} minutes on 2 CPU cores")
    with progress_bar(total=len(cells), desc=args.command, unit="run") as bar:
        if args.jobs == 1:
            runs = []
            for cell in cells:
                runs.append(_run_cell(cell))
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_run_cell, cell) for cell in cells]
                for future in futures:  # in submission order, so the JSON's order is fixed
                    future.result()
                    bar.update(1)
                runs = [f.result() for f in futures]
    results = {"recipe": _recipe(), "threads": args.threads, "seconds": round(time.perf_counter() - started), "runs": runs}
    if args.command == "sentiment":
        results["runs"] = runs = _merged(runs, args.out / "sentiment.json", None, lambda r: (r["method"], r["seed"]),
                                         list(METHODS))
        results["summary"] = summarise(runs)
        _write(results, "sentiment", markdown_table(results), args.out)
    elif args.command == "ablations":
        results["seed"] = args.seed
        results["runs"] = _merged(runs, args.out / "ablations.json", args.seed, lambda r: r["method"], list(ABLATIONS))
        _write(results, "ablations", ablation_table(results), args.out)
    else:
        results["seed"] = args.seed
        results["runs"] = _merged(runs, args.out / "lr_sweep.json", args.seed,
                                  lambda r: (r["method"], r["lr"], run_epochs(r)), list(SWEEP_GRID), at_standard_lr=False)
        _write(results, "lr_sweep", sweep_table(results), args.out)
    return 0


def _same_recipe(a: dict, b: dict) -> bool:
    """Equal recipes, apart from the learning rates (which the sweep itself decides) and the per-method budgets (each
    run's own budget is its curve's length, checked per cell)."""
    ignore = ("learning_rates", "method_epochs")
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def run_epochs(run: dict) -> Optional[int]:
    """How many epochs a committed run trained (its curve has one point per epoch); None for the frozen probe."""
    return len(run["curve"]) if run.get("curve") else None


def _merged(runs: list[dict], path: Path, seed: Optional[int], key: Callable[[dict], object], order: list[str],
            at_standard_lr: bool = True) -> list[dict]:
    """`runs` plus the committed file's other cells (by `key`), when they used the same recipe and seed.

    So `sweep --methods full --lrs 3e-3` adds one cell to the committed sweep, `ablations --methods full_bert`
    one row to the ablations, and `sentiment --methods full` replaces only full fine-tuning's seeds. With
    `at_standard_lr`, a kept cell must also have run at today's LEARNING_RATES for its method: after the
    sweep changes a rate, that method's old cells are dropped, not mixed in.
    """
    if not path.exists():
        return runs
    old = json.loads(path.read_text())
    if old.get("seed") != seed or not _same_recipe(old["recipe"], _recipe()):
        return runs

    def current(run: dict) -> bool:
        spec = ALL_METHODS.get(run["method"])
        return not at_standard_lr or spec is None or spec.prepare is None or \
            (run["lr"] == recipes.LEARNING_RATES[spec.lr_key] and run_epochs(run) == recipes.epochs_for(spec.lr_key))

    new = {key(r) for r in runs}
    kept = [r for r in old["runs"] if key(r) not in new and current(r)]
    return sorted(kept + runs, key=lambda r: (order.index(r["method"]), run_epochs(r) or 0, r["lr"] or 0, r["seed"]))


# ============================================================================ P-tuning (chapter 7)
# The knowledge probe with one prompt per relation (solutions.p_tuning): hand-written prompts, and P-tuning
# with the LSTM encoder, plain trainable vectors ("NONE") and the LSTM with an anchor word,
# on the GPT and the BERT backbone, over several seeds. `p_tuning_sweep` is the learning-rate sweep behind
# P_TUNING_LR. Kept in one block; chapter 7 loads benchmarks/p_tuning.json and p_tuning_lr_sweep.json.

P_TUNING_CONFIGS = {"LSTM": ("LSTM", False), "NONE": ("NONE", False), "LSTM/anchors": ("LSTM", True)}
P_TUNING_SWEEP_GRID = {"LSTM": [1e-3, 3e-3, 1e-2], "NONE": [3e-3, 1e-2, 3e-2, 1e-1]}


def p_tuning_run(backbone: str, config: str, seed: int, lr: Optional[float] = None, threads: int = 1) -> dict:
    """One P-tuning run on the probe, as a JSON-able dict (no model)."""
    from minitransformer import load_pretrained
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
    parser = argparse.ArgumentParser(prog="python -m minitransformer.benchmark p_tuning|p_tuning_sweep")
    parser.add_argument("command", choices=["p_tuning", "p_tuning_sweep"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbones", nargs="+", default=["gpt", "bert"], choices=["gpt", "bert"])
    parser.add_argument("--configs", nargs="+", default=list(P_TUNING_CONFIGS), choices=list(P_TUNING_CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = "python -m minitransformer.benchmark " + " ".join(argv)
    started = time.perf_counter()
    if args.command == "p_tuning_sweep":
        # GPT's sweep sets P_TUNING_LR; `--backbones bert` writes p_tuning_lr_sweep_bert (BERT's own evidence).
        backbone = args.backbones[0] if args.backbones != ["gpt", "bert"] else "gpt"
        cells = [(c, lr) for c in P_TUNING_SWEEP_GRID for lr in P_TUNING_SWEEP_GRID[c]]
        runs = [p_tuning_run(backbone, c, 0, lr, args.threads) for c, lr in progress_bar(cells, desc="p_tuning_sweep")]
        results = {"command": command, "backbone": backbone, "seed": 0, "threads": args.threads,
                   "dropout": recipes.DROPOUT, "seconds": round(time.perf_counter() - started), "runs": runs}
        name = "p_tuning_lr_sweep" + ("" if backbone == "gpt" else f"_{backbone}")
        _write(results, name, p_tuning_sweep_table(results), args.out)
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

    results = {"command": "python -m minitransformer.benchmark p_tuning", "threads": args.threads,
               "dropout": recipes.DROPOUT,
               "checkpoints": {b: model_card(b)["sha256"] for b in order},
               "discrete": {b: discrete[b] for b in order if b in discrete}, "runs": runs,
               "summary": p_tuning_summary(runs)}
    _write(results, "p_tuning", p_tuning_table(results), args.out)
    return 0
# ============================================================================ end of P-tuning


if __name__ == "__main__":
    sys.exit(main())
