"""The protocol's tasks, each a module with the same interface.

A task module (``experiments.sentiment``, ``experiments.probe``, ``experiments.data_to_text``, ``experiments.ner``)
provides:

- ``TASK``: its name, the folder of its runs under ``benchmarks/protocol/``;
- ``RunSpec(method, seed, budget)`` with ``epochs`` and ``estimate_seconds()``;
- ``epochs_of(method)``: the method's final budget (0: fit exactly, no training schedule);
- ``exact(method)``: fit to convergence by construction (needs no doubled run, no sweep);
- ``sweep_check(method, epochs, used)``: the :class:`experiments.sweeps.SweepCheck` of its rate;
- ``runnable(methods)``: (methods whose rate is swept at their budget, why each other cannot run yet);
- ``plan(methods=None)``: every run the task's verdicts read; ``run(spec)``: one run's record.
"""

from __future__ import annotations

import importlib

TASKS = {"sentiment": "experiments.sentiment", "probe": "experiments.probe", "data_to_text": "experiments.data_to_text",
         "ner": "experiments.ner"}


def task_module(task: str):
    """The module that runs and judges ``task``; one clear error for an unknown task."""
    if task not in TASKS:
        raise ValueError(f"Unknown protocol task {task!r}; choose one of {list(TASKS)}.")
    return importlib.import_module(TASKS[task])


def swept_rate(task: str, method: str, check) -> float:
    """The rate a method's sweep chose (``check``: its SweepCheck at the final budget); one ValueError naming the
    command when there is no sweep or its best rate is at the grid's edge."""
    command = f"python -m experiments sweep {task} --methods {method} --lrs"
    if not check.grid:
        raise ValueError(f"{check.text()}: sweep it first, `{command} ...` (a grid of rates about 3x apart)")
    if not check.inside:
        step = check.grid[1] / check.grid[0] if len(check.grid) > 1 else 10 ** 0.5
        beyond = check.best / step if check.best == check.grid[0] else check.best * step
        raise ValueError(f"{check.text()}: widen its grid, `{command} {beyond:.1g}`")
    return check.best


def runnable(learning_rate, methods) -> tuple[list[str], list[str]]:
    """(methods whose learning rate a sweep at their budget has chosen, why each other one cannot run yet)."""
    ready, waiting = [], []
    for m in methods:
        try:
            learning_rate(m)
            ready.append(m)
        except ValueError as exc:
            waiting.append(str(exc))
    return ready, waiting


def claimed_methods(task: str, first=()) -> tuple[str, ...]:
    """Every method a registered claim on ``task`` reads (``first`` leading)."""
    from experiments.claims import CLAIMS

    found = list(first)
    for c in CLAIMS:
        for m in c.methods:
            if c.task == task and m not in found:
                found.append(m)
    return tuple(found)
