"""``python -m experiments``: print the course's verdicts, or make the runs they read."""

from __future__ import annotations

import argparse
import json
import sys

from experiments.tasks import TASKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("verdicts", help="every claim's verdict: estimate, interval, rule, outcome, convergence")
    show.add_argument("--chapter", type=int, help="only this chapter's claims")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run = sub.add_parser("run", help="make the protocol runs a task's verdicts read (skips runs on disk)")
    run.add_argument("task", choices=list(TASKS))
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--methods", nargs="+", help="only these methods (default: every method a registered claim reads)")
    run.add_argument("--no-doubled", action="store_true", help="skip the seed-0 runs at twice the budget")
    sweep = sub.add_parser("sweep", help="sweep methods' learning rates at their final budget (seed 0; resumes)")
    sweep.add_argument("task", choices=list(TASKS))
    sweep.add_argument("--methods", nargs="+", required=True)
    sweep.add_argument("--lrs", type=float, nargs="+", required=True, help="the grid, e.g. 0.1 0.3 1")
    for p in (run, sweep):
        p.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each (default 2)")
        p.add_argument("--dry-run", action="store_true", help="list the runs that would be made, and stop")
    args = parser.parse_args(argv)

    from experiments import claims

    if args.command == "verdicts":
        try:
            if args.json:
                print(json.dumps([v.as_dict() for v in claims.verdicts(args.chapter)], indent=1))
            else:
                print(claims.verdict_table(args.chapter))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    from experiments import runner
    from experiments.tasks import task_module

    task = task_module(args.task)
    methods = tuple(args.methods or (task.claimed_methods() if args.command == "run" else ()))
    known = task.known_methods()
    unknown = sorted(set(methods) - set(known))
    if unknown:
        print(f"error: unknown {args.task} method(s) {unknown}; choose from {list(known)}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.command == "sweep":
        try:
            specs = task.sweep_plan(methods, args.lrs)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        methods, waiting = task.runnable(methods)
        for why in waiting:
            print(f"not planned: {why}")
        specs = task.plan(methods, tuple(args.seeds), doubled=not args.no_doubled)
    if args.dry_run:
        todo = runner.pending(args.task, specs)
        for spec in todo:
            print(f"  {spec}  (~{spec.estimate_seconds() / 60:.0f} min)")
        total = sum(s.estimate_seconds() for s in todo)
        print(f"{len(todo)} of {len(specs)} runs to make, about {total / 60 / args.workers:.0f} min at "
              f"{args.workers} at a time")
        return 0
    runner.run_missing(args.task, specs, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
