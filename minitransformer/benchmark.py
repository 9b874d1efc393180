"""Every method of the course on the standard recipe, over several seeds: `python -m minitransformer.benchmark`.

    python -m minitransformer.benchmark sentiment --seeds 0 1 2      # mean ± sd per method (~25 min on 2 CPU cores)
    python -m minitransformer.benchmark sweep                        # the learning-rate sweep behind LEARNING_RATES

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
from tqdm.auto import tqdm

from . import recipes
from .training import Experiment, evaluate_accuracy

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@dataclass(frozen=True)
class Method:
    name: str  # the key in LEARNING_RATES and in the results
    label: str  # what the tables print
    prepare: Optional[Callable] = None  # model -> model, choosing what trains; None for the frozen probe


def _lora(model):
    from solutions.lora import LoraConfig, inject_lora

    return inject_lora(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), verbose=False)


def _bitfit(model):
    from solutions.bitfit import apply_bitfit

    return apply_bitfit(model, verbose=False)


def _adapters(model):
    from solutions.adapters import AdapterConfig, inject_adapters

    return inject_adapters(model, AdapterConfig(reduction_factor=16), verbose=False)


METHODS = {m.name: m for m in [
    Method("full", "full fine-tuning", lambda model: model),
    Method("frozen", "frozen probe"),
    Method("lora", "LoRA q,v r=8", _lora),
    Method("bitfit", "BitFit (all biases)", _bitfit),
    Method("adapters", "adapters m=8", _adapters),
]}


def run_one(method: str, seed: int, lr: Optional[float] = None, progress: bool = True) -> dict:
    """One (method, seed) cell of the benchmark on the standard sentiment setup, as a JSON-able dict."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {list(METHODS)}.")
    spec = METHODS[method]
    setup = recipes.sentiment_setup(seed=seed)
    if spec.prepare is None:
        experiment = recipes.frozen_probe(setup, seed=seed)
        lr = None
    else:
        model = spec.prepare(recipes.fresh_classifier(seed=seed))
        lr = lr if lr is not None else recipes.LEARNING_RATES[method]
        experiment = recipes.train_standard(spec.label, model, setup, method, lr=lr, track_curve=True,
                                            progress=progress)
    return _record(method, seed, lr, experiment, evaluate_accuracy(experiment.model, setup.test_loader))


def _record(method: str, seed: int, lr: Optional[float], e: Experiment, test_score: float) -> dict:
    return {"method": method, "label": METHODS[method].label, "seed": seed, "lr": lr,
            "validation": round(e.score, 4), "test": round(test_score, 4), "curve": [round(s, 4) for s in e.curve],
            "train_accuracy": None if e.train_accuracy is None else round(e.train_accuracy, 4),
            "majority": round(e.majority, 4), "on_plateau": e.on_plateau, "trainable": e.trainable, "total": e.total,
            "seconds": round(e.seconds, 1)}


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


# The sweep's grid: three learning rates a factor ~3 apart around each method's usual value.
SWEEP_GRID = {"full": [3e-4, 1e-3, 3e-3], "lora": [1e-3, 3e-3, 1e-2], "bitfit": [3e-3, 1e-2, 3e-2],
              "adapters": [1e-3, 3e-3, 1e-2]}


def _run_cell(args: tuple) -> dict:
    method, seed, lr, threads = args
    torch.set_num_threads(threads)
    return run_one(method, seed, lr=lr, progress=False)


def markdown_table(results: dict) -> str:
    """The results as a markdown table, printed by code (README and lessons embed it, never retyped)."""
    seeds = sorted({r["seed"] for r in results["runs"]})
    lines = [f"Sentiment, validation accuracy (500 reviews), mean ± sd over seeds {seeds}; "
             f"recipe: {results['recipe']['epochs']} epochs, AdamW, {results['recipe']['warmup_ratio']:.0%} warmup then "
             f"{results['recipe']['schedule']} decay.", "",
             "| method | trainable | accuracy | ÷ full FT | test accuracy | lr |", "|---|---:|---:|---:|---:|---:|"]
    test = summarise(results["runs"], "test")
    for method, s in summarise(results["runs"]).items():
        lr = results["recipe"]["learning_rates"].get(method)
        lines.append(f"| {s['label']} | {100 * s['trainable_share']:.3f}% | {s['mean']:.3f} ± {s['sd']:.3f} | "
                     f"{s.get('vs_full', float('nan')):.3f} | {test[method]['mean']:.3f} ± {test[method]['sd']:.3f} | "
                     f"{'L-BFGS probe' if lr is None else f'{lr:g}'} |")
    return "\n".join(lines) + "\n"


def sweep_table(results: dict) -> str:
    lines = [f"Learning-rate sweep, seed {results['seed']}, {results['recipe']['epochs']} epochs "
             f"(validation accuracy; the best per method is in bold and goes into recipes.LEARNING_RATES).", "",
             "| method | lr | validation | train accuracy | plateau? |", "|---|---:|---:|---:|---|"]
    best = {}
    for run in results["runs"]:
        if run["method"] not in best or run["validation"] > best[run["method"]]["validation"]:
            best[run["method"]] = run
    for run in results["runs"]:
        score = f"{run['validation']:.3f}"
        score = f"**{score}**" if best[run["method"]] is run else score
        lines.append(f"| {run['label']} | {run['lr']:g} | {score} | {run['train_accuracy']:.3f} | "
                     f"{'yes' if run['on_plateau'] else 'no'} |")
    return "\n".join(lines) + "\n"


def load_results(name: str = "sentiment", directory: Path = RESULTS_DIR) -> dict:
    """The committed results of `python -m minitransformer.benchmark NAME`."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}; run `python -m minitransformer.benchmark {name}`.")
    return json.loads(path.read_text())


def _recipe() -> dict:
    return {"backbone": recipes.BACKBONE, "n_train": recipes.N_TRAIN, "epochs": recipes.EPOCHS,
            "batch_size": recipes.BATCH_SIZE, "warmup_ratio": recipes.WARMUP_RATIO, "schedule": recipes.SCHEDULE,
            "learning_rates": {m: recipes.LEARNING_RATES.get(m) for m in METHODS}}


def _write(results: dict, name: str, table: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", table)):
        tmp = out / f".{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{name}{suffix}")
    print(table)
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitransformer.benchmark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("sentiment", help="every method over several seeds")
    bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bench.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    sweep = sub.add_parser("sweep", help="the learning-rate sweep, one seed")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--methods", nargs="+", default=["full", "lora", "bitfit", "adapters"],
                       choices=[m for m in METHODS if m != "frozen"])
    sweep.add_argument("--lrs", type=float, nargs="+", help="one grid for every method (default: SWEEP_GRID)")
    for p in (bench, sweep):
        p.add_argument("--out", type=Path, default=RESULTS_DIR)
        p.add_argument("--threads", type=int, default=1, help="torch threads per run; results are reproducible per count")
        p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one process each)")
    args = parser.parse_args(argv)
    if args.command == "sentiment":
        cells = [(m, s, None, args.threads) for m in args.methods for s in args.seeds]
    else:
        cells = [(m, args.seed, lr, args.threads) for m in args.methods for lr in (args.lrs or SWEEP_GRID[m])]
    started = time.perf_counter()
    print(f"{len(cells)} runs, {args.jobs} at a time: about {len(cells) * 75 // args.jobs // 60 + 1} minutes on 2 CPU cores")
    with tqdm(total=len(cells), desc=args.command, unit="run") as bar:
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
        results["summary"] = summarise(runs)
        _write(results, "sentiment", markdown_table(results), args.out)
    else:
        results["seed"] = args.seed
        _write(results, "lr_sweep", sweep_table(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
