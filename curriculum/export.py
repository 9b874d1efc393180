"""Generate exercise notebooks and solution modules from the lesson notebooks.

Run ``python -m curriculum.export`` from anywhere (``--check`` to only compare).
For every notebook in ``notebooks/`` whose metadata names a chapter
(``{"curriculum": {"chapter": "lora"}}``) it writes:

- ``exercises/<same name>.ipynb``: every ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  region replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError()``,
  outputs cleared;
- ``solutions/<chapter>.py``: the ``export``-tagged code cells, markers removed.

Output is deterministic: running the export twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORT_TAG = "export"
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError()")
COMMAND = "python -m curriculum.export"
SOLUTIONS_INIT = '"""Reference implementations, generated from notebooks/ by `python -m curriculum.export`."""\n'


class ExportError(Exception):
    """A lesson notebook breaks the curriculum conventions."""


# --------------------------------------------------------------------------- notebook helpers
def chapter_of(nb: Any) -> str | None:
    """The chapter named in the notebook metadata (``curriculum.chapter``), if any."""
    meta = nb.get("metadata", {}).get("curriculum", {})
    chapter = meta.get("chapter") if isinstance(meta, dict) else None
    return chapter if isinstance(chapter, str) and chapter else None


def is_export_cell(cell: Any) -> bool:
    """Whether ``cell`` is a code cell tagged ``export``."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and EXPORT_TAG in tags


def export_cells(nb: Any) -> list[tuple[int, Any]]:
    """The ``(index, cell)`` pairs of the export-tagged code cells, in order."""
    return [(i, cell) for i, cell in enumerate(nb.cells) if is_export_cell(cell)]


def cell_label(index: int, source: str) -> str:
    """A human-readable cell reference: ``cell 4 (`class LoraLinear(nn.Module):`)``."""
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    if len(first) > 50:
        first = first[:47] + "..."
    return f"cell {index} (`{first}`)" if first else f"cell {index}"


def strip_magics(source: str) -> str:
    """Blank out IPython-only lines (``%magic``, ``!shell``), keeping line numbers."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")
    )


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(BEGIN_SOLUTION):
        return "begin"
    if stripped.startswith(END_SOLUTION):
        return "end"
    return None


def _regions(source: str, where: str) -> Iterator[tuple[str, str | None]]:
    """Yield ``(line, marker)`` pairs, checking that markers are balanced and not nested."""
    inside = False
    for line in source.split("\n"):
        marker = _marker(line)
        if marker == "begin" and inside:
            raise ExportError(f"{where}: nested `{BEGIN_SOLUTION}` (missing `{END_SOLUTION}`?)")
        if marker == "end" and not inside:
            raise ExportError(f"{where}: `{END_SOLUTION}` without a matching `{BEGIN_SOLUTION}`")
        if marker:
            inside = marker == "begin"
        yield line, marker
    if inside:
        raise ExportError(f"{where}: `{BEGIN_SOLUTION}` without a matching `{END_SOLUTION}`")


def clear_solutions(source: str, where: str = "cell") -> str:
    """Replace each solution region by the nbgrader stub at the region's indentation."""
    out: list[str] = []
    inside = False
    for line, marker in _regions(source, where):
        if marker == "begin":
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub for stub in STUB_LINES)
            inside = True
        elif marker == "end":
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def remove_markers(source: str, where: str = "cell") -> str:
    """Drop the marker lines, keeping the solution code."""
    return "\n".join(line for line, marker in _regions(source, where) if marker is None)


# --------------------------------------------------------------------------- generation
def make_exercise(nb: Any, source_name: str | None = None) -> Any:
    """Return the student version of a lesson notebook (the input is not modified)."""
    name = source_name or "notebook"
    ex = copy.deepcopy(nb)
    for index, cell in enumerate(ex.cells):
        if cell.get("cell_type") != "code":
            continue
        cell.source = clear_solutions(cell.source, f"{name}, {cell_label(index, cell.source)}")
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)  # timings written by nbclient
    meta = ex.metadata.setdefault("curriculum", {})
    origin = source_name or "the lesson notebook"
    meta["generated"] = f"Generated from {origin} by `{COMMAND}`; edit {origin} instead."
    if ex.get("nbformat_minor", 0) >= 5:
        for index, cell in enumerate(ex.cells):
            cell.setdefault("id", f"cell-{index}")  # deterministic ids if the source lacks them
    return ex


def make_solution_module(nb: Any, source_name: str) -> str:
    """Return the source of ``solutions/<chapter>.py``: the export cells, markers removed."""
    cells = export_cells(nb)
    if not cells:
        raise ExportError(f"{source_name}: chapter notebook has no code cell tagged `{EXPORT_TAG}`")
    parts = [f'"""Generated from {source_name} by `{COMMAND}`.\n\nDo not edit by hand.\n"""']
    for index, cell in cells:
        where = f"{source_name}, {cell_label(index, cell.source)}"
        code = strip_magics(remove_markers(cell.source, where)).strip("\n")
        try:
            ast.parse(code)
        except SyntaxError as exc:
            raise ExportError(f"{where}: syntax error on line {exc.lineno}: {exc.msg}") from None
        if code.strip():
            parts.append(code.rstrip())
    return "\n\n\n".join(parts) + "\n"


def read_notebook(path: Path) -> Any:
    """Read a notebook as nbformat 4 without the random cell ids ``nbformat.read`` may add."""
    text = path.read_text(encoding="utf-8")
    if json.loads(text).get("nbformat") == 4:
        return nbformat.v4.reads(text)
    return nbformat.reads(text, as_version=4)


def notebook_text(nb: Any) -> str:
    """Serialise a notebook exactly like ``nbformat.write`` (sorted keys, indent 1), plus newline."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


@dataclass
class Chapter:
    """One chapter notebook and the files generated from it."""

    name: str
    notebook: Path
    source_name: str


def find_chapters(notebooks_dir: Path) -> list[Chapter]:
    """The chapter notebooks in ``notebooks_dir`` (sorted by file name)."""
    chapters: dict[str, Chapter] = {}
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        chapter = chapter_of(read_notebook(path))
        if chapter is None:
            continue
        source_name = f"{notebooks_dir.name}/{path.name}"
        if not chapter.isidentifier():
            raise ExportError(f"{source_name}: chapter {chapter!r} is not a valid module name")
        if chapter in chapters:
            raise ExportError(
                f"duplicate chapter {chapter!r}: {chapters[chapter].source_name} and {source_name}"
            )
        chapters[chapter] = Chapter(chapter, path, source_name)
    return list(chapters.values())


def _write_if_changed(path: Path, text: str, check: bool) -> bool:
    """Write ``text`` to ``path`` unless identical; return whether it differed."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return False
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return True


def export_all(
    notebooks_dir: Path | str | None = None,
    exercises_dir: Path | str | None = None,
    solutions_dir: Path | str | None = None,
    *,
    check: bool = False,
) -> list[Path]:
    """Regenerate all exercises and solutions; return the files that changed.

    With ``check=True`` nothing is written and the returned files are those that
    differ from what would be generated.  Raises :class:`ExportError` on broken
    notebooks before writing anything.
    """
    notebooks = Path(notebooks_dir) if notebooks_dir else REPO_ROOT / "notebooks"
    exercises = Path(exercises_dir) if exercises_dir else REPO_ROOT / "exercises"
    solutions = Path(solutions_dir) if solutions_dir else REPO_ROOT / "solutions"
    outputs: list[tuple[Path, str]] = []
    for chapter in find_chapters(notebooks):
        nb = read_notebook(chapter.notebook)
        module = make_solution_module(nb, chapter.source_name)
        exercise = notebook_text(make_exercise(nb, chapter.source_name))
        outputs.append((exercises / chapter.notebook.name, exercise))
        outputs.append((solutions / f"{chapter.name}.py", module))
    changed = [path for path, text in outputs if _write_if_changed(path, text, check)]
    init = solutions / "__init__.py"
    if not init.exists():
        if not check:
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(SOLUTIONS_INIT, encoding="utf-8")
        changed.append(init)
    return changed


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is out of date")
    parser.add_argument("--notebooks", type=Path, help="lesson notebooks (default: <repo>/notebooks)")
    parser.add_argument("--exercises", type=Path, help="exercise notebooks (default: <repo>/exercises)")
    parser.add_argument("--solutions", type=Path, help="solution modules (default: <repo>/solutions)")
    args = parser.parse_args(argv)
    try:
        changed = export_all(args.notebooks, args.exercises, args.solutions, check=args.check)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for path in changed:
            print(f"out of date: {_display(path)}")
        if changed:
            print(f"{len(changed)} file(s) differ; run `{COMMAND}`", file=sys.stderr)
            return 1
        print("exercises and solutions are up to date")
        return 0
    for path in changed:
        print(f"wrote {_display(path)}")
    print(f"{len(changed)} file(s) updated" if changed else "nothing to update")
    return 0


if __name__ == "__main__":
    sys.exit(main())
