"""Data-to-text benchmark (chapter 8, prefix tuning): `python -m experiments.benchmark data_to_text`.

Full fine-tuning, LoRA and prefix tuning (with its ablations) on the E2E-style task, with the
same data, order, schedule and budget. One command runs, in this order (about 15 CPU-minutes):

    sweep      every method at three learning rates, seed 0, N_TRAIN examples (validation BLEU picks the lr)
    low_data   full fine-tuning and prefix tuning on LOW_DATA_N examples: first their own learning-rate
               sweep (seed 0; the best rate with 400 examples need not be the best with 50), then three
               seeds at its best rate (a different random subset per seed)
    length     prefix tuning with other numbers of virtual tokens (LENGTHS; P = 10 is in the sweep)
    seeds      every method again at its best rate with seeds 1 and 2 (seed 0 is its sweep run), for the
               comparison chapter's mean ± sd

Scores are on the first EVAL_N validation MRs (and test MRs, except in the sweep): greedy
generation is the slow part on a CPU.

Add `--table` to only rewrite the markdown from the committed JSON. It writes
`benchmarks/data_to_text.json` (every run: scores, validation-loss curve, losses) and
`benchmarks/data_to_text.md`; chapter 8 loads them, and `tests/test_benchmark_data_to_text.py`
checks that they are complete and re-runs one cell. The methods are the reference solutions
(`solutions.lora`, `solutions.prefix_tuning`) with the chapters' configurations.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Optional

import torch

from minitransformer.recipes import DROPOUT, fresh_backbone
from minitransformer.data_to_text import data_to_text_loader, evaluate_lm_loss, generate_with, score_texts
from minitransformer.measure import training_state_memory
from minitransformer.training import count_parameters, majority_share, progress_bar, train

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
NAME = "data_to_text"

RECIPE = {
    "backbone": "gpt",
    "n_train": 400,  # of the 1,500 training MRs, one reference each: what 2 CPU cores allow for a 15-run sweep
    "epochs": 5,
    "batch_size": 16,
    "warmup_ratio": 0.1,
    "schedule": "linear",
    "max_len": 108,  # MR + text tokens, so that a 20-token prefix still fits the 128-token context
    "low_data_n": 50,  # a random subset per seed
    "low_data_epochs": 25,
    "low_data_batch_size": 8,
    "num_virtual_tokens": 10,
    "encoder_hidden_size": 128,
    "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
    "val_loss_examples": 100,  # the validation-loss curve uses the first 100 validation MRs
    "eval_n": 100,  # BLEU and SER on the first 100 validation (and test) MRs
    "dropout": DROPOUT,  # the standard recipe's: the backbone's dropout is off while fine-tuning
}

LABELS = {"full": "full fine-tuning", "lora": "LoRA q,v r=8", "prefix": "prefix tuning (MLP)",
          "prefix_no_mlp": "prefix tuning, no MLP", "prompt": "embedding-only prefix (prompt tuning)",
          "bitfit": "BitFit (all biases)", "adapters": "adapters m=8"}
SWEEP = {"full": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "lora": [3e-3, 1e-2, 3e-2], "prefix": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
         "prefix_no_mlp": [1e-2, 3e-2, 1e-1, 3e-1], "prompt": [3e-2, 1e-1, 3e-1, 1.0, 3.0],
         "bitfit": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "adapters": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]}  # the last two: chapter 10
LOW_DATA_SWEEP = {"full": [1e-3, 3e-3, 1e-2], "prefix": [1e-3, 3e-3, 1e-2]}  # seed 0, LOW_DATA_N examples
LOW_DATA_METHODS = tuple(LOW_DATA_SWEEP)
SEEDS = (0, 1, 2)
LENGTHS: tuple[int, ...] = (1, 5, 20)  # prefix lengths besides RECIPE's P = 10, at the sweep's lr, seed 0


def build(method: str, backbone, num_virtual_tokens: int = RECIPE["num_virtual_tokens"]):
    """The model to train for `method` on a fresh `backbone` (its trainable parameters chosen)."""
    if method == "full":
        return backbone
    if method == "lora":
        from solutions.lora import LoraConfig, inject_lora

        return inject_lora(backbone, LoraConfig(**RECIPE["lora"], modules_to_save=[]), verbose=False)
    if method == "bitfit":
        from solutions.bitfit import apply_bitfit

        return apply_bitfit(backbone, ["all"], modules_to_save=[], verbose=False)
    if method == "adapters":
        from solutions.adapters import AdapterConfig, inject_adapters

        return inject_adapters(backbone, AdapterConfig(bottleneck_size=8, modules_to_save=[]), verbose=False)
    from solutions.prefix_tuning import PrefixTuningConfig, PrefixTuningModel

    options = {"prefix": {}, "prefix_no_mlp": {"prefix_projection": False},
               "prompt": {"prefix_projection": False, "embedding_only": True}}
    if method not in options:
        raise ValueError(f"Unknown method {method!r}; choose from {list(LABELS)}.")
    config = PrefixTuningConfig(num_virtual_tokens=num_virtual_tokens,
                                encoder_hidden_size=RECIPE["encoder_hidden_size"], **options[method])
    return PrefixTuningModel(backbone, config)


def stored_parameters(model) -> int:
    """What a task needs at inference: the trainable tensors, or for a prefix only the prefix (P x L*2*d)."""
    if hasattr(model, "get_prefix"):
        return sum(t.numel() for pair in model.get_prefix(1) for t in pair)
    return count_parameters(model)[0]


def run_one(kind: str, method: str, seed: int, lr: float, num_virtual_tokens: int = RECIPE["num_virtual_tokens"],
            progress: bool = False, task=None) -> dict:
    """One training run, scored on validation (and on test, except for the sweep), as a JSON-able dict."""
    from minitransformer.world import load_task

    task = task or load_task("data_to_text")
    low = kind in ("low_data", "low_data_sweep")
    if low:
        train_examples = random.Random(seed).sample(task.train, RECIPE["low_data_n"])
        epochs, batch_size = RECIPE["low_data_epochs"], RECIPE["low_data_batch_size"]
    else:
        train_examples, epochs, batch_size = task.train[:RECIPE["n_train"]], RECIPE["epochs"], RECIPE["batch_size"]
    backbone, tokenizer = fresh_backbone(RECIPE["backbone"], seed)  # seeded, with the standard recipe's dropout
    model = build(method, backbone, num_virtual_tokens)
    train_loader = data_to_text_loader(train_examples, tokenizer, batch_size=batch_size, shuffle=True, seed=seed,
                                       max_len=RECIPE["max_len"])
    val_loader = data_to_text_loader(task.validation[:RECIPE["val_loss_examples"]], tokenizer, batch_size=50,
                                     max_len=RECIPE["max_len"])
    result = train(model, train_loader, epochs=epochs, lr=lr, warmup_ratio=RECIPE["warmup_ratio"],
                   schedule=RECIPE["schedule"], eval_fn=lambda m: evaluate_lm_loss(m, val_loader),
                   desc=f"{method} lr={lr:g} seed={seed}", progress=progress)
    memory = training_state_memory(model, result.optimizer)
    trainable, total = count_parameters(model)
    with torch.no_grad():
        stored = stored_parameters(model.eval())
    record = {"kind": kind, "method": method, "label": LABELS[method], "seed": seed, "lr": lr,
              "n_train": len(train_examples), "epochs": epochs, "num_virtual_tokens": num_virtual_tokens,
              "validation": _scores(model, task.validation[:RECIPE["eval_n"]], tokenizer)}
    if kind not in ("sweep", "low_data_sweep"):
        record["test"] = _scores(model, task.test[:RECIPE["eval_n"]], tokenizer)
    majority = majority_share(train_loader)
    record.update({"curve": [round(x, 4) for x in result.curve], "train_accuracy": round(result.train_accuracy, 4),
                   "majority": round(majority, 4), "on_plateau": result.train_accuracy < majority + 0.05,
                   "trainable": trainable, "total": total, "stored": stored,
                   "seconds": round(result.seconds, 1), "memory": memory,
                   "losses": [round(x, 4) for x in result.losses]})
    record["backbone_total"] = total if method == "full" else total - trainable  # the frozen base model
    return record


def _scores(model, examples, tokenizer) -> dict:
    scores = score_texts(examples, generate_with(model, examples, tokenizer))
    return {"bleu": round(scores["bleu"], 2), "slot_error_rate": round(scores["slot_error_rate"], 4)}


def best_learning_rates(runs: list[dict], kind: str = "sweep") -> dict[str, float]:
    """Per method, the lr with the best validation BLEU among the runs of `kind` ("sweep" or "low_data_sweep")."""
    best: dict[str, dict] = {}
    for run in runs:
        if run["kind"] == kind and (run["method"] not in best
                                       or run["validation"]["bleu"] > best[run["method"]]["validation"]["bleu"]):
            best[run["method"]] = run
    return {method: run["lr"] for method, run in best.items()}


def sweep_cells() -> list[tuple[str, str, int, float, int]]:
    """(kind, method, seed, lr, P) of the two learning-rate sweeps: full data, then low data."""
    P = RECIPE["num_virtual_tokens"]
    return ([("sweep", m, 0, lr, P) for m, grid in SWEEP.items() for lr in grid]
            + [("low_data_sweep", m, 0, lr, P) for m, grid in LOW_DATA_SWEEP.items() for lr in grid])


def cells_after_sweep(learning_rates: dict[str, float],
                      low_data_learning_rates: dict[str, float]) -> list[tuple[str, str, int, float, int]]:
    """(kind, method, seed, lr, P) of every run after the sweeps, at their best learning rates."""
    P = RECIPE["num_virtual_tokens"]
    return ([("low_data", m, s, low_data_learning_rates[m], P) for m in LOW_DATA_METHODS for s in SEEDS]
            + [("length", "prefix", 0, learning_rates["prefix"], p) for p in LENGTHS]
            + [("seeds", m, s, learning_rates[m], P) for m in SWEEP for s in SEEDS[1:]])


def seed_runs(results: dict, method: str) -> list[dict]:
    """The method's runs at its best learning rate over SEEDS: seed 0 is its sweep run (validation only)."""
    return [main_runs(results)[method], *runs_of(results, "seeds", method)]


def runs_of(results: dict, kind: str, method: Optional[str] = None) -> list[dict]:
    return [r for r in results["runs"] if r["kind"] == kind and (method is None or r["method"] == method)]


def main_runs(results: dict) -> dict[str, dict]:
    """Per method, its sweep run at the best learning rate (seed 0, N_TRAIN examples)."""
    lrs = results["learning_rates"]
    return {m: next(r for r in runs_of(results, "sweep", m) if r["lr"] == lrs[m]) for m in SWEEP}


def per_seed(runs: list[dict]) -> str:
    return ", ".join(f"{x['validation']['bleu']:.1f}" for x in runs)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def markdown_table(results: dict) -> str:
    """Every table of the benchmark, printed by code from the runs (the lesson and the tests use it)."""
    r = results["recipe"]
    lines = [f"Data-to-text (E2E-style), GPT backbone. Validation: the first {r['eval_n']} MRs (venues unseen in training), greedy decoding; "
             f"BLEU (higher is better) and slot error rate (SER, lower is better). {r['n_train']} training MRs, "
             f"{r['epochs']} epochs, batch {r['batch_size']}, AdamW, {r['warmup_ratio']:.0%} warmup then {r['schedule']} "
             f"decay; seed 0.", "",
             "### Learning-rate sweep (the best per method in bold)", "",
             "| method | lr | val BLEU | val SER | final val loss | train token accuracy |", "|---|---:|---:|---:|---:|---:|"]
    lrs = results["learning_rates"]
    for run in runs_of(results, "sweep"):
        bold = "**" if run["lr"] == lrs[run["method"]] else ""
        grid = results["sweep_grid"][run["method"]]
        edge = " (edge of the grid)" if bold and run["lr"] in (min(grid), max(grid)) else ""
        lines.append(f"| {run['label']} | {run['lr']:g}{edge} | {bold}{run['validation']['bleu']:.2f}{bold} | "
                     f"{run['validation']['slot_error_rate']:.3f} | {run['curve'][-1]:.3f} | {run['train_accuracy']:.3f} |")
    lines += ["", "### Main comparison (best lr per method)", "",
              "| method | trainable while training | stored per task | val BLEU | val SER |", "|---|---:|---:|---:|---:|"]
    for run in main_runs(results).values():
        lines.append(f"| {run['label']} | {run['trainable']:,} ({100 * run['trainable'] / run['backbone_total']:.2f}%) | "
                     f"{run['stored']:,} ({100 * run['stored'] / run['backbone_total']:.2f}%) | "
                     f"{run['validation']['bleu']:.2f} | {run['validation']['slot_error_rate']:.3f} |")
    low_lrs = results["low_data_learning_rates"]
    lines += ["", f"### Low data: {r['low_data_n']} training MRs, {r['low_data_epochs']} epochs, batch "
              f"{r['low_data_batch_size']}, seeds 0-2 (a different random subset per seed), mean ± sd", "",
              "Each method's learning rate comes from its own low-data sweep (seed 0, validation BLEU, the best in "
              "bold): " + "; ".join(f"{LABELS[m]}: " + ", ".join(
                  (f"**{x['lr']:g}: {x['validation']['bleu']:.1f}**" if x["lr"] == low_lrs[m] else
                   f"{x['lr']:g}: {x['validation']['bleu']:.1f}") for x in runs_of(results, "low_data_sweep", m))
                  for m in LOW_DATA_METHODS) + ".", "",
              "| method | val BLEU | val SER | test BLEU | test SER |", "|---|---:|---:|---:|---:|"]
    for method in LOW_DATA_METHODS:
        runs = runs_of(results, "low_data", method)
        lines.append(f"| {LABELS[method]} | " + " | ".join(
            _mean_sd([x[split][key] for x in runs]) for split in ("validation", "test") for key in ("bleu", "slot_error_rate")) + " |")
    lines += ["", "### Stability: the spread over learning rates (sweep, seed 0) and over seeds (low data)", "",
              "| method | val BLEU at each swept lr | low-data val BLEU per seed |", "|---|---|---|"]
    for method in ("prefix", "prefix_no_mlp", "prompt"):
        swept = ", ".join(f"{x['lr']:g}: {x['validation']['bleu']:.1f}" for x in runs_of(results, "sweep", method))
        seeds = ", ".join(f"{x['validation']['bleu']:.1f}" for x in runs_of(results, "low_data", method)) or "-"
        lines.append(f"| {LABELS[method]} | {swept} | {seeds} |")
    lines += ["", "### Prefix length (prefix tuning with the MLP, seed 0)", "",
              "| P | stored per task | val BLEU | val SER |", "|---:|---:|---:|---:|"]
    by_length = {run["num_virtual_tokens"]: run for run in [main_runs(results)["prefix"], *runs_of(results, "length")]}
    for p, run in sorted(by_length.items()):
        lines.append(f"| {p} | {run['stored']:,} | {run['validation']['bleu']:.2f} | {run['validation']['slot_error_rate']:.3f} |")
    if runs_of(results, "seeds"):
        lines += ["", f"### Every method over seeds {list(SEEDS)} at its best lr (mean ± sd; seed 0 is the sweep run)", "",
                  "| method | lr | val BLEU | val SER | per seed |", "|---|---:|---:|---:|---|"]
        for method in SWEEP:
            runs = seed_runs(results, method)
            lines.append(f"| {LABELS[method]} | {lrs[method]:g} | {_mean_sd([x['validation']['bleu'] for x in runs])} | "
                         f"{_mean_sd([x['validation']['slot_error_rate'] for x in runs])} | "
                         f"{per_seed(runs)} |")
    return "\n".join(lines) + "\n"


def load_results(directory: Path = RESULTS_DIR) -> dict:
    path = Path(directory) / f"{NAME}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}; run `python -m experiments.benchmark {NAME}`.")
    return json.loads(path.read_text())


def _save(results: dict, out: Path, table: Optional[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = [(".json", json.dumps(results, indent=1) + "\n")] + ([(".md", table)] if table else [])
    for suffix, text in files:
        tmp = out / f".{NAME}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{NAME}{suffix}")


def _cell_key(run: dict) -> tuple:
    return run["kind"], run["method"], run["seed"], run["lr"], run["num_virtual_tokens"]


def _committed_cells(out: Path, threads: int) -> dict[tuple, dict]:
    """The runs of an earlier benchmark in `out` on the same recipe and thread count, by cell.

    So widening a grid (SWEEP) or adding a length only runs the new cells; the others are deterministic.
    """
    path = Path(out) / f"{NAME}.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("recipe") != RECIPE or old.get("threads") != threads:
        return {}
    return {_cell_key(run): run for run in old["runs"]}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m experiments.benchmark {NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; results are reproducible per count")
    parser.add_argument("--table", action="store_true", help="only rewrite the markdown from the committed JSON")
    args = parser.parse_args(argv)
    if args.table:
        results = load_results(args.out)
        _save(results, args.out, markdown_table(results))
        print(markdown_table(results))
        return 0
    torch.set_num_threads(args.threads)
    from minitransformer.world import load_task

    task = load_task("data_to_text")
    started = time.perf_counter()
    results = {"recipe": RECIPE, "sweep_grid": SWEEP, "threads": args.threads, "runs": []}
    cached = _committed_cells(args.out, args.threads)
    results["low_data_grid"] = LOW_DATA_SWEEP
    sweeps = sweep_cells()
    zeros = {m: 0.0 for m in SWEEP}
    with progress_bar(total=len(sweeps) + len(cells_after_sweep(zeros, zeros)), desc=NAME, unit="run") as bar:
        for stage in ("sweeps", "rest"):
            if stage == "rest":
                results["learning_rates"] = best_learning_rates(results["runs"])
                results["low_data_learning_rates"] = best_learning_rates(results["runs"], "low_data_sweep")
            for cell in (sweeps if stage == "sweeps" else
                         cells_after_sweep(results["learning_rates"], results["low_data_learning_rates"])):
                if cell in cached:  # the same cell, recipe and thread count: deterministic, so not run again
                    results["runs"].append(cached[cell])
                else:
                    results["runs"].append(run_one(*cell, task=task))
                    _save(results, args.out, None)  # partial results survive an interruption
                bar.update(1)
    results["seconds"] = round(time.perf_counter() - started) + sum(
        run["seconds"] for run in results["runs"] if run is cached.get(_cell_key(run)))
    table = markdown_table(results)
    _save(results, args.out, table)
    print(table)
    print(f"wrote {args.out / (NAME + '.json')} and {args.out / (NAME + '.md')}")
    return 0
