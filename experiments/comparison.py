"""Chapter 10's benchmark: every method of the course on every task it applies to, in one table.

    python -m experiments.benchmark comparison             # the missing runs, the costs, the table
    python -m experiments.benchmark comparison --table     # only rebuild the table from committed files

Scores come from the runs that hold every (method, seed) cell on their task:

    sentiment       benchmarks/protocol/sentiment/ (the verdict protocol's runs: full FT, the probe, BitFit, adapters,
                    LoRA, prompt tuning, chapters 11 and 12; `python -m experiments run sentiment`)
                    + benchmarks/comparison_sentiment.json (P-tuning, prefix tuning, P-tuning v2, run by this command)
    NER             benchmarks/protocol/ner/ (every method, BERT backbone; `python -m experiments run ner`)
    data-to-text    benchmarks/protocol/data_to_text/ (every method, slot accuracy; `python -m experiments run
                    data_to_text`)
    knowledge probe benchmarks/p_tuning.json (`benchmark p_tuning`)

The protocol's rows are its records: each method's rate swept at its final budget, seeds 0-2, and seed 0 at twice
the budget (the doubled-budget test). A protocol column is read only when every row of it has those runs
(:func:`protocol_complete`): never a mix of the protocol's budgets and an older benchmark's.

This command runs what only the comparison needs: the soft-prompt methods on sentiment (their own
learning-rate sweep on seed 0, then seeds 1 and 2 at the best rate), and the cost of every method,
measured on the real tensors: trainable parameters, training-state memory, training step time and
inference latency (ratios to full fine-tuning and to the base model, measured in the same process),
and the size of the file a task needs. It writes `benchmarks/comparison.{json,md}`; chapter 10 loads
them and `tests/test_benchmark_comparison.py` re-runs one cell.
"""


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

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
SEEDS = (0, 1, 2)
from experiments.comparison_costs import *  # noqa: F401,F403 - chapter 10's names, in one place
from experiments.comparison_sentiment import *  # noqa: F401,F403
from experiments.comparison_costs import LABELS, METHODS, TASKS, applies, definition, measure_all_costs
from experiments.comparison_sentiment import _key, _sentiment_recipe, sentiment_soft_prompts  # noqa: F401


# ----------------------------------------------------------------------------- scores, from the chapters' benchmarks
SCORE_SPLIT = {"sentiment": "validation", "ner": "validation", "data_to_text": "validation", "probe": "test"}


def _load(name: str, directory: Path) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"No benchmark results at {path}: run `python -m experiments.benchmark "
                                f"{name.replace('comparison_sentiment', 'comparison')}` first.")
    return json.loads(path.read_text())


def _score(run: dict, score: float) -> dict:
    from minitransformer.training import still_rising

    return {"seed": run["seed"], "score": score, "on_plateau": bool(run.get("on_plateau")),
            "rising": len(run.get("curve") or ()) >= 6 and still_rising(run["curve"])}


def protocol_methods() -> tuple[str, ...]:
    """The sentiment methods the verdict protocol runs (chapters 2-6, 11 and 12): their rows read its records."""
    from experiments.methods import ALL_METHODS

    return tuple(m for m in METHODS if m in ALL_METHODS)


def protocol_scores(method: str, directory: Path = RESULTS_DIR, task: str = "sentiment") -> list[dict]:
    """`method`'s protocol runs on `task` (benchmarks/protocol/<task>/): seeds 0-2 at its own swept rate and
    final budget, each with that budget and the doubled-budget test (seed 0 at twice the epochs)."""
    from experiments import protocol, records
    from experiments.tasks import task_module

    module = task_module(task)
    root = Path(directory) / "protocol"
    epochs = module.epochs_of(method)
    runs = records.load_runs(task, method, epochs, protocol.SEEDS, root)
    if not runs:
        raise FileNotFoundError(f"No protocol run of {method!r} on {task} in {root}: run `python -m experiments "
                                f"run {task} --methods {method}` (after its sweep) first.")
    convergence = protocol.convergence_of(task, method, epochs, runs, exact=module.exact(method), root=root)
    converged = None if not convergence.exact and convergence.doubled is None else convergence.converged
    # "rising" is the older benchmarks' end-of-curve check; a protocol row has the doubled-budget test instead
    return [{**_score(r, r["validation"]["accuracy"]), "rising": False, "epochs": epochs, "converged": converged,
             "protocol": True} for _, r in sorted(runs.items())]


PROTOCOL_NAMES = {"ner": NER_NAMES, "data_to_text": D2T_NAMES}  # the tasks whose whole column the protocol runs


def protocol_complete(task: str, directory: Path = RESULTS_DIR) -> bool:
    """Every row of `task`'s column has the protocol's runs (3 seeds at the method's final budget): then the whole
    column reads them, never a mix of the protocol's budgets and an older benchmark's."""
    from experiments import protocol, records
    from experiments.tasks import task_module

    module, root = task_module(task), Path(directory) / "protocol"
    return all(len(records.load_runs(task, name, module.epochs_of(name), protocol.SEEDS, root)) == len(protocol.SEEDS)
               for name in sorted(set(PROTOCOL_NAMES[task].values())))


def task_scores(task: str, method: str, directory: Path = RESULTS_DIR) -> list[dict]:
    """The committed runs of `method` on `task` at its chosen learning rate: [{"seed", "score", "on_plateau"}]."""
    base = "lora" if method == "lora_merged" else method  # merging changes no prediction (asserted in chapter 3)
    if task == "sentiment":
        if base in protocol_methods():
            return protocol_scores(base, directory)
        if base in SENTIMENT_RUNNERS:
            results = _load("comparison_sentiment", directory)
            runs = [r for r in results["runs"] if r["method"] == base and r["lr"] == results["learning_rates"][base]
                    and r["epochs"] == SOFT_PROMPT_EPOCHS]
        else:
            runs = [r for r in _load("sentiment", directory)["runs"] if r["method"] == base]
        return [_score(r, r["validation"]) for r in runs]
    if task == "ner":
        if protocol_complete("ner", directory):
            return protocol_scores(NER_NAMES[base], directory, task="ner")
        runs = [r for r in _load("ner", directory)["runs"] if r["backbone"] == "bert" and r["method"] == NER_NAMES[base]]
        return [_score(r, r["validation"]) for r in runs]
    if task == "data_to_text":  # validation slot accuracy (chapter 8's metric), the protocol's runs only
        if not protocol_complete(task, directory):
            raise FileNotFoundError(f"The data-to-text column reads the protocol's runs of every method "
                                    f"({sorted(set(D2T_NAMES.values()))}), and some are missing: run `python -m "
                                    f"experiments sweep data_to_text` and `python -m experiments run data_to_text`.")
        return protocol_scores(D2T_NAMES[base], directory, task="data_to_text")
    if task == "probe":
        results = _load("p_tuning", directory)
        if base == "frozen":  # zero-shot: the best hand-written prompt per relation (picked on validation)
            return [{"seed": None, "score": results["discrete"]["gpt"]["best_test"], "on_plateau": False,
                     "rising": False}]
        runs = [r for r in results["runs"] if r["backbone"] == "gpt" and r["config"] == PROBE_NAMES[base]]
        return [_score(r, r["test"]) for r in runs]
    raise ValueError(f"Unknown task {task!r}; choose from {TASKS}.")


def summarise(task: str, method: str, directory: Path = RESULTS_DIR) -> dict:
    runs = task_scores(task, method, directory)
    scores = [r["score"] for r in runs]
    return {"n": len(scores), "seeds": [r["seed"] for r in runs], "scores": scores, "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0, "any_plateau": any(r["on_plateau"] for r in runs),
            "rising_seeds": sum(r["rising"] for r in runs),
            # the protocol's rows: the final budget and the doubled-budget test (None: not run, or not a protocol row)
            "protocol": runs[0].get("protocol", False), "epochs": runs[0].get("epochs"),
            "converged": runs[0].get("converged")}


def comparison_rows(costs: list[dict], directory: Path = RESULTS_DIR) -> list[dict]:
    """One row per (task, method): scores (mean ± sd over seeds, ÷ full FT) joined with the measured costs."""
    rows = []
    by_cell = {(c["task"], c["method"]): c for c in costs}
    for task in TASKS:
        full = by_cell.get((task, "full"))
        full_score = summarise(task, "full", directory)["mean"] if applies(task, "full") else None
        for method in METHODS:
            if not applies(task, method):
                continue
            cost, score = by_cell[(task, method)], summarise(task, method, directory)
            row = {"task": task, "method": method, "label": LABELS[method], **score, **cost,
                   "share": cost["trainable"] / cost["backbone_total"],
                   "vs_full": score["mean"] / full_score if full_score else None,
                   "step_vs_full": (cost["step_seconds"] / full["step_seconds"]
                                    if full and cost["step_seconds"] is not None else None)}
            rows.append(row)  # the latency ratios come with the costs (measure_costs: latency_b1_vs_base, ...)
    return rows


def markdown_table(results: dict) -> str:
    """Every method on every task it applies to: one table per task, printed by code from the results."""
    from minitransformer.measure import format_bytes

    protocol_rows = [r for r in results["rows"] if r["task"] == "sentiment" and r.get("protocol")]
    lines = ["Every method on every task it applies to. Score: mean ± sd over seeds (validation; the probe: test, "
             "as in chapter 7), from the chapters' benchmarks; 'still rising': seeds whose validation curve still "
             "rose at the end (training.still_rising). On sentiment, "
             + ", ".join(LABELS[m] for m in dict.fromkeys(r["method"] for r in protocol_rows))
             + " are the verdict protocol's runs (`python -m experiments run sentiment`: each method's own rate, swept "
             "at its final budget, shown as 'ep'; '2×' is the doubled-budget test of seed 0: converged when the "
             "doubled run gains no more than the method's own noise); "
             + ", ".join(LABELS[m] for m in SENTIMENT_RUNNERS if m not in protocol_methods())
             + f" train {SOFT_PROMPT_EPOCHS} epochs at the rate of their own sweep (`benchmark comparison`). "
             "On NER and data-to-text every row is the protocol's (`python -m experiments run ner`, `... run "
             "data_to_text`); data-to-text's score is slot accuracy, the share of an MR's attributes its text "
             "realises (chapter 8). "
             "Chapters 11 and 12 (DoRA, rsLoRA, PiSSA, LoRA+, QLoRA) are judged on sentiment only. Costs measured by `python -m experiments.benchmark "
             f"comparison` on one CPU thread ({results['machine']}): trainable while training, and the numbers a "
             "task stores once deployed (P-tuning without its encoder, prefix tuning without its MLP); "
             "training-state memory = parameters + gradients + AdamW state; activations = what one training step "
             "at batch 32 keeps for the backward pass; step time ÷ full fine-tuning's; forward-pass latency of the "
             "deployed model ÷ the base model's; the file a task needs (safetensors).", ""]
    for task in TASKS:
        lines += [f"### {TASK_LABELS[task]}", "",
                  "| method | trainable | stored | score | ÷ full FT | training memory | activations | step ÷ full | "
                  "latency b1 ÷ base | latency b32 ÷ base | file |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in results["rows"] if r["task"] == task):
            score = f"{r['mean']:.3f} ± {r['sd']:.3f}"
            budget = "" if not r.get("protocol") else ", L-BFGS" if not r["epochs"] else (
                f", {r['epochs']} ep, 2× " + {True: "converged", False: "STILL LEARNING", None: "not run"}[r["converged"]])
            score += f" (n={r['n']}{budget})" + (" plateau!" if r["any_plateau"] else "") + (
                f", {r['rising_seeds']} still rising" if r["rising_seeds"] and not r.get("protocol") else "")
            ratio = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
            lines.append(f"| {r['label']} | {r['trainable']:,} ({100 * r['share']:.2f}%) | {r['stored_parameters']:,} | "
                         f"{score} | {ratio(r['vs_full'])} | {format_bytes(r['memory']['total'])} | "
                         f"{format_bytes(r['activation_bytes'])} | {ratio(r['step_vs_full'])} | "
                         f"{r['latency_b1_vs_base']:.2f} | {r['latency_b32_vs_base']:.2f} | "
                         f"{format_bytes(r['file_bytes'])} |")
        lines.append("")
    lines += ["### What each row is, on each task", "",
              "A label names a family; the tasks were built by different chapters, so the same label can be a "
              "different module on two tasks. This is exactly what each row trains (`comparison.definition`).", "",
              "| task | method | what it is |", "|---|---|---|"]
    lines += [f"| {task} | {LABELS[m]} | {definition(task, m)} |" for task in TASKS for m in METHODS if applies(task, m)]
    lines.append("")
    return "\n".join(lines)


def load_results(directory: Path = RESULTS_DIR) -> dict:
    return _load("comparison", directory)


def main(argv: Optional[list[str]] = None) -> int:
    import platform

    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark comparison",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--jobs", type=int, default=2, help="training runs in parallel (one process each)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table from the committed results")
    parser.add_argument("--prompt-lengths", action="store_true",
                        help="also run chapter 9's P-tuning v2 prompt lengths on sentiment (P=4 and 32, seed 0, "
                             "2 runs of about 2 CPU-minutes); the comparison's table does not use them")
    parser.add_argument("--min-run-time", type=float, default=0.03,
                        help=f"seconds per timing (torch.utils.benchmark), repeated over {ROUNDS} rounds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.table:
        results = load_results(args.out)
    else:
        short = sum(map(len, SENTIMENT_SWEEP.values())) + (len(EXTRA_RUNNERS) if args.prompt_lengths else 0)
        long = len(SENTIMENT_RUNNERS) * len(SEEDS) - 1  # prompt tuning's seed 0 is chapter 6's committed run
        # CPU-minutes per run on an idle 2-core laptop (the committed runs' "seconds"): ~2 at 20 epochs, ~6 at 60,
        # ~8 for prompt tuning's 60; the costs of every (task, method) take ~4 minutes more.
        minutes = (2 * short + 6 * (long - 2) + 8 * 2) / max(1, min(args.jobs, 2)) + 4
        print(f"Soft prompts on sentiment: {short} runs of {recipes.EPOCHS} epochs and {long} of {SOFT_PROMPT_EPOCHS}, "
              f"{args.jobs} at a time, then the costs of every (task, method): about {minutes:.0f} min from scratch on "
              f"2 cores; the cells already in {args.out}/ are kept.")
        sentiment_soft_prompts(args.out, jobs=args.jobs, prompt_lengths=args.prompt_lengths)
        torch.set_num_threads(1)
        results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} thread, torch {torch.__version__}",
                   "min_run_time": args.min_run_time, "costs": measure_all_costs(min_run_time=args.min_run_time)}
    results["rows"] = comparison_rows(results["costs"], args.out)
    if not args.table:
        results["seconds"] = round(time.perf_counter() - started)
    table = markdown_table(results)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", table)):
        (args.out / f"comparison{suffix}").write_text(text)
    print(table)
    return 0


# ----------------------------------------------------------------------------- the lesson's live re-run
def _ner_cell(args: tuple) -> float:
    from experiments.bench_ner import run_ptv2_cell

    method, seed = args
    torch.set_num_threads(1)  # the benchmark's thread count: the same numbers on the same machine
    if protocol_complete("ner"):  # the table reads the protocol's runs: re-run one of those
        from experiments import ner

        return ner.run(ner.RunSpec(NER_NAMES[method], seed, 1), progress=False, reuse_sweep=False)["validation"]["accuracy"]
    return run_ptv2_cell("ner", "bert", NER_NAMES[method], seed, progress=False)["validation"]


def rerun_ner(seed: int = 0, jobs: int = 2, methods: Optional[list[str]] = None) -> dict[str, float]:
    """Seed `seed` of every method on NER (or of `methods`), `jobs` runs at a time (one process and one thread
    each), as the runs the table reads were made (the protocol's, once every NER row has them; else `benchmark
    ner`'s): {method: validation entity F1}."""
    methods = [m for m in (methods or METHODS) if m in NER_NAMES]
    try:  # the longest runs first (by their committed time), so that the processes finish together
        seconds = {r["method"]: r["seconds"] for r in _load("ner", RESULTS_DIR)["runs"] if r["backbone"] == "bert"}
        order = sorted(methods, key=lambda m: -seconds.get(NER_NAMES[m], 0.0))
    except FileNotFoundError:
        order = methods
    which = "every method" if len(methods) == len([m for m in METHODS if m in NER_NAMES]) else f"{len(methods)} methods"
    with progress_bar(total=len(methods), desc=f"NER, seed {seed}, {which}", unit="run") as bar:
        if jobs == 1:
            scores = {}
            for m in methods:
                scores[m] = _ner_cell((m, seed))
                bar.update(1)
            return scores
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_ner_cell, (m, seed)): m for m in order}
            scores = {}
            for future in as_completed(futures):
                scores[futures[future]] = future.result()
                bar.update(1)
            return {m: scores[m] for m in methods}


# ----------------------------------------------------------------------------- README
README_START, README_END = "<!-- benchmark:comparison -->", "<!-- /benchmark:comparison -->"


def summary_table(results: dict) -> str:
    """Methods x tasks: score ÷ full fine-tuning (the probe: its accuracy), the trainable share on sentiment, and
    the costs that decide deployment, printed by code for README."""
    from minitransformer.measure import format_bytes

    cell = {(r["task"], r["method"]): r for r in results["rows"]}
    head = ["method", "trainable (sentiment)", *(f"{t} ÷ full FT" for t in TASKS[:3]), "probe accuracy",
            "training memory + activations", "latency b1 ÷ base", "file"]
    lines = ["Score ÷ full fine-tuning per task (mean over 3 seeds; the probe, which no method that changes the "
             "backbone applies to, shows its test accuracy), and the costs on the sentiment task, from "
             "`benchmarks/comparison.json` (`python -m experiments.benchmark comparison`; chapter 10): training "
             "memory is parameters + gradients + AdamW state, plus the activations one step at batch 32 keeps for "
             "the backward pass; latency is the deployed model's.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for method in METHODS:
        s = cell[("sentiment", method)]
        scores = [f"{cell[(t, method)]['vs_full']:.2f}" if (t, method) in cell else "-" for t in TASKS[:3]]
        probe = f"{cell[('probe', method)]['mean']:.3f}" if ("probe", method) in cell else "-"
        lines.append(f"| {s['label']} | {100 * s['share']:.2f}% | " + " | ".join(scores) + f" | {probe} | "
                     f"{format_bytes(s['memory']['total'])} + {format_bytes(s['activation_bytes'])} | "
                     f"{s['latency_b1_vs_base']:.2f} | "
                     f"{format_bytes(s['file_bytes'])} |")
    return "\n".join(lines) + "\n"


def readme_with_results(readme_text: str, results: dict) -> str:
    from experiments.results_io import fill_readme_section

    return fill_readme_section(readme_text, README_START, README_END, summary_table(results))
