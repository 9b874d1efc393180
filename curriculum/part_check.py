"""No points for given code: every graded test must fail when the student has not written its part.

A lesson is a sequence of definition cells, each part closed by a self-check cell,
``self_check("lora", globals(), part="LoraLinear")``. The solution regions in the export cells since the
previous self-check are that part's work. For each part this module builds the chapter's definitions as the
grader would see them from a student who wrote everything *except* that part (the lesson's export cells with
the part's regions replaced by the exercise stub), runs the part's graded tests (hidden ones included), and
reports what they earn. A test that still earns points grades code the lesson gives away.

    python -m curriculum.part_check              # a table per chapter; exit 1 if any part fails the rule
    python -m curriculum.part_check --json       # the same as JSON (used by tests/test_chapters.py)
    python -m curriculum.part_check --chapter lora --notebooks DIR   # one chapter, lessons from DIR

It executes every chapter's definitions, so run it in its own process: classes are rebuilt and registered
again (a PEFT config's ``peft_type``), which a long-lived process should not see.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

from curriculum.export import (BEGIN_SOLUTION, clear_solutions, find_chapters, is_export_cell, read_notebook,
                               remove_markers, strip_magics)
from curriculum.grading import GRADED_TESTS_DIR, Implementation, grading_spec, load_graded_tests, run_graded

ROOT = Path(__file__).resolve().parents[1]
_loaded = 0  # modules built so far (each gets a fresh name)
SELF_CHECK = re.compile(r"""self_check\(\s*["'](\w+)["']\s*,\s*globals\(\)\s*(?:,\s*part\s*=\s*["'](\w+)["'])?""")


def part_windows(nb: Any) -> tuple[dict[str, list[int]], list[int]]:
    """({part: indices of the export cells with solution regions that its self-check closes}, the indices of
    self-check cells that name no part)."""
    windows: dict[str, list[int]] = {}
    partless: list[int] = []
    pending: list[int] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_export_cell(cell) and BEGIN_SOLUTION in cell.source:
            pending.append(index)
        checks = SELF_CHECK.findall(cell.source)
        if checks:
            for _, part in checks:
                if part:
                    windows.setdefault(part, []).extend(pending)
                else:
                    partless.append(index)
            pending = []
    return windows, partless


def definitions(nb: Any, blank: set[int]) -> dict[str, Any]:
    """The chapter's export cells executed in a fresh namespace, with the regions of the cells in ``blank``
    replaced by the exercise stub (as a student who skipped them would hand in)."""
    global _loaded
    _loaded += 1
    module = types.ModuleType(f"_part_check_{_loaded}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and is_export_cell(cell):
            source = clear_solutions(cell.source) if index in blank else remove_markers(cell.source)
            exec(compile(strip_magics(source), f"<cell {index}>", "exec"), module.__dict__)  # noqa: S102 - our lessons
    return module.__dict__


def graded_tests(chapter: str) -> list:
    tests = load_graded_tests(chapter)
    hidden = GRADED_TESTS_DIR / "hidden" / f"test_{chapter}_hidden.py"
    if hidden.is_file():
        tests += _hidden_tests(chapter, hidden)
    return tests


def _hidden_tests(chapter: str, path: Path) -> list:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_part_check_hidden_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [obj for key, obj in vars(module).items() if key.startswith("test") and grading_spec(obj) is not None]


def check_chapter(notebook: Path, chapter: str) -> dict:
    """{"parts": {part: {"cells": [...], "tests": n, "earned": points, "passed": [test names]}},
    "untested_parts": [...], "unchecked_parts": [...], "partless_self_checks": [...]}"""
    nb = read_notebook(notebook)
    windows, partless = part_windows(nb)
    tests = graded_tests(chapter)
    by_part: dict[str, list] = {}
    for test in tests:
        by_part.setdefault(str(grading_spec(test).part), []).append(test)
    report: dict[str, Any] = {"parts": {}, "untested_parts": sorted(set(windows) - set(by_part)),
                              "unchecked_parts": sorted(set(by_part) - set(windows)),
                              "partless_self_checks": partless}
    for part, part_tests in by_part.items():
        cells = windows.get(part, [])
        impl = Implementation(definitions(nb, set(cells)), f"{notebook.name} without part {part}")
        outcomes = [(t.__name__, run_graded(t, impl, timeout=60)) for t in part_tests]
        report["parts"][part] = {"cells": cells, "tests": len(part_tests),
                                 "earned": sum(o.earned for _, o in outcomes),
                                 "passed": [name for name, o in outcomes if o.earned]}
    return report


def problems(reports: dict[str, dict]) -> list[str]:
    """Every breach of the rule, as a sentence for the lesson's author."""
    found = []
    for chapter, report in reports.items():
        for part in report["unchecked_parts"]:
            found.append(f"{chapter}: graded part {part!r} has no self_check(..., part={part!r}) cell in the lesson")
        for part in report["untested_parts"]:
            found.append(f"{chapter}: self-check part {part!r} has no graded test")
        for index in report["partless_self_checks"]:
            found.append(f"{chapter}: the self-check in cell {index} names no part (name the parts it closes)")
        for part, row in report["parts"].items():
            if not row["cells"]:
                found.append(f"{chapter}: part {part!r} has no solution region before its self-check: its tests "
                             f"grade given code")
            elif row["earned"]:
                found.append(f"{chapter}: with part {part!r} left blank, {row['passed']} still earn "
                             f"{row['earned']:g} points: they grade given code")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curriculum.part_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--chapter", action="append", help="only this chapter (repeatable)")
    args = parser.parse_args(argv)
    chapters = [c for c in find_chapters(args.notebooks) if not args.chapter or c.name in args.chapter]
    if args.chapter and len(chapters) < len(set(args.chapter)):
        parser.error(f"unknown chapter in {args.chapter}; known: {[c.name for c in find_chapters(args.notebooks)]}")
    reports = {c.name: check_chapter(c.notebook, c.name) for c in chapters}
    if args.json:
        print(json.dumps(reports, indent=1))
    else:
        for chapter, report in reports.items():
            for part, row in report["parts"].items():
                print(f"{chapter:>14} / {part:<28} cells {row['cells']}  {row['tests']} tests  "
                      f"earned when blank: {row['earned']:g}")
    found = problems(reports)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
