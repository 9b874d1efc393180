"""The grader against hostile and careless notebooks (issue 10).

Each test builds its notebooks in ``tmp_path`` on a tiny demo chapter and grades a folder
of them through pytest in a subprocess, as an instructor would.  The honest notebook
graded beside the hostile ones must keep its own score.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

REPO_ROOT = Path(__file__).resolve().parents[1]

GRADED = '''\
import torch
from curriculum.grading import points

CHAPTER = "demo"


@points(2, "add must return the sum", part="add")
def test_add(impl):
    assert impl.add(2, 3) == 5


@points(1, "double must double a tensor", part="double")
def test_double(impl):
    assert torch.allclose(impl.double(torch.ones(2)), torch.full((2,), 2.0))


@points(1, "halve must halve a tensor", part="halve")
def test_halve(impl):
    assert torch.allclose(impl.halve(torch.ones(2)), torch.full((2,), 0.5))
'''

HIDDEN = '''\
from curriculum.grading import points

CHAPTER = "demo"


@points(3, "add must work on negative numbers", part="add")
def test_add_negative(impl):
    assert impl.add(-2, -3) == -5
'''

CORRECT = """\
import torch


def add(a, b):
    return a + b


def double(x):
    return 2 * x


def halve(x):
    return x / 2
"""

WRONG_DOUBLE = CORRECT.replace("return 2 * x", "return 3 * x")
BLANK = CORRECT.replace("return a + b", "raise NotImplementedError()").replace(
    "return 2 * x", "raise NotImplementedError()").replace("return x / 2", "raise NotImplementedError()")
FORGE_JSON = """\
def add(a, b):
    import json
    real = json.dumps
    def forged(obj, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("event") == "result":
            obj = {**obj, "status": "passed"}
        return real(obj, *args, **kwargs)
    json.dumps = forged
    raise NotImplementedError()"""
FORGE_CLASSIFY = """\
def add(a, b):
    import sys
    grading = sys.modules["curriculum.grading"]
    real = grading.classify
    def forged(exc, spec, timeout=None):
        grading.classify = real
        return grading.Outcome("passed", spec.points, spec.message)
    grading.classify = forged
    raise NotImplementedError()"""
# Honest code that moves library counters (a forward hook registered and removed moves
# torch.utils.hooks.RemovableHandle.next_id): not tampering.
HOOKS = CORRECT.replace("return a + b", "layer = torch.nn.Linear(1, 1)\n    layer.register_forward_hook("
                        "lambda *args: None).remove()\n    return a + b")


def notebook(*cells: str, tags: bool = True, chapter: str | None = "demo") -> Any:
    nb = new_notebook(metadata={"curriculum": {"chapter": chapter}} if chapter else {})
    nb.cells = [new_code_cell(c, metadata={"tags": ["export"]} if tags else {}) for c in cells]
    return nb


def write(path: Path, nb: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def grade(root: Path, *args: str, timeout: float = 2, workers: int = 2) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Grade ``root/students`` with the demo tests; return the process and the JSON report."""
    (root / "graded").mkdir(exist_ok=True)
    (root / "graded" / "test_demo.py").write_text(GRADED)
    (root / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cmd = [sys.executable, "-m", "pytest", "-p", "curriculum.pytest_plugin", "-p", "no:cacheprovider", "graded",
           "--student", "students", "--grade-report", "out/grades.json", "--grading-timeout", str(timeout),
           "--grading-workers", str(workers), *args]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    report_path = root / "out" / "grades.json"
    assert report_path.exists(), result.stdout + result.stderr
    return result, json.loads(report_path.read_text())


def by_target(report: dict) -> dict[str, dict]:
    return {t["target"]: t for t in report["targets"]}


def scores(report: dict) -> dict[str, tuple[float, float, str]]:
    out = {}
    for t in report["targets"]:
        for chapter in t["chapters"].values():
            out[t["target"]] = (chapter["score"], chapter["max"], chapter["status"])
    return out


HONEST = "zz_honest/03_demo.ipynb"  # graded after the hostile ones (sorted by path)

# Hostile and careless notebooks, all graded in one folder with an honest classmate.
TAMPERING = {  # name: (cells, what the flag says)
    "patch_grader": (["import curriculum.grading as g\ng.classify = lambda e, s, t=None: g.Outcome('passed', s.points, '')\n"],
                     "imports `curriculum.grading`"),
    # the patch runs inside a test, so only the snapshot can see it
    "patch_torch_in_function": ([WRONG_DOUBLE + "\ndef add(a, b):\n    torch.allclose = lambda *a, **k: True\n    return a + b\n"],
                                "torch.allclose was changed"),
    "patch_torch_top_level": ([WRONG_DOUBLE + "\ntorch.allclose = lambda *a, **k: True\n"], "changes `torch.allclose`"),
    "patch_builtins": ([CORRECT + "\ndef add(a, b):\n    import builtins\n    builtins.AssertionError = KeyboardInterrupt\n"
                                  "    return 0\n"], "builtins.AssertionError was changed"),
    "patch_tensor_method": ([WRONG_DOUBLE + "\ndef add(a, b):\n    torch.Tensor.__eq__ = lambda s, o: True\n    return a + b\n"],
                            "torch.Tensor.__eq__ was added"),
    "import_solutions": (["from solutions.demo import *\n"], "imports `solutions.demo`"),
    "import_solutions_in_function": ([CORRECT + "\ndef halve(x):\n    from solutions import demo\n    return demo.halve(x)\n"],
                                     "inside a definition"),
    "import_tests": (["from test_demo import *\n"], "imports `test_demo`"),
    # A blank notebook whose method rewrites the grading process's reports as they are encoded.
    "patch_json_dumps": ([BLANK.replace("def add(a, b):\n    raise NotImplementedError()", FORGE_JSON)],
                         "json.dumps was changed"),
    # A blank notebook that swaps the grader's classify for one that passes everything and puts
    # the original back the first time it is called (so a check at the end sees nothing).
    "patch_classify_and_restore": ([BLANK.replace("def add(a, b):\n    raise NotImplementedError()", FORGE_CLASSIFY)],
                                   "curriculum.grading.classify was changed"),
}
ISOLATION = {  # name: (cells, status of the unfinished tests, words in the problem)
    "exit_in_test": ([CORRECT.replace("return a + b", "import os\n    os._exit(0)")], "crashed", "exited with code 0"),
    "segfault": ([CORRECT.replace("return a + b", "import ctypes\n    ctypes.string_at(0)")], "crashed", "killed by signal"),
    "hang": ([CORRECT.replace("return a + b", "import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                              "    while True:\n        pass")], "timeout", "was stopped"),
    "swallow_timeouts": ([CORRECT.replace("return a + b", "while True:\n        try:\n            while True:\n"
                                                          "                pass\n        except BaseException:\n"
                                                          "            pass")], "timeout", None),
}
INTERRUPT = [CORRECT.replace("return a + b", "raise KeyboardInterrupt")]
CWD = [CORRECT.replace("return a + b", "import os\n    open('written-by-student.txt', 'w').write(os.getcwd())\n"
                                       "    return a + b")]
UNTAGGED_LESSON = ["import torch\nfrom curriculum import self_check\n", CORRECT,
                   "results = {8: run}\nrun = add(1, 2)\nprint(run)\n", "self_check('demo', globals())\n"]


def side_effects(victim: Path) -> list[str]:
    """Module-level code that would delete ``victim`` or exit if loading ran it."""
    target = repr(str(victim))
    return [CORRECT + f"\nimport os\n_ = os.remove({target})\n_ = os._exit(0)\n"
            f"def f(x=os.remove({target})):\n    return x\n"
            f"class C:\n    gone = os.remove({target})\n"
            f"def noisy(fn):\n    os.remove({target})\n    return fn\n"
            "@noisy\ndef g():\n    pass\n"
            f"class Base:\n    def __init_subclass__(cls):\n        os.remove({target})\n"
            "class Sub(Base):\n    pass\n"
            "RATE = float('0.5')\nNAMES = tuple(s for s in ('a', 'b') if s != 'b')\n"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], dict]:
    """One class folder with every hostile case, graded once (as an instructor would)."""
    root = tmp_path_factory.mktemp("class")
    students = root / "students"
    for name, (cells, _) in TAMPERING.items():
        write(students / name / "03_demo.ipynb", notebook(*cells))
    for name, (cells, _, _) in ISOLATION.items():
        write(students / name / "03_demo.ipynb", notebook(*cells))
    write(students / "interrupt" / "03_demo.ipynb", notebook(*INTERRUPT))
    write(students / "amy" / "03_demo.ipynb", notebook(*CWD))
    write(students / "hal" / "03_demo.ipynb", notebook(HOOKS))
    (root / "precious.txt").write_text("keep me")
    write(students / "eve" / "03_demo.ipynb", notebook(*side_effects(root / "precious.txt")))
    write(students / "tim" / "03_demo.ipynb", notebook(*UNTAGGED_LESSON, tags=False))
    write(students / "ann" / "03_demo (1).ipynb", notebook(CORRECT, chapter=None))
    write(students / "ben" / "homework.ipynb", notebook(CORRECT, chapter=None))
    write(students / HONEST, notebook(WRONG_DOUBLE))
    result, report = grade(root, timeout=2)
    return root, result, report


def chapter_of_target(report: dict, name: str) -> dict:
    return by_target(report)[name]["chapters"]["demo"]


def test_the_honest_classmate_keeps_exactly_their_score(folder: tuple[Path, Any, dict]) -> None:
    _, result, report = folder
    assert scores(report)[HONEST] == (3, 4, "graded"), result.stdout + result.stderr
    assert "Traceback" not in result.stdout and result.returncode == 1


# --------------------------------------------------------------------------- tampering is flagged
@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_is_flagged_and_scores_zero(folder: tuple[Path, Any, dict], name: str) -> None:
    _, result, report = folder
    hostile = chapter_of_target(report, f"{name}/03_demo.ipynb")
    assert (hostile["score"], hostile["max"], hostile["status"]) == (0, 4, "flagged")
    reason = TAMPERING[name][1]
    assert any(reason in flag for flag in hostile["flags"]), hostile["flags"]
    assert f"{name}/03_demo.ipynb\n  demo: 0/4\n    FLAGGED, scored 0: " in result.stdout


# --------------------------------------------------------------------------- isolation
@pytest.mark.parametrize("name", ISOLATION)
def test_a_notebook_that_crashes_or_hangs_gets_zero_for_what_it_did_not_complete(
    folder: tuple[Path, Any, dict], name: str
) -> None:
    _, _, report = folder
    _, status, words = ISOLATION[name]
    chapter = chapter_of_target(report, f"{name}/03_demo.ipynb")
    # Only test_add hangs or kills its process: it alone gets 0, with the reason; the other two
    # tests go on in a fresh process and keep their points.
    assert (chapter["score"], chapter["max"], chapter["status"]) == (2, 4, "graded"), chapter
    assert [t["status"] for t in chapter["tests"]] == [status, "passed", "passed"]
    add = chapter["tests"][0]
    assert add["message"].startswith("not completed: ") and add["message"].endswith("add must return the sum")
    assert "the other tests went on in a fresh process" in add["message"]
    if words:
        assert words in add["message"]


def test_honest_code_that_moves_library_counters_is_not_tampering(folder: tuple[Path, Any, dict]) -> None:
    assert scores(folder[2])["hal/03_demo.ipynb"] == (4, 4, "graded")


def test_a_blank_notebook_with_a_forging_patch_is_flagged_even_if_it_restores_it(folder: tuple[Path, Any, dict]) -> None:
    for name in ("patch_json_dumps", "patch_classify_and_restore"):
        chapter = chapter_of_target(folder[2], f"{name}/03_demo.ipynb")
        flags = "\n".join(chapter["flags"])
        assert "while test_add ran" in flags, flags  # caught right after the test that patched, before judging it
        assert all(t["earned"] == 0 for t in chapter["tests"])


def test_a_keyboard_interrupt_from_the_notebook_is_only_that_tests_error(folder: tuple[Path, Any, dict]) -> None:
    chapter = chapter_of_target(folder[2], "interrupt/03_demo.ipynb")
    tests = {t["name"]: t for t in chapter["tests"]}
    assert tests["test_add"]["status"] == "error" and "KeyboardInterrupt" in tests["test_add"]["message"]
    assert (chapter["score"], chapter["max"], chapter["status"]) == (2, 4, "graded")


def test_loading_at_module_level_cannot_exit_or_delete_files(folder: tuple[Path, Any, dict]) -> None:
    root, _, report = folder
    assert (root / "precious.txt").read_text() == "keep me"
    chapter = chapter_of_target(report, "eve/03_demo.ipynb")
    assert (chapter["score"], chapter["status"]) == (4, "graded")
    notes = "\n".join(chapter["loaded"]["notes"])
    for skipped in ("_ = os.remove", "_ = os._exit", "def f(x=os.remove", "@noisy", "__init_subclass__",
                    "gone = os.remove"):  # a class body keeps its methods, loses the call
        assert skipped in notes, notes
    assert "RATE" not in notes and "NAMES" not in notes  # safe constants are kept


def test_grading_runs_in_a_temporary_working_directory(folder: tuple[Path, Any, dict]) -> None:
    root, _, report = folder
    assert scores(report)["amy/03_demo.ipynb"] == (4, 4, "graded")
    assert not list(root.rglob("written-by-student.txt")), "written in the temporary folder, then removed"


# --------------------------------------------------------------------------- loading and chapters
def test_reference_without_export_tags_gets_full_marks_and_the_cells_used_are_reported(
    folder: tuple[Path, Any, dict]
) -> None:
    _, result, report = folder
    chapter = chapter_of_target(report, "tim/03_demo.ipynb")
    assert (chapter["score"], chapter["status"]) == (4, "graded")
    assert chapter["loaded"]["tagged"] is False and chapter["loaded"]["cells_used"] == [0, 1]
    assert "no cell is tagged `export`; definitions taken from cells 0, 1" in result.stdout


def test_unknown_chapter_and_copies_are_reported_not_dropped(folder: tuple[Path, Any, dict]) -> None:
    root, result, report = folder
    assert scores(report)["ann/03_demo (1).ipynb"] == (4, 4, "graded")
    ben = by_target(report)["ben/homework.ipynb"]
    assert ben["status"] == "unknown_chapter" and ben["chapters"] == {}
    assert "03_lora.ipynb" in ben["message"] and '"curriculum": {"chapter"' in ben["message"]
    assert "ben/homework.ipynb\n  unknown chapter: could not tell which chapter" in result.stdout
    rows = list(csv.DictReader((root / "out" / "grades.csv").open()))
    assert {"student": "ben", "chapter": "", "score": "0", "max": "0", "status": "unknown_chapter",
            "notebook": "ben/homework.ipynb"} in rows


# --------------------------------------------------------------------------- hidden tests and LMS output
def test_hidden_tests_are_graded_and_reported_separately_with_csv_and_feedback(tmp_path: Path) -> None:
    (tmp_path / "graded" / "hidden").mkdir(parents=True)
    (tmp_path / "graded" / "hidden" / "test_demo_hidden.py").write_text(HIDDEN)
    write(tmp_path / "students" / "alice" / "03_demo.ipynb", notebook(CORRECT))
    write(tmp_path / "students" / "bob" / "03_demo.ipynb", notebook(CORRECT.replace("return a + b", "return abs(a) + abs(b)")))
    result, report = grade(tmp_path)
    alice = by_target(report)["alice/03_demo.ipynb"]["chapters"]["demo"]
    bob = by_target(report)["bob/03_demo.ipynb"]["chapters"]["demo"]
    assert (alice["score"], alice["max"]) == (7, 7)
    assert (bob["score"], bob["max"], bob["public"], bob["hidden"]) == (4, 7, {"score": 4, "max": 4}, {"score": 0, "max": 3})
    assert [t["hidden"] for t in bob["tests"]] == [False, False, False, True]
    assert "demo: 4/7 (public 4/4, hidden 0/3)" in result.stdout
    assert "✗ hidden test_add_negative (0/3): add must work on negative numbers" in result.stdout
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [(r["student"], r["chapter"], r["score"], r["max"]) for r in rows] == [
        ("alice", "demo", "7", "7"), ("bob", "demo", "4", "7")]
    feedback = (tmp_path / "out" / "feedback" / "bob" / "03_demo.md").read_text()
    assert feedback.startswith("# Feedback: bob/03_demo.ipynb\n\n## demo: 4/7 (public 4/4, hidden 0/3)")
    assert "### Public tests: 4/4" in feedback and "### Hidden tests: 0/3" in feedback
    assert "0 of 1 hidden tests passed" in feedback
    # The student's feedback does not give the hidden tests away; the instructor's JSON has them.
    assert "negative" not in feedback and "test_add_negative" not in feedback
    assert bob["tests"][3]["name"] == "test_add_negative" and "negative" in bob["tests"][3]["message"]


def test_a_notebook_that_hangs_in_every_test_stops_being_restarted(tmp_path: Path, monkeypatch) -> None:
    """A hang costs one test and the rest go on in a fresh process, but not forever: after MAX_RESTARTS
    fresh processes the notebook's remaining tests are not run (one notebook cannot hold up a class)."""
    from curriculum import isolation

    monkeypatch.setattr(isolation, "GRACE_S", 0.5)
    monkeypatch.setattr(isolation, "MAX_RESTARTS", 1)
    (tmp_path / "test_demo.py").write_text(GRADED)
    stuck = "import signal\n\n\ndef spin(*args):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n" \
            "        pass\n\n\nadd = double = halve = spin\n"
    path = write(tmp_path / "03_demo.ipynb", notebook(stuck))
    refs = [isolation.TestRef(str(tmp_path / "test_demo.py"), name) for name in ("test_add", "test_double", "test_halve")]
    result = isolation.grade_in_processes([isolation.Job("demo", str(path), refs, 0.5)], workers=1)["demo"]
    assert [result.results[r].status for r in refs[:2]] == ["timeout", "timeout"]
    assert refs[2] not in result.results and result.problem_kind == "timeout"
    assert "the remaining 1 were not run" in result.problem
