"""pytest plugin that grades reference solutions or student notebooks.

Loaded by the root ``conftest.py`` (``pytest_plugins = ["curriculum.pytest_plugin"]``).
Only *graded* tests are affected: functions decorated with
:func:`curriculum.grading.points` that take an ``impl`` argument, in modules
declaring ``CHAPTER = "<chapter>"``.  Every other test (and nbval notebook items)
runs as usual.

- ``pytest tests/graded``: ``impl`` is the module ``solutions.<chapter>``, graded in
  this process.
- ``pytest tests/graded --student PATH``: each student notebook (a file, or a folder
  searched recursively) is graded against its chapter's tests in its own process
  (:mod:`curriculum.isolation`), before the test items run; each item then reports
  its notebook's result.  Tests are parametrized per notebook.
- Graded test modules under a ``hidden`` folder are hidden tests: graded like the
  others, reported separately, and left out of the student release.
- ``--grade-report FILE.json`` writes the scores, plus ``FILE.csv`` and a markdown
  feedback file per notebook (``--feedback-dir``, default ``feedback/`` beside the JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from curriculum.grading import (
    DEFAULT_TIMEOUT,
    UNKNOWN_CHAPTER_HINT,
    Implementation,
    LoadError,
    Outcome,
    chapter_of,
    file_name_chapters,
    find_notebooks,
    grading_spec,
    load_solutions,
    read_notebook,
    run_graded,
)
from curriculum.reports import (
    ChapterGrade,
    TargetGrade,
    TestRecord,
    TestSpec,
    build_report,
    score_text,
    table_lines,
    write_csv,
    write_feedback,
)

SOLUTIONS_LABEL = "solutions"


@dataclass(frozen=True)
class Target:
    """What ``impl`` is loaded from: the solutions package or one student notebook."""

    label: str
    chapter: str
    notebook: Path | None = None  # None: the solutions package


@dataclass
class Student:
    """A notebook given with ``--student``."""

    path: Path
    label: str  # its path relative to the folder given (or as given, for a file)
    student: str  # the first folder under the given folder, else the file name
    candidates: list[str]  # chapters it may be: its metadata, else from its file name
    chapter: str | None = None  # decided once every graded module is collected


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


def _candidates(path: Path) -> list[str]:
    """The chapters a notebook may be: its metadata, else every reading of its file name."""
    try:
        chapter = chapter_of(read_notebook(path))
    except Exception:  # noqa: BLE001 - unreadable notebooks are reported when graded
        chapter = None
    return [chapter] if chapter else file_name_chapters(path.stem)


def _is_hidden(module_file: str) -> bool:
    return "hidden" in Path(module_file).parent.parts


class GradingState:
    """Per-session grading state: targets, graded modules and results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.timeout: float = config.getoption("grading_timeout")
        self.package: str = config.getoption("graded_solutions_package")
        self.workers: int = config.getoption("grading_workers") or min(4, os.cpu_count() or 2)
        self.students: list[Student] | None = None
        paths: list[str] | None = config.getoption("grading_students")
        if paths:
            self.students = []
            seen: set[str] = set()
            for given in paths:
                path = Path(given)
                if not path.exists():
                    raise pytest.UsageError(f"--student: {given} does not exist")
                for notebook, label in find_notebooks(path):
                    parts = Path(label).parts
                    if path.is_file():
                        label = path.as_posix()
                    while label in seen:
                        label += "'"
                    seen.add(label)
                    student = parts[0] if len(parts) > 1 else notebook.stem
                    self.students.append(Student(notebook, label, student, _candidates(notebook)))
        self.modules: dict[str, dict[str, Any]] = {}  # chapter -> {module file: module}
        self.solution_impls: dict[str, Implementation | LoadError] = {}
        self.outcomes: dict[tuple[str, str, str, str], Outcome] = {}  # (label, chapter, file, name)
        self.grades: list[TargetGrade] = []
        self.graded = False

    # -- what is graded ---------------------------------------------------------------------
    def register(self, chapter: str, module: Any) -> None:
        self.modules.setdefault(chapter, {})[str(module.__file__)] = module

    def specs(self, chapter: str) -> list[TestSpec]:
        """Every graded test of a chapter, in file order (public files first): fixes the maximum."""
        specs = []
        files = sorted(self.modules.get(chapter, {}).items(), key=lambda kv: (_is_hidden(kv[0]), kv[0]))
        for file, module in files:
            for name, obj in vars(module).items():
                spec = grading_spec(obj)
                if name.startswith("test") and spec is not None and getattr(obj, "__module__", None) == module.__name__:
                    specs.append(TestSpec(file, name, spec.points, spec.message, spec.part, _is_hidden(file)))
        return specs

    def targets_for(self, chapter: str) -> list[Target]:
        """The targets a graded test module of ``chapter`` runs against."""
        if self.students is None:
            return [Target(SOLUTIONS_LABEL, chapter)]
        return [Target(s.label, chapter, s.path) for s in self.students if chapter in s.candidates]

    def assign_chapters(self) -> None:
        """Decide each notebook's chapter among the collected ones."""
        for s in self.students or []:
            s.chapter = next((c for c in s.candidates if c in self.modules), None)

    # -- grading solutions in this process ----------------------------------------------------
    def solution_impl(self, chapter: str) -> Implementation:
        if chapter not in self.solution_impls:
            from curriculum._warm import warm_up

            warm_up()  # torch's slow first-use work, outside the tests' time limits
            try:
                module = load_solutions(self.package, chapter)
                self.solution_impls[chapter] = Implementation(vars(module), f"{self.package}.{chapter}")
            except LoadError as exc:
                self.solution_impls[chapter] = exc
        result = self.solution_impls[chapter]
        if isinstance(result, LoadError):
            raise result
        return result

    # -- grading notebooks in their own processes -----------------------------------------------
    def grade_students(self) -> None:
        from curriculum.isolation import Job, TestRef, grade_in_processes

        if self.graded or self.students is None:
            return
        self.graded = True
        jobs = []
        for s in self.students:
            if s.chapter is not None:
                refs = [TestRef(spec.file, spec.name) for spec in self.specs(s.chapter)]
                jobs.append(Job(s.label, str(s.path.resolve()), refs, self.timeout))
        results: dict[Any, Any] = {}
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")

        def progress(job: Any, result: Any) -> None:
            student = next(s for s in self.students or [] if s.label == job.key)
            grade = self._chapter_grade(student, result)
            if tr is not None and capman is not None:
                with capman.global_and_fixture_disabled():
                    tr.write_line(f"graded {len(results)}/{len(jobs)}: {job.key} — {student.chapter} {score_text(grade)}"
                                  + (f" [{grade.status}]" if grade.status != "graded" else ""))

        if jobs and tr is not None:
            tr.write_line(f"grading {len(jobs)} notebook(s), {self.workers} at a time, each in its own process")
        try:
            grade_in_processes(jobs, self.workers, progress if tr is not None else None, results)
        finally:
            for s in self.students:
                if s.chapter is not None and s.label in results:
                    grade = self._chapter_grade(s, results[s.label])
                    for record in grade.tests:
                        outcome = Outcome(record.status, record.earned, record.message, record.details)
                        self.outcomes[(s.label, s.chapter, record.spec.file, record.spec.name)] = outcome
                    self.grades.append(TargetGrade(s.label, s.student, {s.chapter: grade}))
                elif s.chapter is None:
                    self.grades.append(self._ungraded(s))

    def _ungraded(self, s: Student) -> TargetGrade:
        if not s.candidates:
            return TargetGrade(s.label, s.student, status="unknown_chapter", message=UNKNOWN_CHAPTER_HINT)
        known = ", ".join(sorted(self.modules)) or "none"
        return TargetGrade(s.label, s.student, status="no_tests",
                           message=f"no graded tests were collected for chapter {s.candidates[0]!r} "
                                   f"(chapters graded in this run: {known}); check the notebook's "
                                   "`curriculum.chapter` metadata or file name, or add that chapter's tests to the run")

    def _chapter_grade(self, s: Student, result: Any) -> ChapterGrade:
        """Turn a process's result into per-test records (tests it did not complete get 0)."""
        from curriculum.isolation import TestRef

        assert s.chapter is not None
        grade = ChapterGrade(s.chapter, [], list(result.flags), dict(result.load),
                             result.problem, result.problem_kind)
        if result.load_error:
            grade.problem, grade.problem_kind = f"could not load your notebook: {result.load_error}", "load_error"
        for spec in self.specs(s.chapter):
            got = result.results.get(TestRef(spec.file, spec.name))
            if grade.flags:
                status, message = "flagged", f"not counted (the submission was flagged) — {spec.message}"
                details = ""
            elif got is not None:
                status, message, details = got.status, got.message, got.details
                if got.by_parent:
                    message = f"{message} — {spec.message}"
            elif result.load_error:
                status, message, details = "error", f"could not load your notebook: {result.load_error}", ""
            elif result.problem_kind in ("timeout", "crashed", "interrupted", "error"):
                status = result.problem_kind if result.problem_kind != "interrupted" else "not_run"
                message, details = f"not completed: {result.problem} — {spec.message}", result.output
            else:
                status, message, details = "not_run", f"not run — {spec.message}", ""
            earned = spec.points if status == "passed" else 0
            grade.tests.append(TestRecord(spec, status, earned, message, details))
        return grade

    # -- grading solutions: records per item ------------------------------------------------
    def solution_grades(self) -> list[TargetGrade]:
        target = TargetGrade(SOLUTIONS_LABEL, SOLUTIONS_LABEL)
        for chapter in self.modules:
            records = []
            for spec in self.specs(chapter):
                outcome = self.outcomes.get((SOLUTIONS_LABEL, chapter, spec.file, spec.name))
                if outcome is None:
                    records.append(TestRecord(spec, "not_run", 0, f"not run — {spec.message}"))
                else:
                    earned = spec.points if outcome.status == "passed" else 0
                    records.append(TestRecord(spec, outcome.status, earned, outcome.message, outcome.details))
            if any(r.status != "not_run" for r in records):
                target.chapters[chapter] = ChapterGrade(chapter, records)
        return [target] if target.chapters else []

    def all_grades(self) -> list[TargetGrade]:
        return self.grades if self.students is not None else self.solution_grades()


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
    group.addoption("--grade-report", dest="grade_report", metavar="FILE",
                    help="write grades as JSON to FILE, a CSV beside it and feedback files")
    group.addoption("--feedback-dir", dest="feedback_dir", metavar="DIR",
                    help="where to write one markdown feedback file per notebook (default: feedback/ beside "
                         "the --grade-report file)")
    group.addoption(
        "--grading-timeout",
        dest="grading_timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit per graded test and per notebook load (default {DEFAULT_TIMEOUT:g}; 0: none)",
    )
    group.addoption("--grading-workers", dest="grading_workers", type=int, default=0, metavar="N",
                    help="notebooks graded at the same time, each in its own process (default: CPU count, at most 4)")
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
    state = metafunc.config.stash[_STATE]
    state.register(chapter, metafunc.module)
    targets = state.targets_for(chapter)
    if targets:
        metafunc.parametrize("impl", targets, ids=[t.label for t in targets])
    else:
        skip = pytest.mark.skip(reason=f"no submission for chapter {chapter}")
        metafunc.parametrize("impl", [pytest.param(None, marks=skip, id="no-submission")])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    if state.students is None:
        return
    state.assign_chapters()
    chapter_of_label = {s.label: s.chapter for s in state.students}
    kept, dropped = [], []
    for item in items:
        target = _target_of(item)
        # A notebook whose file name could be read as two chapters is graded only as the one decided.
        (dropped if target is not None and chapter_of_label.get(target.label) != target.chapter else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    state = session.config.stash[_STATE]
    if state.students is not None and not session.config.option.collectonly:
        state.grade_students()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    target = _target_of(pyfuncitem)
    if target is None:
        return None
    state = pyfuncitem.config.stash[_STATE]
    key = (target.label, target.chapter, str(pyfuncitem.module.__file__), pyfuncitem.originalname)
    if target.notebook is None:
        try:
            impl = state.solution_impl(target.chapter)
        except LoadError as exc:
            outcome = Outcome("error", 0, str(exc))
        else:
            outcome = run_graded(pyfuncitem.obj, impl, state.timeout)
        state.outcomes[key] = outcome
    else:
        state.grade_students()  # normally done already, before the first test
        outcome = state.outcomes.get(key) or Outcome("not_run", 0, "not graded")
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
    if target is None or call.when != "call":
        return report
    outcome = item.stash.get(_OUTCOME, None)
    if outcome is not None and outcome.status not in ("passed", "skipped"):
        verbose = item.config.getoption("tbstyle") == "long" or item.config.get_verbosity() >= 2
        report.longrepr = ShortRepr(outcome.message, outcome.details if verbose else "")
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash[_STATE]
    grades = state.all_grades()
    if any(g.status != "graded" for g in grades) and session.exitstatus == 0:
        session.exitstatus = 1  # a notebook that could not be graded must not pass silently
    path = session.config.getoption("grade_report")
    if path:
        report_path = Path(path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report = build_report(grades)
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_csv(report_path.with_suffix(".csv"), grades)
        feedback = session.config.getoption("feedback_dir")
        write_feedback(Path(feedback) if feedback else report_path.parent / "feedback", grades)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    grades = config.stash[_STATE].all_grades()
    if not grades:
        return
    tr = terminalreporter
    tr.write_sep("=", "grades")
    for line, markup in table_lines(grades):
        tr.write_line(line, **markup)
    report = config.getoption("grade_report")
    if report:
        feedback = config.getoption("feedback_dir") or str(Path(report).parent / "feedback")
        tr.write_line(f"grade report written to {report}, {Path(report).with_suffix('.csv')} and {feedback}/")
