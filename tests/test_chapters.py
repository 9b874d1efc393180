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
import pytest

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
