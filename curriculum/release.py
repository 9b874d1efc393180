"""Write the student copy of the course (like nbgrader's release step).

    python -m curriculum.release OUT [--released-solutions lora bitfit ...] [--force]

The copy holds what students need and nothing that gives answers away:

- ``exercises/`` (the generated student notebooks), ``minitransformer/`` (the backbone and
  its checkpoints), ``curriculum/`` (the grader and ``self_check``), ``docs/``;
- ``tests/graded/`` with the public graded tests only (no ``hidden/`` folder);
- ``solutions/`` with only the chapters named by ``--released-solutions``.  Every other
  chapter gets a stand-in module: ``from solutions.lora import inject_lora`` then gives the
  student's *own* definitions from ``exercises/03_lora.ipynb`` (loaded as the grader loads
  them), so later chapters that build on earlier ones work from the student's work;
- ``conftest.py``, ``requirements.txt``, ``pyproject.toml`` (without the lessons' test
  path) and a short ``README.md`` for students.

Not copied: ``notebooks/`` (the lessons, with every answer), the other solutions, hidden
tests, the project's own unit tests and CI files.  The command checks the result and
prints what went in.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.export import BEGIN_SOLUTION, REPO_ROOT, chapter_of, read_notebook

COMMAND = "python -m curriculum.release"
CURRICULUM_DIR = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
HIDDEN_DIR = "hidden"

STUB = '''"""Chapter `{chapter}`: its reference solution is not released.

`from solutions.{chapter} import ...` gives the definitions from your own
exercises/{notebook} instead, loaded the way the grader loads them (imports,
functions, classes and constants of the cells tagged `export`). Finish that exercise
first; a definition you have not written yet raises NotImplementedError when used.
"""

from pathlib import Path as _Path

from curriculum.grading import load_notebook as _load_notebook

_NOTEBOOK = _Path(__file__).resolve().parent.parent / "exercises" / {notebook!r}
_module = _load_notebook(_NOTEBOOK, timeout=None)
globals().update({{k: v for k, v in vars(_module).items() if not k.startswith("__")}})
'''

STUDENT_README = """# PEFT from scratch: student copy

Written by `{command}`. The exercises are in `exercises/`; each one is a full lesson with the
implementation cells left for you (`# YOUR CODE HERE`).

```bash
pip install -r requirements.txt
jupyter lab                      # open exercises/{first}
```

After each implementation cell, a self-check cell runs the graded tests on your code. To grade a
whole notebook from a terminal:

```bash
pytest tests/graded --student exercises/{first}
```

The instructor may also grade with tests that are not in this copy (hidden tests).

`solutions/` holds {released}. For the other chapters, `from solutions.<chapter> import ...`
gives your own definitions from that chapter's exercise, so a later chapter can build on your
earlier work.
"""


class ReleaseError(Exception):
    """The release cannot be written as asked."""


@dataclass
class ReleaseSummary:
    out: Path
    chapters: dict[str, str]  # chapter -> exercise file name
    released: list[str]
    stand_ins: list[str]
    public_tests: list[str]
    solution_imports: dict[str, set[str]] = field(default_factory=dict)  # exercise -> chapters it imports

    def lines(self) -> list[str]:
        out = [f"wrote the student release to {self.out}",
               f"  exercises: {', '.join(self.chapters.values()) or 'none'}",
               f"  public graded tests: {', '.join(self.public_tests) or 'none'}",
               f"  released solutions: {', '.join(self.released) or 'none'}"]
        if self.stand_ins:
            out.append(f"  stand-ins (load the student's own exercise): {', '.join(self.stand_ins)}")
        for exercise, chapters in sorted(self.solution_imports.items()):
            for chapter in sorted(chapters):
                how = "released" if chapter in self.released else "the student's own exercise"
                out.append(f"  note: {exercise} imports solutions.{chapter} ({how})")
        return out


def exercise_chapters(exercises: Path) -> dict[str, str]:
    """chapter -> exercise file name, from the exercises' metadata."""
    found: dict[str, str] = {}
    for path in sorted(exercises.glob("*.ipynb")):
        chapter = chapter_of(read_notebook(path))
        if chapter:
            found[chapter] = path.name
    return found


def solution_imports(exercises: Path) -> dict[str, set[str]]:
    """For each exercise, the chapters whose ``solutions`` module it imports (in any cell)."""
    found: dict[str, set[str]] = {}
    for path in sorted(exercises.glob("*.ipynb")):
        for cell in read_notebook(path).cells:
            if cell.get("cell_type") != "code":
                continue
            source = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in cell.source.split("\n"))
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names]
                                             if node.module == "solutions" else [])
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "solutions" and len(parts) > 1:
                        found.setdefault(path.name, set()).add(parts[1])
    return found


def _pyproject(text: str) -> str:
    """The project's pyproject.toml without the lessons as a test path."""
    return re.sub(r'testpaths\s*=\s*\[[^\]]*\]', 'testpaths = ["tests"]', text)


def release(out: Path | str, released: list[str] | tuple[str, ...] = (), *, root: Path | str | None = None,
            force: bool = False) -> ReleaseSummary:
    """Write the student copy of ``root`` (default: this repository) to ``out``."""
    root = Path(root) if root is not None else REPO_ROOT
    out = Path(out)
    exercises = root / "exercises"
    graded = root / "tests" / "graded"
    if not exercises.is_dir() or not graded.is_dir():
        raise ReleaseError(f"{root} has no exercises/ or tests/graded/ (run `python -m curriculum.export` first?)")
    chapters = exercise_chapters(exercises)
    unknown = sorted(set(released) - set(chapters))
    if unknown:
        raise ReleaseError(f"--released-solutions: no exercise for chapter(s) {unknown}; chapters: {sorted(chapters)}")
    if out.exists():
        if not force and any(out.iterdir()):
            raise ReleaseError(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    if out.resolve() == root.resolve():
        raise ReleaseError("the release must go to another folder than the repository")
    out.mkdir(parents=True)

    shutil.copytree(exercises, out / "exercises", ignore=IGNORE)
    shutil.copytree(CURRICULUM_DIR, out / "curriculum", ignore=IGNORE)
    for name in ("minitransformer", "docs"):
        if (root / name).is_dir():
            shutil.copytree(root / name, out / name, ignore=IGNORE)
    for name in ("conftest.py", "requirements.txt"):
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    if (root / "pyproject.toml").is_file():
        (out / "pyproject.toml").write_text(_pyproject((root / "pyproject.toml").read_text()))

    public_tests = []
    (out / "tests" / "graded").mkdir(parents=True)
    for path in sorted(graded.glob("*.py")):  # top level only: hidden/ stays behind
        shutil.copy2(path, out / "tests" / "graded" / path.name)
        if path.name.startswith("test_"):
            public_tests.append(path.name)

    solutions = out / "solutions"
    solutions.mkdir()
    init = root / "solutions" / "__init__.py"
    (solutions / "__init__.py").write_text(init.read_text() if init.is_file() else '"""Reference implementations."""\n')
    stand_ins = []
    for chapter, notebook in chapters.items():
        if chapter in released:
            source = root / "solutions" / f"{chapter}.py"
            if not source.is_file():
                raise ReleaseError(f"solutions/{chapter}.py is missing (run `python -m curriculum.export`)")
            shutil.copy2(source, solutions / f"{chapter}.py")
        else:
            (solutions / f"{chapter}.py").write_text(STUB.format(chapter=chapter, notebook=notebook))
            stand_ins.append(chapter)

    first = next(iter(chapters.values()), "")
    released_text = ("the released reference solutions: " + ", ".join(released)) if released else \
        "no reference solutions"
    (out / "README.md").write_text(STUDENT_README.format(command=COMMAND, first=first, released=released_text))
    summary = ReleaseSummary(out, chapters, sorted(released), stand_ins, public_tests, solution_imports(out / "exercises"))
    check_release(summary)
    return summary


def check_release(summary: ReleaseSummary) -> None:
    """Fail loudly if the copy holds anything that gives answers away."""
    out = summary.out
    problems = []
    if (out / "notebooks").exists():
        problems.append("notebooks/ was copied")
    if any(p.is_dir() and p.name == HIDDEN_DIR for p in (out / "tests").rglob("*")):
        problems.append("a hidden-tests folder was copied")
    for path in (out / "exercises").glob("*.ipynb"):
        if BEGIN_SOLUTION in path.read_text(encoding="utf-8"):
            problems.append(f"exercises/{path.name} still contains a solution region")
    for path in (out / "solutions").glob("*.py"):
        chapter = path.stem
        if chapter != "__init__" and chapter not in summary.released and "_load_notebook" not in path.read_text():
            problems.append(f"solutions/{path.name} is not released but holds code")
    if problems:
        raise ReleaseError("the release is not safe to hand out: " + "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the student copy to")
    parser.add_argument("--released-solutions", nargs="*", default=[], metavar="CHAPTER",
                        help="chapters whose reference solutions go into the copy (e.g. lora)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        summary = release(args.out, args.released_solutions, root=args.root, force=args.force)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
