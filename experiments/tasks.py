"""The protocol's tasks, each a module with the same interface.

A task module (``experiments.sentiment``, ``experiments.probe``) provides:

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

TASKS = {"sentiment": "experiments.sentiment", "probe": "experiments.probe"}


def task_module(task: str):
    """The module that runs and judges ``task``; one clear error for an unknown task."""
    if task not in TASKS:
        raise ValueError(f"Unknown protocol task {task!r}; choose one of {list(TASKS)}.")
    return importlib.import_module(TASKS[task])
