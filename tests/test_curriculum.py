"""Tests of the curriculum machinery: export, loading submissions, grading, self-checks.

Everything runs on a tiny DEMO chapter built in ``tmp_path``; nothing in the
repository's notebooks/, exercises/ or solutions/ is touched.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from curriculum.export import ExportError, export_all, main, make_exercise, make_solution_module
from curriculum.grading import (
    Implementation,
    LoadError,
    load_notebook,
    points,
    run_graded,
    self_check,
    time_limit,
    timeouts_supported,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

ADD_CELL = '''\
import math


def add(a, b):
    """Return a + b."""
    ### BEGIN SOLUTION
    return a + b
    ### END SOLUTION
'''

SCALER_CELL = """\
DEFAULT_FACTOR = 2


class Scaler:
    def __init__(self, factor=DEFAULT_FACTOR):
        self.factor = factor

    def scale(self, x):
        if x is None:
            ### BEGIN SOLUTION
            return None
            ### END SOLUTION
        ### BEGIN SOLUTION
        return x * self.factor
        ### END SOLUTION
"""

GRADED_TESTS = '''\
"""Graded tests of the demo chapter."""

from curriculum.grading import points

CHAPTER = "demo"


@points(2, "add must return the sum of its arguments", part="add")
def test_add(impl):
    assert impl.add(2, 3) == 5


@points(1, "Scaler.scale must multiply by the factor", part="Scaler")
def test_scale(impl):
    assert impl.Scaler(3).scale(2) == 6


def test_plain():
    """Not graded: runs as an ordinary test."""
'''


def lesson(add: str = ADD_CELL, scaler: str = SCALER_CELL, tags: bool = True, chapter: bool = True) -> Any:
    """The demo lesson notebook (``add``/``scaler`` replace its export cells)."""
    meta = {"tags": ["export"]} if tags else {}
    nb = new_notebook(metadata={"curriculum": {"chapter": "demo"}} if chapter else {})
    out = new_output("stream", name="stdout", text="3\n")
    nb.cells = [
        new_markdown_cell("# Demo\n\nWe add numbers.", id="intro"),
        new_code_cell(add, metadata=dict(meta), id="add"),
        new_code_cell(scaler, metadata=dict(meta), id="scaler"),
        new_code_cell("print(add(1, 2))\nresult = add(2, 2)", execution_count=3, outputs=[out], id="run"),
        new_code_cell("from curriculum import self_check\nself_check('demo', globals())", id="check"),
    ]
    return nb


def write_nb(path: Path, nb: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------- export
def test_exercise_replaces_regions_at_their_indentation() -> None:
    nb = lesson()
    ex = make_exercise(nb, "notebooks/03_demo.ipynb")
    assert ex.cells[1].source == ADD_CELL.replace(
        "    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n",
        "    # YOUR CODE HERE\n    raise NotImplementedError()\n",
    )
    scaler = ex.cells[2].source
    assert "            # YOUR CODE HERE\n            raise NotImplementedError()\n" in scaler
    assert "        # YOUR CODE HERE\n        raise NotImplementedError()\n" in scaler
    assert "return x * self.factor" not in scaler and "BEGIN SOLUTION" not in scaler
    assert ex.cells[3].outputs == [] and ex.cells[3].execution_count is None
    assert ex.cells[0] == nb.cells[0] and ex.cells[4].source == nb.cells[4].source
    assert ex.metadata.curriculum.chapter == "demo"
    assert "notebooks/03_demo.ipynb" in ex.metadata.curriculum.generated
    assert nb.cells[3].outputs, "the input notebook must not be modified"


def test_solution_module_keeps_region_content() -> None:
    text = make_solution_module(lesson(), "notebooks/03_demo.ipynb")
    assert text.startswith('"""Generated from notebooks/03_demo.ipynb by `python -m curriculum.export`.')
    assert "Do not edit by hand." in text
    assert "### " not in text and "print(" not in text and "self_check" not in text
    assert "    return a + b\n" in text and "            return None\n" in text
    assert text.index("def add") < text.index("class Scaler") and text.endswith("\n")
    namespace: dict[str, Any] = {}
    exec(compile(text, "demo.py", "exec"), namespace)
    assert namespace["add"](2, 3) == 5 and namespace["Scaler"]().scale(4) == 8


@pytest.mark.parametrize(
    "source, problem",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "without a matching `### END SOLUTION`"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching `### BEGIN SOLUTION`"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "nested"),
    ],
)
def test_unbalanced_markers_name_notebook_and_cell(source: str, problem: str) -> None:
    with pytest.raises(ExportError, match=problem) as info:
        make_exercise(lesson(add=source), "notebooks/03_demo.ipynb")
    assert "notebooks/03_demo.ipynb, cell 1" in str(info.value)
    with pytest.raises(ExportError, match="cell 1"):
        make_solution_module(lesson(add=source), "notebooks/03_demo.ipynb")


def test_export_all_is_deterministic_and_checkable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebooks, exercises, solutions = tmp_path / "notebooks", tmp_path / "exercises", tmp_path / "solutions"
    write_nb(notebooks / "03_demo.ipynb", lesson())
    write_nb(notebooks / "00_intro.ipynb", lesson(chapter=False))  # no chapter: no outputs
    dirs = ["--notebooks", str(notebooks), "--exercises", str(exercises), "--solutions", str(solutions)]
    assert main([*dirs, "--check"]) == 1
    assert main(dirs) == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "exercises/03_demo.ipynb",
        "notebooks/00_intro.ipynb",
        "notebooks/03_demo.ipynb",
        "solutions/__init__.py",
        "solutions/demo.py",
    ]
    first = {p: p.read_bytes() for p in (exercises / "03_demo.ipynb", solutions / "demo.py")}
    assert first[exercises / "03_demo.ipynb"].endswith(b"}\n")
    assert export_all(notebooks, exercises, solutions) == []  # nothing rewritten
    assert {p: p.read_bytes() for p in first} == first
    assert main([*dirs, "--check"]) == 0
    (solutions / "demo.py").write_text("# edited by hand\n")
    capsys.readouterr()
    assert main([*dirs, "--check"]) == 1
    assert "demo.py" in capsys.readouterr().out


def test_export_errors(tmp_path: Path) -> None:
    write_nb(tmp_path / "nb" / "03_demo.ipynb", lesson())
    write_nb(tmp_path / "nb" / "04_again.ipynb", lesson())
    with pytest.raises(ExportError, match="duplicate chapter 'demo'"):
        export_all(tmp_path / "nb", tmp_path / "ex", tmp_path / "sol")
    write_nb(tmp_path / "nb" / "04_again.ipynb", lesson(tags=False))
    (tmp_path / "nb" / "04_again.ipynb").write_text(
        (tmp_path / "nb" / "04_again.ipynb").read_text().replace('"demo"', '"again"')
    )
    with pytest.raises(ExportError, match="04_again.ipynb: chapter notebook has no code cell tagged `export`"):
        export_all(tmp_path / "nb", tmp_path / "ex", tmp_path / "sol")
    assert not (tmp_path / "ex").exists(), "nothing is written when a notebook is broken"


# --------------------------------------------------------------------------- loading submissions
def test_student_loading_keeps_only_definitions(tmp_path: Path) -> None:
    nb = lesson()
    nb.cells[1].source = "%matplotlib inline\n!pip install nothing\n" + ADD_CELL + "print('side effect')\n"
    nb.cells[3].source = "raise RuntimeError('lesson content must not run')"
    module = load_notebook(write_nb(tmp_path / "s.ipynb", nb))
    assert module.add(1, 2) == 3 and module.DEFAULT_FACTOR == 2 and module.math.pi
    assert not hasattr(module, "result")


def test_student_loading_without_tags_scans_all_code_cells(tmp_path: Path) -> None:
    nb = lesson(tags=False)
    nb.cells.append(new_code_cell("model = add(1, 2)\nwhile True:\n    pass\nRATE = float('0.5')\nname = 'x'"))
    module = load_notebook(write_nb(tmp_path / "s.ipynb", nb), timeout=5)
    assert module.add(1, 2) == 3 and module.RATE == 0.5 and module.name == "x"
    assert not hasattr(module, "model") and not hasattr(module, "result")


def test_student_loading_errors(tmp_path: Path) -> None:
    broken = write_nb(tmp_path / "syntax.ipynb", lesson(scaler="class Scaler(:\n    pass\n"))
    with pytest.raises(LoadError, match=r"cell 2 \(`class Scaler\(:`\) has a syntax error on line 1"):
        load_notebook(broken)
    raising = write_nb(tmp_path / "raising.ipynb", lesson(scaler="import no_such_module_xyz\n"))
    with pytest.raises(LoadError, match="cell 2 .* raised ModuleNotFoundError"):
        load_notebook(raising)
    (tmp_path / "garbage.ipynb").write_text("not json")
    with pytest.raises(LoadError, match="could not read the notebook"):
        load_notebook(tmp_path / "garbage.ipynb")


# --------------------------------------------------------------------------- messages and time limits
@points(2, "B must start at zero", part="LoRALinear")
def graded_demo(impl: Any) -> None:
    assert impl.value() == 42, "got a different value"


def outcome_for(value: Any, timeout: float = 2.0) -> tuple[str, str]:
    outcome = run_graded(graded_demo, Implementation({"value": value} if value else {}), timeout)
    return outcome.status, outcome.message


def test_message_classification() -> None:
    def raise_(exc: BaseException) -> Any:
        def f() -> Any:
            raise exc

        return f

    assert outcome_for(lambda: 42) == ("passed", "B must start at zero")
    assert outcome_for(lambda: 41) == ("failed", "B must start at zero (got a different value)")
    assert outcome_for(raise_(NotImplementedError())) == ("not_implemented", "not implemented yet — B must start at zero")
    assert outcome_for(None) == ("not_implemented", "`value` is not defined in your notebook — B must start at zero")
    assert outcome_for(raise_(TypeError("bad\nmore"))) == ("error", "raised TypeError: bad — B must start at zero")
    assert outcome_for(raise_(SystemExit())) == ("error", "raised SystemExit — B must start at zero")
    assert run_graded(graded_demo, Implementation({"value": lambda: 42}), None).earned == 2
    with pytest.raises(TypeError, match="exactly one argument `impl`"):
        points(1, "x")(lambda impl, other: None)


@pytest.mark.skipif(not timeouts_supported(), reason="needs SIGALRM and the main thread")
def test_timeout_stops_infinite_loops_even_if_they_swallow_exceptions() -> None:
    def stubborn() -> None:
        for _ in range(3):
            try:
                while True:
                    pass
            except Exception:  # a timeout is not an Exception
                pass

    status, message = outcome_for(stubborn, timeout=0.2)
    assert (status, message) == ("timeout", "timed out after 0.2 s (is there an infinite loop?) — B must start at zero")
    with time_limit(0.05):  # the alarm is disarmed afterwards
        pass
    import time

    time.sleep(0.1)


# --------------------------------------------------------------------------- self-check
def test_self_check(tmp_path: Path) -> None:
    (tmp_path / "test_demo.py").write_text(GRADED_TESTS)
    namespace: dict[str, Any] = {}
    exec(compile(make_solution_module(lesson(), "demo"), "demo", "exec"), namespace)
    out = io.StringIO()
    assert self_check("demo", namespace, tests_dir=tmp_path, file=out) == (3, 3)
    assert out.getvalue().splitlines() == [
        "Self-check: demo",
        "✓ 2/2  add must return the sum of its arguments",
        "✓ 1/1  Scaler.scale must multiply by the factor",
        "Total: 3/3 points — all passed",
    ]
    out = io.StringIO()
    del namespace["Scaler"]
    assert self_check("demo", namespace, part="Scaler", tests_dir=tmp_path, file=out) == (0, 1)
    assert "✗ 0/1  `Scaler` is not defined in your notebook — Scaler.scale" in out.getvalue()
    with pytest.raises(FileNotFoundError, match="no graded tests for chapter 'nope'"):
        self_check("nope", namespace, tests_dir=tmp_path)


def current_env_kernel() -> Any:
    """A kernel manager running this interpreter (like nbval's --nbval-current-env)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())

    return KernelManager(kernel_name="current-env", kernel_spec_manager=CurrentEnv())


def test_self_check_in_a_jupyter_kernel(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    (tmp_path / "test_demo.py").write_text(GRADED_TESTS)
    nb = lesson(add="def add(a, b):\n    while True:\n        pass\n")
    nb.cells[3].source = "pass"
    nb.cells[4].source = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from curriculum import self_check\n"
        f"self_check('demo', globals(), tests_dir={str(tmp_path)!r}, timeout=0.5)"
    )
    nbclient.NotebookClient(nb, timeout=60, km=current_env_kernel()).execute()
    text = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert "✗ 0/2  timed out after 0.5 s" in text and "✓ 1/1" in text and "Total: 1/3" in text
    assert not [o for o in nb.cells[4].outputs if o.output_type == "execute_result"]


# --------------------------------------------------------------------------- the pytest plugin, end to end
def run_pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on the demo chapter in a subprocess isolated from the repository config."""
    (cwd / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(cwd)]), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "curriculum.pytest_plugin", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def demo_chapter(tmp_path: Path) -> Path:
    """A demo chapter: lesson notebook, graded tests, exported exercise and solutions."""
    write_nb(tmp_path / "notebooks" / "03_demo.ipynb", lesson())
    (tmp_path / "graded").mkdir()
    (tmp_path / "graded" / "test_demo.py").write_text(GRADED_TESTS)
    export_all(tmp_path / "notebooks", tmp_path / "exercises", tmp_path / "demo_solutions")
    return tmp_path


def test_plugin_grades_solutions(demo_chapter: Path) -> None:
    result = run_pytest(demo_chapter, "graded", "--graded-solutions-package", "demo_solutions")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "solutions\n  demo: 3/3" in result.stdout


def test_plugin_grades_student_notebooks(demo_chapter: Path) -> None:
    students = demo_chapter / "students"
    write_nb(students / "alice" / "03_demo.ipynb", lesson())
    nbformat.write(nbformat.read(demo_chapter / "exercises" / "03_demo.ipynb", 4), students / "bob.ipynb")
    write_nb(students / "carol" / "03_demo.ipynb", lesson(add="def add(a, b):\n    while True:\n        pass\n"))
    write_nb(students / "dave" / "03_demo.ipynb", lesson(add="def add(a, b):\n    raise TypeError('nope')\n", scaler=""))
    erin = lesson(tags=False, chapter=False)  # lost tags and metadata: chapter from the file name
    erin.cells[3].source = "print(add(1 2))"  # a broken lesson cell: skipped, since it is not a definition
    write_nb(students / "erin" / "03_demo.ipynb", erin)
    write_nb(students / "gina" / "03_demo.ipynb", lesson(scaler="class Scaler(:\n    pass\n"))
    write_nb(students / "frank" / "05_other.ipynb", lesson(chapter=False))  # a chapter with no graded tests
    args = ["graded", "--student", "students", "--grade-report", "out/grades.json", "--grading-timeout", "1"]
    result = run_pytest(demo_chapter, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout
    report = json.loads((demo_chapter / "out" / "grades.json").read_text())
    assert "T" in report["generated_at"]
    targets = {t["target"]: t["chapters"] for t in report["targets"]}
    assert sorted(targets) == ["alice/03_demo.ipynb", "bob.ipynb", "carol/03_demo.ipynb", "dave/03_demo.ipynb",
                               "erin/03_demo.ipynb", "frank/05_other.ipynb", "gina/03_demo.ipynb"]
    scores = {name: (ch["demo"]["score"], ch["demo"]["max"]) for name, ch in targets.items() if ch}
    assert scores == {
        "alice/03_demo.ipynb": (3, 3),
        "bob.ipynb": (0, 3),
        "carol/03_demo.ipynb": (1, 3),
        "dave/03_demo.ipynb": (0, 3),
        "erin/03_demo.ipynb": (3, 3),
        "gina/03_demo.ipynb": (0, 3),
    }
    frank = next(t for t in report["targets"] if t["target"] == "frank/05_other.ipynb")
    assert frank["status"] == "no_tests" and "chapter 'other'" in frank["message"] and frank["chapters"] == {}

    def tests(name: str) -> dict[str, tuple[str, str]]:
        return {t["name"]: (t["status"], t["message"]) for t in targets[name]["demo"]["tests"]}

    assert tests("alice/03_demo.ipynb")["test_add"][0] == "passed"
    assert targets["alice/03_demo.ipynb"]["demo"]["tests"][0] == {
        "name": "test_add",
        "part": "add",
        "points": 2,
        "earned": 2,
        "status": "passed",
        "message": "add must return the sum of its arguments",
        "hidden": False,
    }
    assert targets["alice/03_demo.ipynb"]["demo"]["loaded"]["cells_used"] == [1, 2]
    assert tests("bob.ipynb")["test_add"] == ("not_implemented", "not implemented yet — add must return the sum of its arguments")
    assert tests("carol/03_demo.ipynb")["test_add"][0] == "timeout"
    assert "timed out after 1 s" in tests("carol/03_demo.ipynb")["test_add"][1]
    assert tests("dave/03_demo.ipynb")["test_add"] == ("error", "raised TypeError: nope — add must return the sum of its arguments")
    assert tests("dave/03_demo.ipynb")["test_scale"][1].startswith("`Scaler` is not defined in your notebook")
    erin_load = targets["erin/03_demo.ipynb"]["demo"]["loaded"]
    assert erin_load["tagged"] is False and erin_load["cells_used"] == [1, 2]
    assert any("cell 3 (`print(add(1 2))`) has a syntax error" in note for note in erin_load["notes"])
    assert tests("gina/03_demo.ipynb")["test_scale"] == (
        "error",
        "could not load your notebook: cell 2 (`class Scaler(:`) has a syntax error on line 1: invalid syntax",
    )
    assert targets["gina/03_demo.ipynb"]["demo"]["status"] == "load_error"
    assert "carol/03_demo.ipynb\n  demo: 1/3\n    ✗ test_add (0/2): timed out after 1 s" in result.stdout
    assert "frank/05_other.ipynb\n  no tests: no graded tests were collected for chapter 'other'" in result.stdout
    assert "7 failed, 6 passed" in result.stdout  # alice 2, carol 1, erin 2, and the plain test


def test_plugin_skips_chapters_without_submission(demo_chapter: Path) -> None:
    write_nb(demo_chapter / "students" / "05_other.ipynb", lesson(chapter=False))
    result = run_pytest(demo_chapter, "graded", "--student", "students", "-rs", "--grade-report", "g.json")
    assert "no submission for chapter demo" in result.stdout
    # The notebook is of a chapter with no graded tests: reported, and the run fails.
    assert result.returncode == 1, result.stdout + result.stderr
    targets = json.loads((demo_chapter / "g.json").read_text())["targets"]
    assert [(t["target"], t["status"]) for t in targets] == [("05_other.ipynb", "no_tests")]
