"""Grade reports: the terminal table, the JSON report, a CSV for an LMS and feedback files.

Everything here works on :class:`TargetGrade` objects (one per graded notebook, or the
``solutions`` package) built by the pytest plugin.  A chapter's maximum is the sum of the
points of every graded test in its test files, whatever ran; a flagged chapter scores 0.
"""

from __future__ import annotations

import csv
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curriculum.grading import format_points


@dataclass(frozen=True)
class TestSpec:
    """A graded test as declared in its file."""

    file: str
    name: str
    points: float
    message: str
    part: str | None
    hidden: bool


@dataclass
class TestRecord:
    spec: TestSpec
    status: str
    earned: float
    message: str
    details: str = ""


@dataclass
class ChapterGrade:
    """One notebook's grade for one chapter."""

    chapter: str
    tests: list[TestRecord]
    flags: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)  # tagged, cells_used, notes
    problem: str | None = None  # crash, time-out, interruption or load error: what happened
    problem_kind: str | None = None

    @property
    def status(self) -> str:
        if self.flags:
            return "flagged"
        return self.problem_kind or "graded"

    def score(self, hidden: bool | None = None) -> float:
        if self.flags:
            return 0
        return sum(t.earned for t in self.tests if hidden is None or t.spec.hidden == hidden)

    def max(self, hidden: bool | None = None) -> float:
        return sum(t.spec.points for t in self.tests if hidden is None or t.spec.hidden == hidden)

    def has_hidden(self) -> bool:
        return any(t.spec.hidden for t in self.tests)


@dataclass
class TargetGrade:
    """Everything graded for one notebook (or the solutions package)."""

    label: str
    student: str
    chapters: dict[str, ChapterGrade] = field(default_factory=dict)
    status: str = "graded"  # or "unknown_chapter", "no_tests"
    message: str = ""  # why it was not graded, and how to fix it


def score_text(grade: ChapterGrade) -> str:
    text = f"{format_points(grade.score())}/{format_points(grade.max())}"
    if grade.has_hidden():
        text += (f" (public {format_points(grade.score(False))}/{format_points(grade.max(False))}, "
                 f"hidden {format_points(grade.score(True))}/{format_points(grade.max(True))})")
    return text


# --------------------------------------------------------------------------- terminal table
def table_lines(targets: list[TargetGrade]) -> list[tuple[str, dict[str, bool]]]:
    """The ``grades`` section: (line, markup) pairs."""
    lines: list[tuple[str, dict[str, bool]]] = []
    for target in targets:
        lines.append((target.label, {"bold": True}))
        if target.status != "graded":
            lines.append((f"  {target.status.replace('_', ' ')}: {target.message}", {"red": True}))
            continue
        for chapter, grade in target.chapters.items():
            full = grade.score() == grade.max() and not grade.flags
            lines.append((f"  {chapter}: {score_text(grade)}", {"green": full}))
            for flag in grade.flags:
                lines.append((f"    FLAGGED, scored 0: {flag}", {"red": True}))
            if grade.problem:
                lines.append((f"    {grade.status}: {grade.problem}", {"red": True}))
            if grade.load and not grade.load.get("tagged", True):
                cells = ", ".join(map(str, grade.load.get("cells_used", []))) or "none"
                lines.append((f"    note: no cell is tagged `export`; definitions taken from cells {cells}", {}))
            for t in grade.tests:
                if t.status != "passed" and not grade.flags:
                    kind = "hidden " if t.spec.hidden else ""
                    lines.append((f"    ✗ {kind}{t.spec.name} (0/{format_points(t.spec.points)}): {t.message}",
                                  {"red": True}))
    return lines


# --------------------------------------------------------------------------- JSON
def _test_json(t: TestRecord) -> dict[str, Any]:
    return {"name": t.spec.name, "part": t.spec.part, "points": t.spec.points, "earned": t.earned,
            "status": t.status, "message": t.message, "hidden": t.spec.hidden}


def chapter_json(grade: ChapterGrade) -> dict[str, Any]:
    entry: dict[str, Any] = {"score": grade.score(), "max": grade.max(), "status": grade.status}
    if grade.has_hidden():
        entry["public"] = {"score": grade.score(False), "max": grade.max(False)}
        entry["hidden"] = {"score": grade.score(True), "max": grade.max(True)}
    if grade.flags:
        entry["flags"] = grade.flags
    if grade.problem:
        entry["problem"] = grade.problem
    if grade.load:
        entry["loaded"] = grade.load
    entry["tests"] = [_test_json(t) for t in grade.tests]
    return entry


def build_report(targets: list[TargetGrade]) -> dict[str, Any]:
    """The JSON grade report."""
    out = []
    for target in targets:
        entry: dict[str, Any] = {"target": target.label, "student": target.student, "status": target.status}
        if target.message:
            entry["message"] = target.message
        entry["chapters"] = {c: chapter_json(g) for c, g in target.chapters.items()}
        out.append(entry)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"generated_at": now, "targets": out}


# --------------------------------------------------------------------------- CSV for an LMS
CSV_COLUMNS = ["student", "chapter", "score", "max", "status", "notebook"]


def write_csv(path: Path, targets: list[TargetGrade]) -> None:
    """One row per notebook and chapter: student, chapter, score, max (then status, notebook)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for target in targets:
            if target.status != "graded":
                writer.writerow([target.student, "", 0, 0, target.status, target.label])
            for chapter, grade in target.chapters.items():
                writer.writerow([target.student, chapter, format_points(grade.score()),
                                 format_points(grade.max()), grade.status, target.label])


# --------------------------------------------------------------------------- feedback
def feedback_markdown(target: TargetGrade) -> str:
    """A short feedback file for one notebook (what nbgrader's feedback step gives students).

    Hidden tests appear only as a count and points: their names and messages are for the
    instructor (the JSON report), so a student cannot learn them from the feedback."""
    lines = [f"# Feedback: {target.label}", ""]
    if target.status != "graded":
        lines += [f"**Not graded** ({target.status.replace('_', ' ')}): {target.message}", ""]
    for chapter, grade in target.chapters.items():
        lines += [f"## {chapter}: {score_text(grade)}", ""]
        if grade.flags:
            lines += ["**This chapter scores 0 because the submission was flagged:**", ""]
            lines += [f"- {flag}" for flag in grade.flags] + [""]
        if grade.problem:
            lines += [f"**{grade.status}:** {grade.problem}", ""]
        public = [t for t in grade.tests if not t.spec.hidden]
        if grade.has_hidden():
            lines += [f"### Public tests: {format_points(grade.score(False))}/{format_points(grade.max(False))}", ""]
        for t in public:
            mark = "✓" if t.status == "passed" else "✗"
            text = t.spec.message if t.status == "passed" else t.message
            lines.append(f"- {mark} {format_points(t.earned)}/{format_points(t.spec.points)} — {text}")
        if public:
            lines.append("")
        hidden = [t for t in grade.tests if t.spec.hidden]
        if hidden:
            # Students learn how they did on the hidden tests, not what the tests are: names and messages
            # stay in the instructor's JSON report.
            passed = sum(t.status == "passed" for t in hidden)
            lines += [f"### Hidden tests: {format_points(grade.score(True))}/{format_points(grade.max(True))}", "",
                      f"{passed} of {len(hidden)} hidden tests passed. They are not described here; your "
                      "instructor has the details.", ""]
        load = grade.load
        if load:
            cells = ", ".join(map(str, load.get("cells_used", []))) or "none"
            how = "cells tagged `export`" if load.get("tagged", True) else \
                "no cell is tagged `export`, so every code cell was scanned"
            lines += [f"Graded definitions from cells {cells} ({how}).", ""]
            notes = load.get("notes", [])
            if notes:
                lines += ["Not run while loading (only imports, functions, classes and constants are):", ""]
                lines += [f"- {n}" for n in notes[:10]]
                if len(notes) > 10:
                    lines.append(f"- ... and {len(notes) - 10} more")
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_feedback(directory: Path, targets: list[TargetGrade]) -> list[Path]:
    """One markdown file per notebook, at the notebook's relative path with ``.md``."""
    written = []
    for target in targets:
        relative = Path(target.label.replace("'", "_copy"))
        parts = [p for p in relative.parts if p not in ("..", "/", "")]
        path = directory.joinpath(*parts).with_suffix(".md") if parts else directory / "solutions.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feedback_markdown(target), encoding="utf-8")
        written.append(path)
    return written
