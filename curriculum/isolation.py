"""Grading each student notebook in its own process, with a wall-clock limit the parent enforces.

:func:`grade_in_processes` runs :class:`Job` s, a few at a time.  Each job is one notebook
and its chapter's graded tests; it runs in a child process that

1. imports the chapter's graded test modules, then records a :mod:`tamper <curriculum.tamper>`
   snapshot of the libraries and the grader;
2. loads the notebook's definitions (:func:`curriculum.grading.load_submission`) in a fresh
   temporary working directory;
3. runs every test with the per-test time limit (``SIGALRM`` inside the child), reporting
   each result to the parent as it completes;
4. compares the snapshot again after loading and after the tests: any change, or an import
   of the solutions, flags the notebook.

The parent only accepts results for the tests it sent (it computes the points itself from
the test files) and decodes messages as JSON, never pickle.  It kills the child's whole
process group when a phase (loading, or one test) runs past the time limit plus
:data:`GRACE_S`, or when the run is interrupted.  A child that exits early (``os._exit``,
a crash) or is killed gives 0 for the tests it did not complete, with a status saying why;
other notebooks are not affected.

Children are forked from a ``forkserver`` that has already imported torch, so starting
one costs a fork, not a torch import (on platforms without forkserver they are spawned).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

from curriculum import grading, tamper
from curriculum.tamper import private_copy

GRACE_S = 10.0  # on top of the per-test limit, before the parent kills a child
MAX_RESTARTS = 3  # fresh processes after a test hung or crashed; then the notebook's remaining tests are not run
STARTUP_S = 120.0  # forking and importing the graded tests
MAX_TEXT = 4000  # longest message or details accepted from a child


@dataclass(frozen=True)
class TestRef:
    """One graded test: the file defining it and its function name."""

    file: str
    name: str


@dataclass
class Job:
    """Grade one notebook against some graded tests."""

    key: Any  # the caller's id for the job (returned unchanged)
    notebook: str
    tests: list[TestRef]
    timeout: float  # per test and for loading; 0 = no limit


@dataclass
class TestResult:
    status: str
    message: str
    details: str = ""
    by_parent: bool = False  # the parent wrote it (the test hung or its process died): message has no test text


@dataclass
class JobResult:
    """What happened to one job."""

    results: dict[TestRef, TestResult] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)  # tagged, cells_used, notes
    load_error: str | None = None
    problem: str | None = None  # the process crashed, hung or was interrupted: what happened
    problem_kind: str | None = None  # "crashed", "timeout", "interrupted" or "error" (the tests could not be imported)
    output: str = ""  # the tail of what the notebook printed (for instructors)


# --------------------------------------------------------------------------- the child
def _import_test_module(path: Path) -> Any:
    name = f"_curriculum_graded_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # like pytest: tests may import helpers beside them
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _solutions_imported() -> list[str]:
    return sorted(n for n in sys.modules if n == "solutions" or n.startswith("solutions."))


def child_main(conn: Connection, job: Job, workdir: str) -> None:
    """Entry point of a grading process (runs the student's code)."""
    try:
        os.setpgrp()  # so the parent can kill everything this notebook starts
    except (AttributeError, OSError):
        pass
    # Bind what grading uses before any student code runs: a later patch of json.dumps, of
    # curriculum.grading.classify or of the tamper check cannot reach these copies.
    grader, watcher = private_copy(grading), private_copy(tamper)
    encode, send_bytes = json.JSONEncoder().encode, conn.send_bytes

    def send(**message: Any) -> None:
        send_bytes(encode(message).encode("utf-8"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out = os.open(os.path.join(workdir, ".output.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)  # the notebook's prints must not mix with the grader's output
    os.dup2(out, 2)
    os.chdir(workdir)
    try:
        import torch

        torch.set_num_threads(1)  # tiny tensors; several notebooks are graded side by side
    except ImportError:  # pragma: no cover - torch is a requirement
        pass
    try:
        modules = {f: _import_test_module(Path(f).resolve()) for f in sorted({t.file for t in job.tests})}
        tests = {ref: getattr(modules[ref.file], ref.name) for ref in job.tests}
    except BaseException as exc:  # noqa: BLE001 - a broken test file is the instructor's problem
        send(event="fatal", message=f"could not import the graded tests: {type(exc).__name__}: {exc}",
             details=traceback.format_exc())
        return
    before = watcher.take_snapshot()
    imported_solutions = _solutions_imported

    def check() -> list[str]:
        """What the student's code changed since the snapshot: run after loading and after every test."""
        return watcher.changes_since(before) + [f"imported `{n}`" for n in imported_solutions()]

    timeout = job.timeout or None
    send(event="loading")
    try:
        module, info = grader.load_submission(job.notebook, timeout=timeout)
    except grading.LoadError as exc:
        send(event="load_error", message=str(exc))
        return
    flags = list(info.flags)
    if module is not None:
        flags += [f"while loading: {c}" for c in check()]
    send(event="loaded", tagged=info.tagged, cells_used=info.cells_used, notes=info.notes, flags=flags)
    if flags or module is None:
        return
    impl = grader.Implementation(vars(module))
    for ref, test in tests.items():
        send(event="start", file=ref.file, name=ref.name)
        outcome = grader.run_graded(test, impl, timeout, catch_interrupts=True, check=check)
        send(event="result", file=ref.file, name=ref.name, status=outcome.status,
             message=outcome.message, details=outcome.details)
        if outcome.status == "flagged":
            send(event="done", flags=[f"while {ref.name} ran: {c}" for c in outcome.details.splitlines()])
            return
    send(event="done", flags=[f"after the tests: {c}" for c in check()])


def _child_entry(conn: Connection, job: Job, workdir: str) -> None:
    try:
        child_main(conn, job, workdir)
        conn.close()
    finally:
        os._exit(0)  # skip interpreter shutdown: no student __del__ / atexit code after the results


# --------------------------------------------------------------------------- the parent
_CONTEXT: Any = None


def _context() -> Any:
    """A forkserver that has imported torch and the grader (spawn where forkserver is missing)."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(["curriculum._warm"])
        else:  # pragma: no cover - Windows
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


@dataclass
class _Running:
    job: Job
    process: Any
    conn: Connection
    workdir: str
    result: JobResult = field(default_factory=JobResult)
    phase: str = "starting"
    current: TestRef | None = None
    deadline: float | None = None
    finished: bool = False
    restarts: int = 0  # fresh processes started after a test hung or crashed


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _strings(value: Any) -> list[str]:
    return [_clip(v) for v in value if isinstance(v, str)][:200] if isinstance(value, list) else []


def _drain(run: _Running, stop_when_finished: bool) -> None:
    """Handle every message waiting on the run's pipe (optionally stopping once it reports it is done)."""
    while not (stop_when_finished and run.finished):
        try:
            if not run.conn.poll():
                return
            _handle(run, run.conn.recv_bytes())
        except (EOFError, OSError):
            return


def _handle(run: _Running, raw: bytes) -> None:
    """Apply one message from a child (ignoring anything malformed or unexpected)."""
    try:
        msg = json.loads(raw.decode("utf-8"))
    except ValueError:
        return
    if not isinstance(msg, dict):
        return
    event, job, now = msg.get("event"), run.job, time.monotonic()
    limit = job.timeout + GRACE_S if job.timeout else None
    ref = TestRef(msg.get("file"), msg.get("name")) if isinstance(msg.get("name"), str) else None
    if event == "loading":
        run.phase, run.deadline = "loading", (now + limit if limit else None)
    elif event == "load_error":
        run.result.load_error = _clip(msg.get("message"))
        run.finished = True
    elif event == "fatal":
        run.result.problem, run.result.problem_kind = _clip(msg.get("message")), "error"
        run.finished = True
    elif event == "loaded":
        run.result.load = {"tagged": bool(msg.get("tagged")),
                           "cells_used": [c for c in msg.get("cells_used", []) if isinstance(c, int)],
                           "notes": _strings(msg.get("notes"))}
        run.result.flags += _strings(msg.get("flags"))
        if run.result.flags:
            run.finished = True
    elif event == "start" and ref in job.tests:
        run.phase, run.current, run.deadline = "test", ref, (now + limit if limit else None)
    elif event == "result" and ref in job.tests:
        if ref in run.result.results or ref != run.current:
            # The grader reports each test once, after starting it: anything else was written by other code.
            run.result.flags.append(f"the grading process reported a result for {ref.name} "
                                    f"{'twice' if ref in run.result.results else 'that was not running'} "
                                    "(code other than the grader wrote to its pipe)")
            run.finished = True
            return
        status = msg.get("status")
        if status not in grading.STATUSES:
            status = "error"
        run.result.results[ref] = TestResult(status, _clip(msg.get("message")), _clip(msg.get("details")))
        run.current = None
    elif event == "done":
        run.result.flags += _strings(msg.get("flags"))
        run.finished = True


def _kill(run: _Running) -> None:
    pid = run.process.pid
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)  # the child and anything it started
        except (AttributeError, ProcessLookupError, PermissionError, OSError):
            pass
    try:
        run.process.kill()
    except Exception:  # noqa: BLE001 - already gone
        pass


def _output_tail(workdir: str, limit: int = 1500) -> str:
    try:
        data = Path(workdir, ".output.txt").read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def _finish(run: _Running, problem: tuple[str, str] | None) -> JobResult:
    """Stop the child (and its process group), clean up, and describe an early end."""
    _kill(run)
    run.process.join(5)
    run.conn.close()
    result = run.result
    output = _output_tail(run.workdir)
    result.output = (result.output + "\n" + output).strip()[-1500:] if output else result.output
    shutil.rmtree(run.workdir, ignore_errors=True)
    if problem and not result.problem:
        result.problem_kind, result.problem = problem
    return result


def _start(job: Job, result: JobResult | None = None, restarts: int = 0) -> _Running:
    ctx = _context()
    parent_end, child_end = ctx.Pipe(duplex=False)
    workdir = tempfile.mkdtemp(prefix="curriculum-grading-")
    process = ctx.Process(target=_child_entry, args=(child_end, job, workdir), daemon=True)
    # multiprocessing re-imports the parent's __main__ in the child (a script, a notebook kernel):
    # grading processes need none of it, so it is hidden while the child starts.
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process.start()
    finally:
        if main is not None:
            sys.modules["__main__"] = main
    child_end.close()
    return _Running(job, process, parent_end, workdir, result=result if result is not None else JobResult(),
                    deadline=time.monotonic() + STARTUP_S, restarts=restarts)


def _early_end(run: _Running) -> tuple[str, str]:
    code = run.process.exitcode
    where = f"while running {run.current.name}" if run.current else f"while {run.phase}"
    if code is not None and code < 0:
        how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if -code in signal.valid_signals() \
            else f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return "crashed", f"the grading process {how} {where} (os._exit, a crash or running out of memory?)"


def grade_in_processes(
    jobs: list[Job],
    workers: int = 2,
    progress: Callable[[Job, JobResult], None] | None = None,
    results: dict[Any, JobResult] | None = None,
) -> dict[Any, JobResult]:
    """Run the jobs, at most ``workers`` at a time; return each job's result by its key
    (filling ``results`` if given).

    On ``KeyboardInterrupt`` every running child is killed, the unfinished jobs are
    marked as interrupted (in ``results``), and the interrupt is raised again.
    """
    pending = deque(jobs)
    running: list[_Running] = []
    done: dict[Any, JobResult] = results if results is not None else {}

    def complete(run: _Running, problem: tuple[str, str] | None) -> None:
        running.remove(run)
        done[run.job.key] = _finish(run, problem)
        if progress is not None:
            progress(run.job, done[run.job.key])

    def lose_one_test(run: _Running, status: str, why: str) -> None:
        """The running test hung or killed its process: it alone gets 0, the others go on in a fresh one."""
        assert run.current is not None
        hung, job = run.current, run.job
        running.remove(run)
        result = _finish(run, None)
        remaining = [t for t in job.tests if t not in result.results and t != hung]
        go_on = bool(remaining) and not result.flags and run.restarts < MAX_RESTARTS
        if go_on and "went on" not in why:
            why += "; the other tests went on in a fresh process"
        result.results[hung] = TestResult(status, f"not completed: {why}", result.output, by_parent=True)
        if remaining and not go_on and not result.flags:
            result.problem_kind = status
            result.problem = (f"{MAX_RESTARTS + 1} tests hung or crashed their grading process, so the remaining "
                              f"{len(remaining)} were not run")
        if go_on:
            running.append(_start(Job(job.key, job.notebook, remaining, job.timeout), result, run.restarts + 1))
        else:
            done[job.key] = result
            if progress is not None:
                progress(job, result)

    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                running.append(_start(pending.popleft()))
            now = time.monotonic()
            deadlines = [r.deadline for r in running if r.deadline is not None]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else None
            ready = wait([r.conn for r in running] + [r.process.sentinel for r in running], timeout=wait_s)
            for run in list(running):
                _drain(run, stop_when_finished=True)
                if run.finished:
                    complete(run, None)
                elif run.process.sentinel in ready or not run.process.is_alive():
                    # Exited without saying it was done: drain what is left, then give up on it.
                    _drain(run, stop_when_finished=False)
                    if run.finished:
                        complete(run, None)
                    elif run.current is not None:
                        lose_one_test(run, *_early_end(run))
                    else:
                        complete(run, _early_end(run))
                elif run.deadline is not None and time.monotonic() > run.deadline:
                    what = f"{run.current.name} ran" if run.current else f"{run.phase} took"
                    why = (f"{what} longer than {grading.format_points(run.job.timeout)} s "
                           f"(+{GRACE_S:g} s grace), so the grading process was stopped "
                           "(does the code catch every exception in a loop?)")
                    if run.current is not None:
                        lose_one_test(run, "timeout", why)
                    else:
                        complete(run, ("timeout", why))
    except BaseException:
        for run in list(running):
            complete(run, ("interrupted", "grading was interrupted before this notebook finished"))
        for job in pending:
            done[job.key] = JobResult(problem="grading was interrupted before this notebook started",
                                      problem_kind="interrupted")
        raise
    return done
