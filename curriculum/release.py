"""Write the student copy of the course (like nbgrader's release step).

    python -m curriculum.release OUT [--released-solutions lora bitfit ...] [--force]

The copy holds what students need and nothing that gives answers away:

- ``exercises/`` (the generated student notebooks, and the lessons that have no exercise, such
  as chapter 1: nothing in them is an answer), ``minitransformer/`` (the backbone and its
  checkpoints), ``experiments/`` and ``benchmarks/`` (the verdicts and the committed results
  the lessons print; with stand-in solutions they run on the student's own code), ``curriculum/``
  (the grader and ``self_check``), ``docs/`` (with its links to the lessons pointed at
  ``exercises/``);
- ``tests/graded/`` with the public graded tests only (no ``hidden/`` folder);
- ``solutions/`` with only the chapters named by ``--released-solutions``.  Every other
  chapter gets a stand-in module: ``from solutions.lora import inject_lora`` then gives the
  student's *own* definitions from ``exercises/03_lora.ipynb`` (loaded as the grader loads
  them), so later chapters that build on earlier ones work from the student's work;
- ``conftest.py``, ``requirements.txt``, ``pyproject.toml`` (without the lessons' test
  path) and a short ``README.md`` for students.

Not copied: ``notebooks/`` (the lessons, with every answer), the other solutions, hidden
tests, the project's own unit tests and CI files.  The command checks the result (nothing that
gives an answer away, no link that leads nowhere) and prints what went in.
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
implementation cells left for you (`# YOUR CODE HERE`). The lessons without an exercise
({lessons}) are there too, to read and run. The course's terms, English ↔ 中文:
[docs/glossary.md](docs/glossary.md).

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


def lessons_without_exercise(root: Path) -> list[Path]:
    """The lesson notebooks that are no chapter (no exercise, no solution region): they go to the students as
    they are."""
    return [p for p in sorted((root / "notebooks").glob("*.ipynb"))
            if chapter_of(read_notebook(p)) is None and BEGIN_SOLUTION not in p.read_text(encoding="utf-8")]


def _student_links(text: str) -> str:
    """A doc's links as a student copy needs them: lessons are in exercises/, and the only README is the
    student one."""
    text = re.sub(r"\]\(\.\./notebooks/([^)\s]+\.ipynb)", r"](../exercises/\1", text)
    return re.sub(r"\]\(\.\./README[.\w-]*\.md", "](../README.md", text)


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def broken_links(out: Path) -> list[str]:
    """Relative links in the copy's notebooks and markdown files that lead to no file of the copy."""
    broken = []
    for path in sorted([*out.glob("exercises/*.ipynb"), *out.glob("docs/*.md"), out / "README.md"]):
        if not path.is_file():
            continue
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in read_notebook(path).cells if c.get("cell_type") == "markdown")
        else:
            text = path.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).resolve().exists():
                broken.append(f"{path.relative_to(out)} -> {target}")
    return sorted(set(broken))


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
    lessons = lessons_without_exercise(root)
    for path in lessons:
        shutil.copy2(path, out / "exercises" / path.name)
    shutil.copytree(CURRICULUM_DIR, out / "curriculum", ignore=IGNORE)
    for name in ("minitransformer", "experiments", "benchmarks", "docs"):
        if (root / name).is_dir():
            shutil.copytree(root / name, out / name, ignore=IGNORE)
    for path in (out / "docs").glob("*.md") if (out / "docs").is_dir() else ():
        path.write_text(_student_links(path.read_text(encoding="utf-8")), encoding="utf-8")
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

    first = min([*chapters.values(), *(p.name for p in lessons)], default="")
    released_text = ("the released reference solutions: " + ", ".join(released)) if released else \
        "no reference solutions"
    (out / "README.md").write_text(STUDENT_README.format(
        command=COMMAND, first=first, released=released_text,
        lessons=", ".join(p.name for p in lessons) or "none in this copy"), encoding="utf-8")
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
    problems += [f"a link leads nowhere: {link}" for link in broken_links(out)]
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
