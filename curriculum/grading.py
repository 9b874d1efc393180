"""Graded tests: declaring them, running them safely, and loading what they grade.

A graded test is a plain function of one argument ``impl`` (the chapter's
definitions) decorated with :func:`points`::

    CHAPTER = "lora"

    @points(2, "B must start at zero so that the adapted model starts identical to the base model",
            part="LoraLinear")
    def test_b_starts_at_zero(impl):
        layer = impl.LoraLinear(nn.Linear(4, 4), rank=2)
        assert torch.all(layer.B == 0)

:func:`run_graded` runs one such test with a time limit and turns whatever
happens into an :class:`Outcome` with a short, student-facing message.  The
pytest plugin (:mod:`curriculum.pytest_plugin`) and :func:`self_check` (used in
notebook cells) both rely on it, so students see the same messages in both.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import itertools
import linecache
import re
import signal
import sys
import threading
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, NamedTuple, TextIO, TypeVar

from curriculum.export import REPO_ROOT, cell_label, chapter_of, export_cells, read_notebook, strip_magics
from curriculum.screening import Scope, screen_cell

DEFAULT_TIMEOUT = 20.0
GRADED_TESTS_DIR = REPO_ROOT / "tests" / "graded"
STATUSES = ("passed", "failed", "not_implemented", "timeout", "error", "skipped", "crashed", "not_run", "flagged")

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- declaring tests
@dataclass(frozen=True)
class GradeSpec:
    """What a graded test is worth and what to tell a student when it fails."""

    points: float
    message: str
    part: str | None = None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def points(n: float, message: str, *, part: str | None = None) -> Callable[[F], F]:
    """Mark a test function as graded: worth ``n`` points, ``message`` shown when it fails.

    ``part`` names the definition the test is about (``self_check(..., part=...)``
    filters on it).  The function must take exactly one argument, ``impl``.
    """

    def decorate(func: F) -> F:
        params = list(inspect.signature(func).parameters.values())
        if [p.name for p in params] != ["impl"] or params[0].kind not in _POSITIONAL:
            raise TypeError(f"graded test {func.__name__} must take exactly one argument `impl`")
        func.__grading__ = GradeSpec(n, message, part)  # type: ignore[attr-defined]
        return func

    return decorate


def grading_spec(func: object) -> GradeSpec | None:
    """The :class:`GradeSpec` of a graded test, or ``None`` for any other object."""
    spec = getattr(func, "__grading__", None)
    return spec if isinstance(spec, GradeSpec) else None


def format_points(value: float) -> str:
    """``2.0`` -> ``"2"``, ``0.5`` -> ``"0.5"``."""
    return f"{value:g}"


# --------------------------------------------------------------------------- the impl object
class MissingDefinition(AttributeError):
    """A graded test asked for a name the submission does not define."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"`{name}` is not defined in {where}")
        self.name = name


class Implementation:
    """The ``impl`` argument of graded tests: attribute access to a chapter's definitions."""

    def __init__(self, namespace: Mapping[str, Any], where: str = "your notebook") -> None:
        self._namespace = namespace
        self._where = where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_namespace", "_where"):
            raise AttributeError(name)
        try:
            return self._namespace[name]
        except KeyError:
            raise MissingDefinition(name, self._where) from None

    def __dir__(self) -> list[str]:
        return sorted(self._namespace)

    def __repr__(self) -> str:
        return f"<definitions from {self._where}>"


# --------------------------------------------------------------------------- time limits
class GradingTimeout(BaseException):
    """Raised inside code that ran past its time limit (a BaseException, so ``except Exception`` misses it)."""


def timeouts_supported() -> bool:
    """Time limits need ``signal.setitimer`` (Unix) and the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`GradingTimeout` in the body after ``seconds`` (repeated every second
    in case the code swallows it).  Does nothing for ``None``/``0`` or where unsupported."""
    if not seconds or seconds <= 0 or not timeouts_supported():
        yield
        return
    active = True

    def on_alarm(signum: int, frame: Any) -> None:
        if active:
            raise GradingTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        while True:  # a late alarm may interrupt the cleanup itself: retry until done
            try:
                active = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                break
            except GradingTimeout:
                continue


# --------------------------------------------------------------------------- running tests
@dataclass
class Outcome:
    """The result of one graded test: a status from :data:`STATUSES` and a student-facing message."""

    status: str
    earned: float
    message: str
    details: str = ""  # full traceback, for instructors


def short_text(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, truncated."""
    try:
        text = str(exc)
    except Exception:
        return ""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _pytest_outcomes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """pytest's ``fail`` and ``skip`` exceptions (empty if pytest is not importable)."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - pytest is a dev dependency
        return (), ()
    return (pytest.fail.Exception,), (pytest.skip.Exception,)


def classify(exc: BaseException, spec: GradeSpec, timeout: float | None = None) -> Outcome:
    """Turn an exception raised by a graded test into a student-facing :class:`Outcome`."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    fail_exc, skip_exc = _pytest_outcomes()
    text = short_text(exc)
    if isinstance(exc, GradingTimeout):
        limit = format_points(timeout or exc.args[0])
        status, reason = "timeout", f"timed out after {limit} s (is there an infinite loop?)"
    elif isinstance(exc, NotImplementedError):
        status, reason = "not_implemented", "not implemented yet"
    elif isinstance(exc, MissingDefinition):
        status, reason = "not_implemented", text
    elif isinstance(exc, skip_exc):
        return Outcome("skipped", 0, f"skipped: {text}" if text else "skipped", details)
    elif isinstance(exc, (AssertionError, *fail_exc)):
        return Outcome("failed", 0, f"{spec.message} ({text})" if text else spec.message, details)
    else:
        name = type(exc).__name__
        status, reason = "error", f"raised {name}: {text}" if text else f"raised {name}"
    return Outcome(status, 0, f"{reason} — {spec.message}", details)


TAMPERED = "the submission changed the grader or a library it uses"


def run_graded(
    test: Callable[[Any], Any], impl: Any, timeout: float | None = DEFAULT_TIMEOUT, *, catch_interrupts: bool = False,
    check: Callable[[], list[str]] | None = None,
) -> Outcome:
    """Run one graded test against ``impl`` with a time limit; never raises, except Ctrl-C
    (``KeyboardInterrupt``) unless ``catch_interrupts`` (set in grading processes, where an
    interrupt can only come from the student's code).

    ``check`` (grading processes) lists what the student's code changed in the grader or the
    libraries; it runs right after the test, before anything judges it, and again after the
    outcome is classified (which formats the student's exception).  Any change gives the
    status ``flagged``, with the changes in ``details``.
    """
    spec = grading_spec(test)
    if spec is None:
        raise TypeError(f"{test!r} is not a graded test (use @points)")
    raised: BaseException | None = None
    try:
        with time_limit(timeout):
            test(impl)
    except KeyboardInterrupt as exc:
        if not catch_interrupts:
            raise
        raised = exc
    except BaseException as exc:  # noqa: BLE001 - student code may raise anything
        raised = exc
    changes = check() if check is not None else []
    if not changes:
        outcome = Outcome("passed", spec.points, spec.message) if raised is None else classify(raised, spec, timeout)
        changes = check() if check is not None else []
        if not changes:
            return outcome
    return Outcome("flagged", 0, f"{TAMPERED} — {spec.message}", "\n".join(changes))


# --------------------------------------------------------------------------- loading submissions
class LoadError(Exception):
    """A submission could not be loaded; the message is written for the student."""


_module_counter = itertools.count()


@dataclass
class LoadInfo:
    """What loading a notebook used and skipped: shown to students and instructors."""

    tagged: bool = True  # False: no cell is tagged `export`, every code cell was scanned
    cells_used: list[int] = field(default_factory=list)  # cells with at least one statement run
    notes: list[str] = field(default_factory=list)  # statements skipped, and why
    flags: list[str] = field(default_factory=list)  # forbidden imports / tampering: the chapter scores 0

    def summary(self) -> str:
        """One line for reports: which cells were loaded."""
        cells = ", ".join(map(str, self.cells_used)) or "none"
        how = "export-tagged cells" if self.tagged else "no cell is tagged `export`, so every code cell was scanned"
        return f"loaded cells {cells} ({how})"


def definitions_of(nb: Any, label: str) -> tuple[list[tuple[int, str, types.CodeType]], LoadInfo]:
    """Compile the definitions of a notebook, cell by cell (see :mod:`curriculum.screening`).

    Returns ``([(cell index, cell source, code)], info)``.  Without any ``export`` tag every
    code cell is scanned with the same rules and cells with syntax errors are skipped;
    with tags, a syntax error in an export cell raises :class:`LoadError`.
    """
    cells = export_cells(nb)
    info = LoadInfo(tagged=bool(cells))
    if not info.tagged:
        cells = [(i, cell) for i, cell in enumerate(nb.cells) if cell.get("cell_type") == "code"]
    scope = Scope()
    compiled = []
    for index, cell in cells:
        source = cell.source
        where = cell_label(index, source)
        if source.lstrip().startswith("%%"):  # cell magic: not Python
            continue
        filename = f"{label} [cell {index}]"
        try:
            tree = ast.parse(strip_magics(source), filename)
        except SyntaxError as exc:
            message = f"{where} has a syntax error on line {exc.lineno}: {exc.msg}"
            if info.tagged:
                raise LoadError(message) from None
            info.notes.append(f"{message}; skipped")
            continue
        screened = screen_cell(tree, scope, where, strict_imports=info.tagged)
        info.notes.extend(screened.notes)
        info.flags.extend(screened.flags)
        if screened.kept:
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            # Without tags every cell of a lesson is scanned, also cells that read what a skipped
            # training loop would have filled in: each statement then runs on its own, and one that
            # fails is skipped with a note instead of failing the whole notebook.
            bodies = [screened.kept] if info.tagged else [[stmt] for stmt in screened.kept]
            for body in bodies:
                code = compile(ast.Module(body=body, type_ignores=[]), filename, "exec")
                compiled.append((index, source, code))
            info.cells_used.append(index)
    return compiled, info


def load_submission(
    path: Path | str, *, timeout: float | None = DEFAULT_TIMEOUT, module_name: str | None = None
) -> tuple[types.ModuleType | None, LoadInfo]:
    """Load only the definitions of a (student) notebook into a fresh module.

    Takes the ``export``-tagged code cells (all code cells if the tags were lost), keeps
    only what :mod:`curriculum.screening` allows and runs it with a time limit.  Returns
    ``(module, info)``; the module is ``None`` when the notebook is flagged (nothing is run).
    Raises :class:`LoadError` with a student-facing message on any other problem.
    """
    path = Path(path)
    try:
        nb = read_notebook(path)
    except Exception as exc:  # noqa: BLE001 - any parse problem
        raise LoadError(f"could not read the notebook: {type(exc).__name__}: {short_text(exc)}") from None
    compiled, info = definitions_of(nb, str(path))
    if info.flags:
        return None, info
    name = module_name or f"_curriculum_submission_{next(_module_counter)}"
    module = types.ModuleType(name, f"Definitions loaded from {path}")
    sys.modules[name] = module  # dataclasses, pickling and typing look classes' modules up here
    current = ""
    try:
        with time_limit(timeout):
            for index, source, code in compiled:
                current = cell_label(index, source)
                if info.tagged:
                    exec(code, module.__dict__)  # noqa: S102 - running the student's definitions is the point
                    continue
                try:
                    exec(code, module.__dict__)  # noqa: S102
                except Exception as exc:  # noqa: BLE001 - untagged: one failing statement is skipped
                    line = min((ln for _, _, ln in code.co_lines() if ln), default="?")
                    text = short_text(exc)
                    info.notes.append(f"{current}, line {line}: skipped, it raised {type(exc).__name__}"
                                      + (f": {text}" if text else "") + " while loading")
    except GradingTimeout:
        sys.modules.pop(name, None)
        raise LoadError(
            f"timed out after {format_points(timeout or 0)} s while running {current} "
            "(is there a long computation outside a function?)"
        ) from None
    except BaseException as exc:  # noqa: BLE001 - includes KeyboardInterrupt raised by the notebook
        sys.modules.pop(name, None)
        text = short_text(exc)
        raise LoadError(f"{current} raised {type(exc).__name__}" + (f": {text}" if text else "")) from exc
    return module, info


def load_notebook(
    path: Path | str, *, timeout: float | None = DEFAULT_TIMEOUT, module_name: str | None = None
) -> types.ModuleType:
    """:func:`load_submission`, returning only the module; :class:`LoadError` if it is flagged."""
    module, info = load_submission(path, timeout=timeout, module_name=module_name)
    if module is None:
        raise LoadError("flagged: " + "; ".join(info.flags))
    return module


def load_solutions(package: str, chapter: str) -> types.ModuleType:
    """Import the reference module ``<package>.<chapter>``; :class:`LoadError` if that fails."""
    name = f"{package}.{chapter}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        hint = " (run `python -m curriculum.export`)" if exc.name in (package, name) else ""
        raise LoadError(f"could not import {name}: {short_text(exc)}{hint}") from exc
    except Exception as exc:  # noqa: BLE001
        raise LoadError(f"could not import {name}: {type(exc).__name__}: {short_text(exc)}") from exc


_NUMBERED_NOTEBOOK = re.compile(r"^\d+[_-](?P<chapter>[A-Za-z_]\w*?)$")
# What browsers, LMSs and file managers add to a copy's name: "03_lora (1)", "03_lora-2", "03_lora copy",
# "03_lora - Copy (2)", "03_lora_v2", "03_lora.ipynb" saved as "03_lora.ipynb.ipynb".
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy|\s+copy|[_-]copy|[_ -]v?\d+|\.ipynb|\s+)$", re.IGNORECASE)


def file_name_chapters(stem: str) -> list[str]:
    """Every chapter a file name can be read as, most literal first:
    ``03_lora`` -> ``[lora]``; ``03_lora (1)`` -> ``[lora]``; ``03_lora_v2`` -> ``[lora_v2, lora]``."""
    candidates: list[str] = []
    name = stem
    while name:
        match = _NUMBERED_NOTEBOOK.match(name)
        if match and match["chapter"] not in candidates:
            candidates.append(match["chapter"])
        shorter = _COPY_SUFFIX.sub("", name)
        if shorter == name:
            break
        name = shorter
    return candidates


def chapter_from_file_name(stem: str, known: Collection[str] | None = None) -> str | None:
    """``03_lora`` -> ``lora``; tolerates copies such as ``03_lora (1)`` or ``03_lora - Copy``.

    With ``known`` chapters, a name that only matches after removing a suffix
    (``03_lora_v2`` -> ``lora``) is preferred over an unknown chapter (``lora_v2``).
    """
    candidates = file_name_chapters(stem)
    if known is not None:
        return next((c for c in candidates if c in known), candidates[0] if candidates else None)
    return candidates[0] if candidates else None


UNKNOWN_CHAPTER_HINT = (
    "could not tell which chapter this notebook is: it has no `curriculum.chapter` metadata and its file "
    "name does not look like `03_lora.ipynb`. Rename it after the exercise it answers (e.g. 03_lora.ipynb) "
    'or add {"curriculum": {"chapter": "lora"}} to its notebook metadata.'
)


def notebook_chapter(path: Path, known: Collection[str] | None = None) -> str | None:
    """A notebook's chapter: its ``curriculum.chapter`` metadata, else from its file name
    (``03_lora.ipynb``, also copies such as ``03_lora (1).ipynb``); None if neither says."""
    try:
        chapter = chapter_of(read_notebook(path))
    except Exception:  # noqa: BLE001 - unreadable notebooks are reported when loaded
        chapter = None
    return chapter or chapter_from_file_name(path.stem, known)


def find_notebooks(path: Path | str) -> list[tuple[Path, str]]:
    """The notebooks under ``path`` (a file or a folder searched recursively), each with a
    readable id: its path relative to the folder (the file name for a single file)."""
    path = Path(path)
    if path.is_file():
        return [(path, path.name)]
    found = [
        p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.relative_to(path).parts
    ]
    return [(p, p.relative_to(path).as_posix()) for p in found]


# --------------------------------------------------------------------------- self-checks
class SelfCheckResult(NamedTuple):
    """``(earned, possible)`` points of a self-check."""

    earned: float
    possible: float

    def _ipython_display_(self) -> None:
        """Show nothing in Jupyter when a cell ends with ``self_check(...)``: the table is printed."""


def load_graded_tests(chapter: str, tests_dir: Path | str | None = None) -> list[Callable[[Any], Any]]:
    """Import ``<tests_dir>/test_<chapter>.py`` and return its graded tests in file order."""
    directory = Path(tests_dir) if tests_dir is not None else GRADED_TESTS_DIR
    path = directory / f"test_{chapter}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no graded tests for chapter {chapter!r}: {path} does not exist")
    name = f"_curriculum_graded_{chapter}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # fresh on every call, so edits to the tests are picked up
    added = str(directory) not in sys.path
    if added:  # like pytest, let graded tests import helpers from their folder
        sys.path.insert(0, str(directory))
    try:
        spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(str(directory))
    declared = getattr(module, "CHAPTER", chapter)
    if declared != chapter:
        raise ValueError(f"{path} declares CHAPTER = {declared!r}, expected {chapter!r}")
    return [
        obj
        for key, obj in vars(module).items()
        if key.startswith("test") and grading_spec(obj) is not None and getattr(obj, "__module__", None) == name
    ]


def self_check(
    chapter: str,
    namespace: Mapping[str, Any],
    part: str | None = None,
    *,
    tests_dir: Path | str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    file: TextIO | None = None,
) -> SelfCheckResult:
    """Run a chapter's graded tests against ``namespace`` (usually ``globals()``) and print a table.

    ``part`` keeps only the tests about one definition.  Returns ``(earned, possible)``.
    """
    tests = load_graded_tests(chapter, tests_dir)
    if part is not None:
        parts = sorted({str(grading_spec(t).part) for t in tests})  # type: ignore[union-attr]
        tests = [t for t in tests if grading_spec(t).part == part]  # type: ignore[union-attr]
        if not tests:
            raise ValueError(f"no graded tests for part {part!r} of chapter {chapter!r}; parts: {parts}")
    from curriculum._warm import warm_up

    warm_up()  # torch's slow first-use work, outside the tests' time limits
    impl = Implementation(namespace)
    rows = []
    for test in tests:
        spec = grading_spec(test)
        assert spec is not None
        outcome = run_graded(test, impl, timeout)
        rows.append((outcome.status == "passed", outcome.earned, spec.points, outcome.message))
    earned = sum(row[1] for row in rows)
    possible = sum(row[2] for row in rows)
    scores = [f"{format_points(e)}/{format_points(p)}" for _, e, p, _ in rows]
    width = max((len(s) for s in scores), default=0)
    out = file if file is not None else sys.stdout
    print(f"Self-check: {chapter}" + (f" / {part}" if part else ""), file=out)
    for (ok, _, _, message), score in zip(rows, scores):
        print(f"{'✓' if ok else '✗'} {score:>{width}}  {message}", file=out)
    verdict = "all passed" if rows and earned == possible else f"{sum(not r[0] for r in rows)} to fix"
    print(f"Total: {format_points(earned)}/{format_points(possible)} points — {verdict}", file=out)
    return SelfCheckResult(earned, possible)
