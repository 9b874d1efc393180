"""The chapters' generated files and grader, end to end on the real repository.

* exercises/ and solutions/ are exactly what `python -m curriculum.export` generates;
* the grader gives full marks to solutions/ and 0 to every blank exercise, which proves it can fail.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from curriculum.export import export_all

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb")
                           if nbformat.read(p, as_version=4).metadata.get("curriculum", {}).get("chapter"))


def test_exercises_and_solutions_are_in_sync_with_the_lessons():
    stale = export_all(check=True)
    assert not stale, f"run `python -m curriculum.export`: out of date: {[str(p) for p in stale]}"


def test_every_chapter_has_an_exercise_a_solution_and_graded_tests():
    assert CHAPTER_NOTEBOOKS, "no chapter notebooks found"
    for notebook in CHAPTER_NOTEBOOKS:
        chapter = nbformat.read(notebook, as_version=4).metadata["curriculum"]["chapter"]
        assert (ROOT / "exercises" / notebook.name).is_file()
        assert (ROOT / "solutions" / f"{chapter}.py").is_file()
        assert (ROOT / "tests" / "graded" / f"test_{chapter}.py").is_file()


def grade(tmp_path: Path, *student: str) -> dict:
    report = tmp_path / "grades.json"
    args = [sys.executable, "-m", "pytest", "tests/graded", "-q", "-p", "no:cacheprovider", "--grade-report", str(report)]
    for s in student:
        args += ["--student", s]
    subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert report.is_file(), "the grader wrote no report"
    return json.loads(report.read_text())


def test_solutions_get_full_marks(tmp_path):
    report = grade(tmp_path)
    chapters = report["targets"][0]["chapters"]
    assert set(chapters) == {nbformat.read(n, as_version=4).metadata["curriculum"]["chapter"] for n in CHAPTER_NOTEBOOKS}
    for name, result in chapters.items():
        assert result["score"] == result["max"] > 0, f"{name}: {result}"


def test_blank_exercises_get_zero_with_not_implemented_messages(tmp_path):
    report = grade(tmp_path, "exercises")
    assert len(report["targets"]) == len(CHAPTER_NOTEBOOKS)
    for target in report["targets"]:
        for name, result in target["chapters"].items():
            assert result["max"] > 0 and result["score"] == 0, f"{target['target']} {name}: {result['score']}"
            statuses = {t["status"] for t in result["tests"]}
            assert "not_implemented" in statuses, f"{name}: a blank exercise should be reported as not implemented"
            assert all(t["message"] for t in result["tests"]), "every lost point needs a message for the student"


def part_check(*args: str) -> subprocess.CompletedProcess:
    """`python -m curriculum.part_check` in its own process (it rebuilds every chapter's classes)."""
    return subprocess.run([sys.executable, "-m", "curriculum.part_check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_no_points_for_given_code():
    """Every graded test fails when the student has written everything but its own part, every graded part has a
    self-check cell in its lesson, and every self-check names its part."""
    done = part_check("--json")
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)
    assert set(reports) == {nbformat.read(p, as_version=4).metadata["curriculum"]["chapter"] for p in CHAPTER_NOTEBOOKS}
    assert all(row["cells"] and row["earned"] == 0 for r in reports.values() for row in r["parts"].values())


def test_the_given_code_check_catches_a_part_handed_out(tmp_path):
    """The same check on a copy of chapter 8 whose PrefixTuningModel is given (its solution markers removed)."""
    from curriculum.export import remove_markers

    nb = nbformat.read(ROOT / "notebooks" / "08_prefix_tuning.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("class PrefixTuningModel"))
    assert "### BEGIN SOLUTION" in cell.source
    cell.source = remove_markers(cell.source)
    nbformat.write(nb, tmp_path / "08_prefix_tuning.ipynb")
    done = part_check("--chapter", "prefix_tuning", "--notebooks", str(tmp_path))
    assert done.returncode == 1
    assert "part 'PrefixTuningModel' has no solution region before its self-check" in done.stderr, done.stderr


def test_the_given_code_check_catches_a_test_that_passes_without_its_part(tmp_path):
    """Chapter 8 with only the embedding-only prefix left to write: the tests of the (now given) forward pass
    still earn their points when the part is blank."""
    nb = nbformat.read(ROOT / "notebooks" / "08_prefix_tuning.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("class PrefixTuningModel"))
    forward = cell.source.index("def forward")
    head, tail = cell.source[:forward], cell.source[forward:]
    assert tail.count("### BEGIN SOLUTION") == 1
    cell.source = head + "\n".join(l for l in tail.split("\n") if "### BEGIN SOLUTION" not in l and
                                   "### END SOLUTION" not in l)
    nbformat.write(nb, tmp_path / "08_prefix_tuning.ipynb")
    done = part_check("--chapter", "prefix_tuning", "--notebooks", str(tmp_path))
    assert done.returncode == 1
    assert "with part 'PrefixTuningModel' left blank" in done.stderr and "test_prefix_acts_as_a_kv_cache" in \
        done.stderr, done.stderr
