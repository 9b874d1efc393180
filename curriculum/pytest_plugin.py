"""pytest plugin that grades reference solutions or student notebooks.

Loaded by the root ``conftest.py`` (``pytest_plugins = ["curriculum.pytest_plugin"]``).
Only *graded* tests are affected: functions decorated with
:func:`curriculum.grading.points` that take an ``impl`` argument, in modules
declaring ``CHAPTER = "<chapter>"``.  Every other test (and nbval notebook items)
runs as usual.

- ``pytest tests/graded``: ``impl`` is the module ``solutions.<chapter>``.
- ``pytest tests/graded --student PATH``: ``impl`` holds the definitions of each
  student notebook (a file, or a folder searched recursively) of that chapter;
  tests are parametrized per notebook.
- ``--grade-report FILE.json`` writes the scores; ``--grading-timeout S`` sets the
  per-test time limit; ``--graded-solutions-package NAME`` grades another package.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from curriculum.grading import (
    DEFAULT_TIMEOUT,
    Implementation,
    LoadError,
    Outcome,
    find_notebooks,
    format_points,
    grading_spec,
    load_notebook,
    load_solutions,
    notebook_chapter,
    run_graded,
)

SOLUTIONS_LABEL = "solutions"


@dataclass(frozen=True)
class Target:
    """What ``impl`` is loaded from: the solutions package or one student notebook."""

    label: str
    chapter: str
    notebook: Path | None = None  # None: the solutions package


@dataclass
class Record:
    """One graded test result, as written to the JSON report."""

    target: str
    chapter: str
    name: str
    part: str | None
    points: float
    earned: float
    status: str
    message: str


class GradedTestFailure(Exception):
    """Raised for a failed graded test; the report shows only its short message."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


@dataclass
class _Crash:
    message: str


class ShortRepr:
    """A failure representation that prints the student-facing message instead of a traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        self.reprcrash = _Crash(message)
        self.text = f"{message}\n\n{details.rstrip()}" if details else message

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class GradingState:
    """Per-session grading state: targets, loaded implementations and results."""

    def __init__(self, config: pytest.Config) -> None:
        self.timeout: float = config.getoption("grading_timeout")
        self.package: str = config.getoption("graded_solutions_package")
        self.students: list[tuple[Path, str, str | None]] | None = None
        paths: list[str] | None = config.getoption("grading_students")
        if paths:
            self.students = []
            seen: set[str] = set()
            for given in paths:
                path = Path(given)
                if not path.exists():
                    raise pytest.UsageError(f"--student: {given} does not exist")
                for notebook, label in find_notebooks(path):
                    if path.is_file():
                        label = path.as_posix()
                    while label in seen:
                        label += "'"
                    seen.add(label)
                    self.students.append((notebook, label, notebook_chapter(notebook)))
        self.loaded: dict[Target, Implementation | LoadError] = {}
        self.records: list[Record] = []

    def targets_for(self, chapter: str) -> list[Target]:
        """The targets a graded test module of ``chapter`` runs against."""
        if self.students is None:
            return [Target(SOLUTIONS_LABEL, chapter)]
        return [Target(label, chapter, path) for path, label, ch in self.students if ch == chapter]

    def load(self, target: Target) -> Implementation:
        """Load (once) the definitions of a target; raises :class:`LoadError`."""
        if target not in self.loaded:
            try:
                if target.notebook is None:
                    module = load_solutions(self.package, target.chapter)
                    where = f"{self.package}.{target.chapter}"
                else:
                    module = load_notebook(target.notebook, timeout=self.timeout)
                    where = "your notebook"
                self.loaded[target] = Implementation(vars(module), where)
            except LoadError as exc:
                self.loaded[target] = exc
        result = self.loaded[target]
        if isinstance(result, LoadError):
            raise result
        return result


_STATE = pytest.StashKey[GradingState]()
_OUTCOME = pytest.StashKey[Outcome]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "grading (curriculum)")
    group.addoption(
        "--student",
        action="append",
        dest="grading_students",
        metavar="PATH",
        help="grade student notebooks: a .ipynb file or a folder searched recursively (repeatable)",
    )
    group.addoption("--grade-report", dest="grade_report", metavar="FILE", help="write grades as JSON to FILE")
    group.addoption(
        "--grading-timeout",
        dest="grading_timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit per graded test and per notebook load (default {DEFAULT_TIMEOUT:g}; 0: none)",
    )
    group.addoption(
        "--graded-solutions-package",
        dest="graded_solutions_package",
        default="solutions",
        metavar="NAME",
        help="package holding the reference modules <NAME>.<chapter> (default: solutions)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = GradingState(config)


def _target_of(item: pytest.Item) -> Target | None:
    """The grading target of a graded test item, else ``None``."""
    if not isinstance(item, pytest.Function) or grading_spec(item.obj) is None:
        return None
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("impl") if callspec is not None else None
    return target if isinstance(target, Target) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if grading_spec(metafunc.function) is None or "impl" not in metafunc.fixturenames:
        return
    chapter = getattr(metafunc.module, "CHAPTER", None)
    if not isinstance(chapter, str) or not chapter:
        raise pytest.Collector.CollectError(
            f"{metafunc.module.__name__}: a module with graded tests must define CHAPTER = '<chapter>'"
        )
    targets = metafunc.config.stash[_STATE].targets_for(chapter)
    if targets:
        metafunc.parametrize("impl", targets, ids=[t.label for t in targets])
    else:
        skip = pytest.mark.skip(reason=f"no submission for chapter {chapter}")
        metafunc.parametrize("impl", [pytest.param(None, marks=skip, id="no-submission")])


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    target = _target_of(pyfuncitem)
    if target is None:
        return None
    state = pyfuncitem.config.stash[_STATE]
    try:
        impl = state.load(target)
    except LoadError as exc:
        prefix = "could not load your notebook: " if target.notebook is not None else ""
        outcome = Outcome("error", 0, f"{prefix}{exc}")
    else:
        outcome = run_graded(pyfuncitem.obj, impl, state.timeout)
    pyfuncitem.stash[_OUTCOME] = outcome
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    if outcome.status != "passed":
        raise GradedTestFailure(outcome)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    target = _target_of(item)
    if target is None:
        return report
    spec = grading_spec(item.obj)  # type: ignore[attr-defined]
    assert spec is not None
    outcome: Outcome | None = None
    if call.when == "call":
        outcome = item.stash.get(_OUTCOME, None)
        if outcome is None:  # failed outside our control (should not happen)
            outcome = Outcome("passed" if report.passed else "error", 0, spec.message)
        if outcome.status not in ("passed", "skipped"):
            verbose = item.config.getoption("tbstyle") == "long" or item.config.get_verbosity() >= 2
            report.longrepr = ShortRepr(outcome.message, outcome.details if verbose else "")
    elif call.when == "setup" and not report.passed:
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            outcome = Outcome("skipped", 0, str(reason))
        else:
            outcome = Outcome("error", 0, f"test setup failed — {spec.message}")
    if outcome is not None:
        item.config.stash[_STATE].records.append(
            Record(
                target=target.label,
                chapter=target.chapter,
                name=getattr(item, "originalname", item.name),
                part=spec.part,
                points=spec.points,
                earned=outcome.earned if outcome.status == "passed" else 0,
                status=outcome.status,
                message=outcome.message,
            )
        )
    return report


def group_records(records: list[Record]) -> dict[str, dict[str, list[Record]]]:
    """Records grouped by target, then chapter (in the order tests ran)."""
    grouped: dict[str, dict[str, list[Record]]] = {}
    for record in records:
        grouped.setdefault(record.target, {}).setdefault(record.chapter, []).append(record)
    return grouped


def build_report(records: list[Record]) -> dict[str, Any]:
    """The JSON grade report."""
    targets = []
    for target, chapters in group_records(records).items():
        entry: dict[str, Any] = {}
        for chapter, recs in chapters.items():
            tests = [{k: v for k, v in asdict(r).items() if k not in ("target", "chapter")} for r in recs]
            entry[chapter] = {
                "score": sum(r.earned for r in recs),
                "max": sum(r.points for r in recs),
                "tests": tests,
            }
        targets.append({"target": target, "chapters": entry})
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"generated_at": now, "targets": targets}


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("grade_report")
    if path:
        report = build_report(session.config.stash[_STATE].records)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    records = config.stash[_STATE].records
    if not records:
        return
    tr = terminalreporter
    tr.write_sep("=", "grades")
    for target, chapters in group_records(records).items():
        tr.write_line(target, bold=True)
        for chapter, recs in chapters.items():
            score, total = sum(r.earned for r in recs), sum(r.points for r in recs)
            tr.write_line(f"  {chapter}: {format_points(score)}/{format_points(total)}", green=score == total)
            for r in recs:
                if r.status != "passed":
                    tr.write_line(f"    ✗ {r.name} (0/{format_points(r.points)}): {r.message}", red=True)
    report = config.getoption("grade_report")
    if report:
        tr.write_line(f"grade report written to {report}")
