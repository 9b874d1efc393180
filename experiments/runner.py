"""Run what a task's verdicts still need, a few runs at a time, resuming where a stopped run left off.

Every finished run is written to its own file at once (:mod:`experiments.records`), so an
interrupted benchmark loses only the runs in flight; the next call skips every run on disk.
One progress bar counts the estimated seconds of work, so its ETA is the benchmark's.
Each run uses one thread: runs are deterministic for a given machine and thread count.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

from experiments import records

from experiments.tasks import task_module as _task_module


def pending(task: str, specs: Sequence, root: Path | None = None) -> list:
    module = _task_module(task)
    return [s for s in specs if not records.path_of(module.TASK, s, root).exists()]


def _work(task: str, spec, root: Path | None) -> tuple[object, float, str]:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    record = _task_module(task).run(spec, progress=False)
    path = records.save_run(record, root)
    return spec, time.perf_counter() - start, str(path)


def run_missing(task: str, specs: Sequence, *, workers: int = 2, root: Path | None = None,
                log: Callable[[str], None] = print, progress: bool = True) -> list[str]:
    """Run every spec without a record on disk, ``workers`` at a time; returns the files written."""
    from minitransformer.training import progress_bar

    todo = pending(task, specs, root)
    done_before = len(specs) - len(todo)
    total = sum(s.estimate_seconds() for s in todo)
    log(f"{task}: {len(specs)} runs in the plan, {done_before} on disk, {len(todo)} to run "
        f"(about {total / 60 / max(1, min(workers, len(todo) or 1)):.0f} min at {workers} at a time)")
    written: list[str] = []
    if not todo:
        return written
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared with the caller
    with progress_bar(total=round(total), desc=f"{task} runs", unit="s", disable=not progress) as bar, \
            ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_work, task, spec, root): spec for spec in todo}
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = futures.pop(future)
                spec, seconds, path = future.result()
                bar.update(round(spec.estimate_seconds()))
                written.append(path)
                log(f"  done: {spec} in {seconds:.0f} s -> {path}")
    return written
