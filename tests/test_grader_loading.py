"""What loading a submission runs (curriculum/screening.py): definitions only, in-process and fast."""

from __future__ import annotations

import ast

import pytest

from curriculum.screening import Scope, screen_cell


def screen(source: str, strict: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(kept statements, notes, flags) for one cell."""
    result = screen_cell(ast.parse(source), Scope(), "cell 0", strict_imports=strict)
    return [ast.unparse(n).splitlines()[0] for n in result.kept], result.notes, result.flags


@pytest.mark.parametrize("source", [
    "import torch\nimport torch.nn as nn\nfrom dataclasses import dataclass, field\n",
    "import re\nPATTERN = re.compile(r'\\d+')\n",
    "SUBSETS = {'q': ('q_proj.bias',)}\nTYPES = tuple(s for s in SUBSETS if s != 'all')\n",
    "import torch.nn as nn\nACTIVATIONS = {'relu': nn.ReLU, 'gelu': nn.GELU}\n",
    "import torch\nEYE = torch.eye(3)\nRATE: float = float('0.5')\n",
    "from dataclasses import dataclass, field\n@dataclass\nclass C:\n    r: int = 8\n"
    "    names: list = field(default_factory=lambda: ['q', 'v'])\n",
    "import torch\nclass L:\n    @property\n    def w(self):\n        return 1\n    @w.setter\n    def w(self, v):\n"
    "        pass\n    @torch.no_grad()\n    def merge(self):\n        pass\n",
    "def helper(x):\n    return x\nTABLE = {'h': helper}\nclass A:\n    pass\nclass B(A):\n    pass\n",
])
def test_definitions_are_kept(source: str) -> None:
    kept, notes, flags = screen(source)
    assert notes == [] and flags == []
    assert len(kept) == len(ast.parse(source).body)


@pytest.mark.parametrize("source, why", [
    ("import os\n_ = os.remove('x')\n", "calls `os.remove`"),
    ("import torch\ntorch.manual_seed(0)\n", "not a definition"),
    ("import torch\n_ = torch.manual_seed(0)\n", "may have side effects"),
    ("from torch import save as s\n_ = s({}, 'x')\n", "torch.save"),
    ("import torch\n_ = torch.set_default_dtype(torch.float64)\n", "may have side effects"),
    ("def f():\n    pass\nX = f()\n", "calls your own `f`"),
    ("def f(x):\n    return x\nX = sorted([2, 1], key=f)\n", "passes `f` to a function"),
    ("X = sorted([2, 1], key=lambda v: open('x'))\n", "builtin `open`"),
    ("X = [y for y in undefined]\n", "uses `undefined`"),
    ("import os\ndef f(x=os.remove('x')):\n    pass\n", "calls `os.remove`"),
    ("def deco(fn):\n    return fn\n@deco\ndef g():\n    pass\n", "decorator `@deco`"),
    ("class A:\n    def __init_subclass__(cls):\n        pass\n", "__init_subclass__"),
    ("import os\nclass A:\n    x = os.getcwd()\n", "calls `os.getcwd`"),
    ("while True:\n    pass\n", "not a definition"),
])
def test_side_effects_are_skipped_with_a_note(source: str, why: str) -> None:
    _, notes, flags = screen(source)
    assert flags == [] and any(why in note for note in notes), notes


@pytest.mark.parametrize("source, why", [
    ("from solutions.lora import *\n", "imports `solutions.lora`"),
    ("import curriculum.grading as g\n", "imports `curriculum.grading`"),
    ("def f():\n    import solutions\n", "inside a definition"),
    ("import torch\ntorch.allclose = lambda *a: True\n", "changes `torch.allclose`"),
    ("import builtins\nbuiltins.AssertionError = KeyboardInterrupt\n", "changes `builtins.AssertionError`"),
    ("__builtins__.len = None\n", "changes `__builtins__.len`"),
])
def test_forbidden_imports_and_module_changes_are_flagged(source: str, why: str) -> None:
    kept, _, flags = screen(source)
    assert any(why in flag for flag in flags), flags


def test_without_export_tags_lesson_imports_are_skipped_not_flagged() -> None:
    kept, notes, flags = screen("from curriculum import self_check\nfrom solutions.lora import LoraConfig\n", strict=False)
    assert kept == [] and flags == [] and len(notes) == 2


# --------------------------------------------------------------------------- growing a class cell by cell
GROWN = ("from minitransformer.peft import add_to_class\nimport torch\nclass L:\n    pass\n"
         "@add_to_class(L)\n@torch.no_grad()\ndef merge(self):\n    return 1\n")


def test_a_class_grown_with_add_to_class_is_kept() -> None:
    kept, notes, flags = screen(GROWN)
    assert notes == [] and flags == [] and kept[-1].startswith("@add_to_class(L)")


def test_add_to_class_loads_and_attaches(tmp_path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from curriculum.grading import load_submission

    nb = new_notebook(cells=[new_code_cell(c, metadata={"tags": ["export"]}) for c in GROWN.split("@add_to_class")[:1]
                             + ["@add_to_class" + GROWN.split("@add_to_class")[1]]])
    nbformat.write(nb, tmp_path / "03_demo.ipynb")
    module, info = load_submission(tmp_path / "03_demo.ipynb")
    assert info.notes == [] and module.L().merge() == 1


@pytest.mark.parametrize("source, why", [
    ("from minitransformer.peft import add_to_class\nimport torch\n@add_to_class(torch.Tensor)\ndef f(self):\n"
     "    return 1\n", "would add a method to `torch.Tensor`"),
    ("from minitransformer.peft import add_to_class\n@add_to_class(int)\ndef f(self):\n    return 1\n",
     "would add a method to `int`"),
])
def test_add_to_class_on_a_library_class_is_flagged(source: str, why: str) -> None:
    _, _, flags = screen(source)
    assert any(why in flag for flag in flags), flags


@pytest.mark.parametrize("source, why", [
    ("from minitransformer.peft import add_to_class\n@add_to_class(Later)\ndef f(self):\n    return 1\n",
     "not a class this notebook defines"),
    ("from minitransformer.peft import add_to_class\nclass L:\n    pass\n@add_to_class(L, 2)\ndef f(self):\n"
     "    return 1\n", "must name exactly one class"),
    # the notebook's own decorator of the same name is the student's code: not run
    ("def add_to_class(cls):\n    return lambda f: f\nclass L:\n    pass\n@add_to_class(L)\ndef f(self):\n"
     "    return 1\n", "would run your code"),
    ("from minitransformer.peft import add_to_class\nadd_to_class = print\nclass L:\n    pass\n"
     "@add_to_class(L)\ndef f(self):\n    return 1\n", "only library functions may be called"),
])
def test_add_to_class_on_anything_else_is_skipped_with_a_note(source: str, why: str) -> None:
    _, notes, flags = screen(source)
    assert flags == [] and any(why in note for note in notes), notes
