"""Every method of the course on the standard recipe, over several seeds: `python -m experiments.benchmark`.

    python -m experiments.benchmark sentiment --seeds 0 1 2      # mean ± sd per method (~25 min on 2 CPU cores)
    python -m experiments.benchmark ablations                    # the chapters' ablations, seed 0 (~7 min)
    python -m experiments.benchmark sweep                        # the first, accuracy-only learning-rate sweep
    python -m experiments.benchmark readme                       # README's findings table from the results
    python -m experiments.benchmark data_to_text                 # chapter 8: prefix tuning vs full FT and LoRA
    python -m experiments.benchmark p_tuning                     # chapter 7: P-tuning on the probe, 3 seeds
    python -m experiments.benchmark p_tuning_sweep               # chapter 7: its learning-rate sweep
    python -m experiments.benchmark comparison                   # chapter 10: every method on every task

Each writes a JSON (every run, with its validation curve) and a markdown table into
`benchmarks/`. The lessons load the committed results; `tests/test_benchmark.py` re-runs one
(method, seed) cell and checks it against them. Runs are deterministic for a given machine
and thread count (`--threads`, default 1).

The method implementations are the course's reference solutions (`solutions/`, generated
from the lessons), applied with the configurations each chapter teaches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from minitransformer import recipes
from minitransformer.training import progress_bar

from experiments.bench_ner import *  # noqa: F401,F403 - the benchmark's public names, in one place
from experiments.bench_p_tuning import *  # noqa: F401,F403
from experiments.bench_prompt_tuning import *  # noqa: F401,F403
from experiments.bench_sentiment import *  # noqa: F401,F403
from experiments.methods import *  # noqa: F401,F403
from experiments.results_io import *  # noqa: F401,F403
from experiments.bench_p_tuning import p_tuning_main
from experiments.bench_prompt_tuning import _add_prompt_tuning_parsers, _prompt_tuning_command, _pt_recipe  # noqa: F401
from experiments.bench_sentiment import _run_cell
from experiments.bench_ner import _ner_recipe, ptv2_main  # noqa: F401 - _ner_recipe: for the tests
from experiments.methods import ABLATIONS, ALL_METHODS, METHODS
from experiments.results_io import README, RESULTS_DIR, load_results, merged_runs, run_epochs, sentiment_recipe, write_results
from experiments.bench_sentiment import (SWEEP_GRID, ablation_table, markdown_table, readme_with_results, summarise,
                                         sweep_table)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ---- data-to-text (chapter 8, prefix tuning): its own module and options --------------------------------
    if argv[:1] == ["data_to_text"]:
        from experiments import bench_data_to_text

        return bench_data_to_text.main(argv[1:])
    if argv[:1] == ["comparison"]:  # chapter 10: every method on every task
        from experiments import comparison

        return comparison.main(argv[1:])
    if argv[:1] and argv[0] in ("p_tuning", "p_tuning_sweep"):  # chapter 7's subcommands (see the P-tuning block)
        return p_tuning_main(argv)
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark", description=__doc__.split("\n\n")[0])
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
                       choices=[m for m in ALL_METHODS if ALL_METHODS[m].prepare is not None],
                       help="methods to sweep (an ablation variant uses its family's grid and budget)")
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
        from experiments import comparison

        from experiments.claims import readme_with_verdicts

        text = readme_with_results(README.read_text(), load_results("sentiment"))
        text = readme_with_verdicts(comparison.readme_with_results(text, comparison.load_results()))
        README.write_text(text)
        print(f"updated {README}")
        return 0
    if args.command == "sentiment":
        cells = [(m, s, None, args.threads) for m in args.methods for s in args.seeds]
    elif args.command == "ablations":
        cells = [(m, args.seed, None, args.threads) for m in args.methods]
    else:
        no_grid = [m for m in args.methods if not args.lrs and ALL_METHODS[m].lr_key not in SWEEP_GRID]
        if no_grid:
            print(f"error: no default grid for {no_grid}: pass --lrs, or sweep them with the protocol "
                  f"(`python -m experiments sweep sentiment --methods {' '.join(no_grid)} --lrs ...`)", file=sys.stderr)
            return 2
        cells = [(m, args.seed, lr, args.threads) for m in args.methods for lr in (args.lrs or SWEEP_GRID[ALL_METHODS[m].lr_key])]
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
    results = {"recipe": sentiment_recipe(), "threads": args.threads, "seconds": round(time.perf_counter() - started), "runs": runs}
    if args.command == "sentiment":
        results["runs"] = runs = merged_runs(runs, args.out / "sentiment.json", None, lambda r: (r["method"], r["seed"]),
                                         list(METHODS))
        results["summary"] = summarise(runs)
        write_results(results, "sentiment", markdown_table(results), args.out)
    elif args.command == "ablations":
        results["seed"] = args.seed
        results["runs"] = merged_runs(runs, args.out / "ablations.json", args.seed, lambda r: r["method"], list(ABLATIONS))
        write_results(results, "ablations", ablation_table(results), args.out)
    else:
        results["seed"] = args.seed
        results["runs"] = merged_runs(runs, args.out / "lr_sweep.json", args.seed,
                                  lambda r: (r["method"], r["lr"], run_epochs(r)), list(ALL_METHODS), at_standard_lr=False)
        write_results(results, "lr_sweep", sweep_table(results), args.out)
    return 0




if __name__ == "__main__":
    sys.exit(main())
