"""Grading a class for real (issue 21): the lessons themselves, handed in as student notebooks.

An instructor's first check of a grader is to hand it the complete lessons as if a perfect
student had written them, and the blank exercises as if a student had written nothing. This
module does exactly that, through pytest in a subprocess as an instructor runs it:

- every lesson gets full marks and every exercise 0, with their ``export`` tags and without;
- the same in the student release, whose ``solutions`` stand-ins load the student's own work;
- correct designs the lessons do not use (a second ``merge()`` that raises) keep full marks,
  and realistic bugs lose points, so losing points means something.

Each notebook here is built from the lessons in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from curriculum.export import chapter_of, read_notebook
from curriculum.release import release

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (REPO_ROOT / "notebooks").glob("*.ipynb") if chapter_of(read_notebook(p)))
EXERCISES = sorted((REPO_ROOT / "exercises").glob("*.ipynb"))

# A correct design the lessons do not use: refusing a second merge() instead of ignoring it.
MERGE_LESSON = (
    "    if not self.merged:\n"
    "        self.base_layer.weight += self.get_delta_weight()\n"
    "        self.merged = True\n"
)
MERGE_REFUSES = (
    "    if self.merged:\n"
    "        raise RuntimeError('this layer is already merged')\n"
    "    self.base_layer.weight += self.get_delta_weight()\n"
    "    self.merged = True\n"
)
ALTERNATIVES = {  # name: (lesson, [(text in the lesson, replacement)])
    "lora_second_merge_raises": ("03_lora", [(MERGE_LESSON, MERGE_REFUSES)]),
}
# Realistic bugs: each must lose points (the tests load the methods the bug is in and judge them).
BUGS = {
    "lora_delta_without_scaling": ("03_lora", [("return (self.lora_B.weight @ self.lora_A.weight) * self.scaling",
                                                "return self.lora_B.weight @ self.lora_A.weight")]),
    "lora_unmerge_does_nothing": ("03_lora", [("        self.base_layer.weight -= self.get_delta_weight()\n",
                                               "        pass\n")]),
    "lora_backbone_not_frozen": ("03_lora", [("    model.requires_grad_(False)\n    # Find the targeted",
                                              "    # Find the targeted")]),
    "adapters_without_skip": ("05_adapters", [("return h + self.up(self.act(self.down(h)))",
                                               "return self.up(self.act(self.down(h)))")]),
    "adapters_before_the_projection": ("05_adapters", [("return self.adapter(self.base_layer(x))",
                                                        "return self.base_layer(self.adapter(x))")]),
    "adapters_up_not_zeroed": ("05_adapters", [("        nn.init.zeros_(self.up.weight)", "        pass")]),
}


def edited(lesson: str, edits: list[tuple[str, str]]) -> Any:
    """The lesson with each text replaced (each must occur exactly once in its code cells)."""
    nb = read_notebook(REPO_ROOT / "notebooks" / f"{lesson}.ipynb")
    for old, new in edits:
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1 and cells[0].source.count(old) == 1, f"{old!r} is not in {lesson} exactly once"
        cells[0].source = cells[0].source.replace(old, new)
    return nb


def untagged(path: Path) -> Any:
    """A notebook whose cell tags were lost (an editor or an LMS that drops metadata)."""
    nb = read_notebook(path)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    return nb


def grade(cwd: Path, students: Path, report: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    """Grade a folder the way the README says; return the run and ``{target: {chapter: grade}}``."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if cwd != REPO_ROOT:
        env["PYTHONPATH"] = str(cwd)  # the release's own grader and stand-ins, as a student would have
    cmd = [sys.executable, "-m", "pytest", "tests/graded", "-q", "-p", "no:cacheprovider", "--student", str(students),
           "--grade-report", str(report)]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    targets = json.loads(report.read_text())["targets"]
    return result, {t["target"]: t["chapters"] for t in targets}


def only_grade(grades: dict[str, dict], target: str) -> dict:
    (chapter,) = grades[target].values()
    return chapter


def lost(chapter: dict) -> list[str]:
    return [f"{t['name']}: {t['message']}" for t in chapter["tests"] if t["status"] != "passed"]


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Lessons, exercises, both without tags, correct alternatives and bugs: graded in one run."""
    root = tmp_path_factory.mktemp("class")
    students = root / "students"
    for path in LESSONS:
        nbformat.write(read_notebook(path), _mk(students / "lessons" / path.name))
        nbformat.write(untagged(path), _mk(students / "lessons_untagged" / path.name))
    for path in EXERCISES:
        nbformat.write(read_notebook(path), _mk(students / "exercises" / path.name))
        nbformat.write(untagged(path), _mk(students / "exercises_untagged" / path.name))
    for name, (lesson, edits) in {**ALTERNATIVES, **BUGS}.items():
        nbformat.write(edited(lesson, edits), _mk(students / name / f"{lesson}.ipynb"))
    _, grades = grade(REPO_ROOT, students, root / "out" / "grades.json")
    return grades


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_every_lesson_is_graded(class_folder: dict[str, dict]) -> None:
    assert len(LESSONS) == len(EXERCISES) >= 8
    for folder in ("lessons", "lessons_untagged", "exercises", "exercises_untagged"):
        assert sorted(t for t in class_folder if t.startswith(f"{folder}/")) == sorted(
            f"{folder}/{p.name}" for p in LESSONS)


@pytest.mark.parametrize("folder", ["lessons", "lessons_untagged"])
@pytest.mark.parametrize("lesson", [p.name for p in LESSONS])
def test_a_complete_lesson_handed_in_gets_full_marks(class_folder: dict[str, dict], folder: str, lesson: str) -> None:
    chapter = only_grade(class_folder, f"{folder}/{lesson}")
    assert chapter["status"] == "graded" and chapter["max"] > 0, chapter
    assert chapter["score"] == chapter["max"], lost(chapter)


@pytest.mark.parametrize("folder", ["exercises", "exercises_untagged"])
@pytest.mark.parametrize("exercise", [p.name for p in EXERCISES])
def test_a_blank_exercise_gets_zero(class_folder: dict[str, dict], folder: str, exercise: str) -> None:
    chapter = only_grade(class_folder, f"{folder}/{exercise}")
    assert chapter["status"] == "graded" and chapter["max"] > 0, chapter
    passed = [t["name"] for t in chapter["tests"] if t["status"] == "passed"]
    assert chapter["score"] == 0, f"a blank exercise passes {passed}"


def test_without_tags_a_cell_that_reads_a_skipped_loop_is_skipped_not_fatal(class_folder: dict[str, dict]) -> None:
    # Chapter 5 reads `latency[1]` after a timing loop that loading does not run.
    chapter = only_grade(class_folder, "lessons_untagged/05_adapters.ipynb")
    notes = "\n".join(chapter["loaded"]["notes"])
    assert chapter["loaded"]["tagged"] is False and "raised KeyError" in notes, notes


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_a_correct_alternative_design_gets_full_marks(class_folder: dict[str, dict], name: str) -> None:
    lesson = ALTERNATIVES[name][0]
    chapter = only_grade(class_folder, f"{name}/{lesson}.ipynb")
    assert chapter["score"] == chapter["max"], lost(chapter)


@pytest.mark.parametrize("name", BUGS)
def test_a_realistic_bug_loses_points(class_folder: dict[str, dict], name: str) -> None:
    lesson = BUGS[name][0]
    chapter = only_grade(class_folder, f"{name}/{lesson}.ipynb")
    reference = only_grade(class_folder, f"lessons/{lesson}.ipynb")
    assert chapter["status"] == "graded" and reference["score"] == reference["max"]
    assert 0 < chapter["score"] < chapter["max"], lost(chapter)  # it loads, and the bug is caught


# --------------------------------------------------------------------------- the student release
@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A release whose exercises a perfect student completed (the lessons), graded beside the blank ones."""
    out = tmp_path_factory.mktemp("release") / "copy"
    release(out, [])
    handed_in = out / "handed_in"
    for path in EXERCISES:
        shutil.copy(path, _mk(handed_in / "blank" / path.name))
    for path in LESSONS:
        shutil.copy(path, _mk(handed_in / "perfect" / path.name))
        shutil.copy(path, out / "exercises" / path.name)  # so the stand-ins load finished work
    _, grades = grade(out, handed_in, out / "report" / "grades.json")
    return out, grades


@pytest.mark.parametrize("lesson", [p.name for p in LESSONS])
def test_in_the_release_a_complete_lesson_gets_full_marks_and_a_blank_one_zero(
    released: tuple[Path, dict[str, dict]], lesson: str
) -> None:
    _, grades = released
    perfect, blank = only_grade(grades, f"perfect/{lesson}"), only_grade(grades, f"blank/{lesson}")
    assert "hidden" not in perfect  # the release carries the public tests only
    assert perfect["max"] > 0 and perfect["score"] == perfect["max"], lost(perfect)
    assert blank["max"] == perfect["max"] and blank["score"] == 0


def test_a_stand_in_gives_the_students_merge_lora(released: tuple[Path, dict[str, dict]]) -> None:
    # Chapter 5 imports merge_lora from chapter 3; in the release that is the student's own LoRA,
    # grown cell by cell with @add_to_class.
    out, _ = released
    script = (
        "import torch\n"
        "from solutions.lora import LoraConfig, inject_lora, merge_lora\n"
        "from minitransformer import MiniTransformer, SequenceClassifier, TransformerConfig\n"
        "torch.manual_seed(0)\n"
        "model = SequenceClassifier(MiniTransformer(TransformerConfig(vocab_size=40, max_seq_len=16, d_model=16,"
        " n_layers=2, n_heads=2, d_ff=32, mode='bert')), num_labels=2).eval()\n"
        "inject_lora(model, LoraConfig(r=2), verbose=False)\n"
        "with torch.no_grad():\n"
        "    for name, p in model.named_parameters():\n"
        "        if 'lora_B' in name:\n"
        "            p.normal_()\n"
        "ids = torch.randint(0, 40, (3, 8))\n"
        "before = model(ids).logits\n"
        "merge_lora(model)\n"
        "assert torch.allclose(model(ids).logits, before, atol=1e-5)\n"
        "print('merged', type(model.backbone.blocks[0].attn.q_proj).__module__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(out), "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=out, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("merged _curriculum_submission_")  # the student's class
