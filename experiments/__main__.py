"""``python -m experiments``: print the course's verdicts, or make the runs they read."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("verdicts", help="every claim's verdict: estimate, interval, rule, outcome, convergence")
    show.add_argument("--chapter", type=int, help="only this chapter's claims")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run = sub.add_parser("run", help="make the protocol runs a task's verdicts read (skips runs on disk)")
    run.add_argument("task", choices=["sentiment"])
    run.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each (default 2)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--methods", nargs="+", help="only these methods (default: every method a registered claim reads)")
    run.add_argument("--no-doubled", action="store_true", help="skip the seed-0 runs at twice the budget")
    run.add_argument("--dry-run", action="store_true", help="list the runs that would be made, and stop")
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

    from experiments import runner, sentiment

    methods = tuple(args.methods or sentiment.claimed_methods())
    from experiments.methods import ALL_METHODS

    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        print(f"error: unknown method(s) {unknown}; choose from {list(ALL_METHODS)}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    methods, waiting = sentiment.runnable(methods)
    for why in waiting:
        print(f"not planned: {why}")
    specs = sentiment.plan(methods, tuple(args.seeds), doubled=not args.no_doubled)
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
