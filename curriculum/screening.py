"""Which statements of a student notebook may run when it is loaded for grading.

Loading a submission must define things, not do things.  :func:`screen_cell` keeps a
top-level statement only if running it cannot call the student's own code or a
library function with side effects:

- ``import`` / ``from ... import`` (except the grader, the tests and the reference
  solutions: importing those is *flagged*, see :data:`FORBIDDEN_IMPORTS`);
- ``def`` and ``class``, if their decorators, default values, annotations, base
  classes and class-body assignments are themselves safe expressions;
- assignments whose value is a safe expression.

A *safe expression* is built from literals, names defined so far, operators,
comprehensions and lambdas (their bodies must be safe too), and calls of

- a few pure builtins (``tuple``, ``sorted``, ``float``, ...), or
- a function of an allowed library (:data:`LIBRARY_ROOTS`: torch, numpy, math, re,
  dataclasses, typing, ...), reached by a dotted name from an import, whose name does
  not suggest a side effect (:data:`DENIED_WORDS`: ``torch.save``, ``torch.set_...``,
  ``torch.manual_seed``, ...).

Functions and classes the notebook defines may be *referred to* (``{"gelu": my_gelu}``,
``class B(A)``, default values) but not *called* at load time, not even indirectly
(passed to ``sorted(key=...)``, used as a decorator).  The one exception is a decorator
of the project's own packages that only attaches a function to a class
(:data:`ATTACHING_DECORATORS`, ``@add_to_class(LoraLinear)``, the lessons' d2l style of
growing a class cell by cell): it runs when its argument is a class the notebook defines,
and attaching to anything else (``@add_to_class(torch.Tensor)``) is *flagged*.  Everything else is skipped with a
note the student can read.  Class methods that Python runs while a class is being
defined (``__init_subclass__``, ``__set_name__``, ``__class_getitem__``,
``__mro_entries__``) are dropped with a note.

Statements that change another module (``torch.allclose = ...``, ``del np.pi``) are
never run and are *flagged* as tampering.

This is a filter against accidents and casual tampering, not a sandbox: the student's
functions still run when the tests call them.  See curriculum/README.md.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

# Modules a submission may not import: the grader, the graded tests and the reference answers.
FORBIDDEN_IMPORTS = ("solutions", "curriculum", "tests", "conftest")
# `from curriculum import self_check` appears in every lesson's first cell: it is skipped
# (not run, not flagged) when a notebook lost its `export` tags and all cells are scanned.
LESSON_IMPORTS = {("curriculum", ("self_check",))}

# Libraries whose functions may be called by a constant's definition.
LIBRARY_ROOTS = frozenset({
    "abc", "collections", "dataclasses", "decimal", "enum", "fractions", "functools", "itertools",
    "json", "math", "numbers", "numpy", "operator", "re", "statistics", "string",
    "torch", "typing", "typing_extensions",
})
# A called name containing one of these words is not run at load time (I/O, global state, seeding).
DENIED_WORDS = (
    "save", "load", "open", "write", "remove", "unlink", "rmdir", "rmtree", "mkdir", "rename", "system",
    "exec", "eval", "compile_", "spawn", "popen", "fork", "kill", "exit", "hub", "download", "register",
    "seed", "patch", "setattr", "delattr", "set_", "use_", "enable", "disable", "sleep", "input", "print",
    "monkey", "hook", "import", "globals", "locals", "vars", "breakpoint",
)
# Decorators of the project's own packages that only attach the decorated function to the class
# given as their one argument (``setattr(cls, f.__name__, f)``) and return the function unchanged.
# They run at load time when that class is one the notebook defines. Keyed by where they are
# defined; an import under another path (a re-export) is resolved through the same table.
ATTACHING_DECORATORS = frozenset({
    "minitransformer.peft.add_to_class",
})
SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "bytes", "chr", "complex", "dict", "divmod", "enumerate", "float",
    "frozenset", "hash", "int", "isinstance", "issubclass", "len", "list", "max", "min", "object", "ord",
    "pow", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "property", "staticmethod", "classmethod",
})
# Methods Python calls while a class statement runs (or when a class is subscripted).
CLASS_TIME_METHODS = frozenset({"__init_subclass__", "__set_name__", "__class_getitem__", "__mro_entries__"})
_BUILTIN_NAMES = frozenset(dir(builtins))


def _denied(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in DENIED_WORDS)


@dataclass
class Scope:
    """What the names defined so far are bound to, as far as load time is concerned."""

    library: dict[str, str] = field(default_factory=dict)  # bound by an import of an allowed library -> what
    other_imports: set[str] = field(default_factory=set)  # imported from elsewhere (os, sys, ...)
    attachers: set[str] = field(default_factory=set)  # bound to one of ATTACHING_DECORATORS
    data: set[str] = field(default_factory=set)  # bound by a kept assignment
    code: set[str] = field(default_factory=set)  # the notebook's own functions and classes

    def defined(self, name: str) -> bool:
        return name in self.library or name in self.other_imports or name in self.data or name in self.code

    def copy(self) -> "Scope":
        return Scope(library=dict(self.library), other_imports=set(self.other_imports), attachers=set(self.attachers),
                     data=set(self.data), code=set(self.code))


class Unsafe(Exception):
    """Why an expression may not be evaluated at load time (the message is for the student)."""


class Tampering(Unsafe):
    """A definition that would change a library or the grader: the submission is flagged."""


def _dotted(node: ast.expr) -> list[str] | None:
    """``torch.nn.init.zeros_`` -> ``["torch", "nn", "init", "zeros_"]``; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _text(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Checker:
    """Checks that evaluating an expression calls nothing but allowed library functions."""

    def __init__(self, scope: Scope, local: frozenset[str] = frozenset()) -> None:
        self.scope = scope
        self.local = local  # comprehension / lambda variables

    def with_local(self, names: set[str]) -> "_Checker":
        return _Checker(self.scope, self.local | frozenset(names))

    def callable_ok(self, func: ast.expr) -> None:
        parts = _dotted(func)
        if parts is None:
            raise Unsafe(f"calls `{_text(func)}`, which is not a library function")
        root = parts[0]
        if root in self.local or root in self.scope.data:
            raise Unsafe(f"calls `{_text(func)}`; only library functions may be called outside functions")
        if root in self.scope.code:
            raise Unsafe(f"calls your own `{'.'.join(parts)}` while loading")
        if root in self.scope.library:
            # `from torch import save as s`: judge the imported name, not the alias.
            full = self.scope.library[root].split(".") + parts[1:]
            if any(_denied(p) for p in full[1:]):
                raise Unsafe(f"calls `{'.'.join(parts)}` (`{'.'.join(full)}`), which may have side effects")
            return
        if root in self.scope.other_imports:
            raise Unsafe(f"calls `{'.'.join(parts)}` (only torch, numpy, math, re, dataclasses, typing, "
                         "collections and similar libraries may be called while loading)")
        if len(parts) == 1 and root in SAFE_BUILTINS:
            return
        if root in _BUILTIN_NAMES:
            raise Unsafe(f"calls the builtin `{root}`, which is not run while loading")
        raise Unsafe(f"uses `{root}`, which is not defined by the definitions kept so far")

    def value_ok(self, node: ast.expr, in_call: bool) -> None:
        """A value used in an expression; ``in_call``: it is (inside) a call argument, which the
        callee may call, so the notebook's own functions and unsafe builtins may not appear."""
        if isinstance(node, ast.Name):
            name = node.id
            if name in self.local or name in self.scope.data:
                return
            if name in self.scope.library:
                if in_call and any(_denied(p) for p in self.scope.library[name].split(".")[1:]):
                    raise Unsafe(f"passes `{name}` ({self.scope.library[name]}) to a function while loading")
                return
            if name in self.scope.code or name in self.scope.other_imports:
                if in_call:
                    raise Unsafe(f"passes `{name}` to a function while loading (it could be called)")
                return
            if name in _BUILTIN_NAMES:
                if in_call and name not in SAFE_BUILTINS and not name[:1].isupper():
                    raise Unsafe(f"passes the builtin `{name}` to a function while loading")
                return
            raise Unsafe(f"uses `{name}`, which is not defined by the definitions kept so far")
        if isinstance(node, ast.Attribute):
            parts = _dotted(node)
            if in_call and parts is not None and parts[0] in self.scope.library and \
                    any(_denied(p) for p in self.scope.library[parts[0]].split(".")[1:] + parts[1:]):
                raise Unsafe(f"passes `{'.'.join(parts)}` to a function while loading")
            self.value_ok(node.value, in_call)
            return
        if isinstance(node, ast.Call):
            self.callable_ok(node.func)
            lib = _dotted(node.func) or []
            for arg in node.args:
                self.value_ok(arg, True)
            for kw in node.keywords:
                if kw.arg == "default_factory" and lib[-1:] == ["field"]:
                    self.value_ok(kw.value, False)  # dataclasses.field stores the factory; it calls it later
                else:
                    self.value_ok(kw.value, True)
            return
        if isinstance(node, ast.Lambda):
            args = node.args
            names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
                self.value_ok(default, in_call)
            self.with_local(names).value_ok(node.body, False)  # the body runs whenever the lambda is called
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            checker = self
            for gen in node.generators:
                checker.value_ok(gen.iter, in_call)
                checker = checker.with_local(_target_names(gen.target))
                for cond in gen.ifs:
                    checker.value_ok(cond, in_call)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                checker.value_ok(part, in_call)
            return
        if isinstance(node, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            raise Unsafe(f"`{_text(node)}` is not a definition")
        if isinstance(node, (ast.Constant, ast.expr_context)):
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.value_ok(child, in_call)
            elif isinstance(child, ast.keyword):
                self.value_ok(child.value, in_call)
            elif isinstance(child, ast.comprehension):  # pragma: no cover - handled above
                raise Unsafe(f"`{_text(node)}` is not supported while loading")


def _target_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _plain_targets(targets: list[ast.expr]) -> bool:
    """Assignment targets that only bind names (``x``, ``a, b``, ``*rest``)."""
    def plain(t: ast.expr) -> bool:
        if isinstance(t, ast.Name):
            return True
        if isinstance(t, (ast.Tuple, ast.List)):
            return all(plain(e) for e in t.elts)
        return isinstance(t, ast.Starred) and plain(t.value)

    return all(plain(t) for t in targets)


def _module_roots(targets: list[ast.expr], scope: Scope) -> list[str]:
    """Dotted targets such as ``torch.allclose`` or ``np.random.x[0]`` whose root is an import."""
    found = []
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                base = node.value
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                if isinstance(base, ast.Name) and (base.id in scope.library or base.id in scope.other_imports
                                                   or base.id in _BUILTIN_NAMES or base.id == "__builtins__"):
                    found.append(_text(node))
                    break
    return found


def forbidden_module(module: str | None) -> str | None:
    """The forbidden top-level package ``module`` belongs to, if any."""
    if not module:
        return None
    root = module.split(".")[0]
    if root in FORBIDDEN_IMPORTS or re.fullmatch(r"_?curriculum\w*|test_\w+", root):
        return root
    return None


@dataclass
class CellScreen:
    """The outcome of screening one cell: statements to run, notes for the student, flags."""

    kept: list[ast.stmt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


class _Screener:
    def __init__(self, scope: Scope, where: str, strict_imports: bool) -> None:
        self.scope = scope
        self.where = where
        self.strict_imports = strict_imports  # export cells: forbidden imports are flagged, not skipped
        self.result = CellScreen()

    def note(self, node: ast.AST, why: str) -> None:
        line = getattr(node, "lineno", "?")
        self.result.notes.append(f"{self.where}, line {line}: skipped `{_text(node)}` — {why}")

    def flag(self, node: ast.AST, why: str) -> None:
        line = getattr(node, "lineno", "?")
        self.result.flags.append(f"{self.where}, line {line}: {why}")

    # -- imports ------------------------------------------------------------------
    def import_ok(self, node: ast.Import | ast.ImportFrom, top_level: bool) -> bool:
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and node.level:
            self.note(node, "relative imports do not work in a notebook")
            return False
        bad = [m for m in modules if forbidden_module(m)]
        if not bad:
            return True
        names = tuple(sorted(a.name for a in node.names))
        if top_level and not self.strict_imports and isinstance(node, ast.ImportFrom) and (bad[0], names) in LESSON_IMPORTS:
            self.note(node, "lesson helper, not needed for grading")
            return False
        if top_level and not self.strict_imports:
            self.note(node, f"imports `{bad[0]}`, which a submission may not use")
            return False
        self.flag(node, f"imports `{bad[0]}` (`{_text(node)}`): a submission may not use the grader, the "
                        "graded tests or the reference solutions")
        return False

    def bind_import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if isinstance(node, ast.Import):
                bound, module = (alias.asname or alias.name.split(".")[0]), alias.name
            else:
                bound, module = (alias.asname or alias.name), node.module or ""
            if bound == "*":
                continue
            origin = alias.name if isinstance(node, ast.Import) else f"{module}.{alias.name}"
            if isinstance(node, ast.Import) and not alias.asname:
                origin = bound  # `import torch.nn` binds `torch`
            self.scope.other_imports.discard(bound)
            self.scope.data.discard(bound)
            self.scope.code.discard(bound)
            self.scope.library.pop(bound, None)
            self.scope.attachers.discard(bound)
            if origin in ATTACHING_DECORATORS:
                self.scope.attachers.add(bound)
            if module.split(".")[0] in LIBRARY_ROOTS:
                self.scope.library[bound] = origin
            else:
                self.scope.other_imports.add(bound)

    # -- nested code scanned for forbidden imports (they would run later, inside the tests) ----
    def scan_nested_imports(self, node: ast.AST) -> bool:
        ok = True
        for sub in ast.walk(node):
            if sub is not node and isinstance(sub, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in sub.names] if isinstance(sub, ast.Import) else [sub.module or ""]
                bad = [m for m in modules if forbidden_module(m)]
                if bad:
                    self.flag(sub, f"imports `{bad[0]}` (`{_text(sub)}`) inside a definition: a submission may "
                                   "not use the grader, the graded tests or the reference solutions")
                    ok = False
        return ok

    # -- definitions ----------------------------------------------------------------
    def function_ok(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: Scope, class_names: set[str]) -> str | None:
        """Why a def may not run (its decorators, defaults or annotations), or None."""
        checker = _Checker(scope)
        try:
            for deco in node.decorator_list:
                self.decorator_ok(deco, checker, class_names)
            args = node.args
            for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
                checker.value_ok(default, False)
            annotations = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                    *(x for x in (args.vararg, args.kwarg) if x)] if a.annotation]
            for ann in [*annotations, *([node.returns] if node.returns else [])]:
                checker.value_ok(ann, False)
        except Tampering:
            raise
        except Unsafe as exc:
            return str(exc)
        return None

    def decorator_ok(self, deco: ast.expr, checker: _Checker, class_names: set[str]) -> None:
        func = deco.func if isinstance(deco, ast.Call) else deco
        parts = _dotted(func)
        if parts and len(parts) == 1 and parts[0] in self.scope.attachers:
            self.attacher_ok(deco)
            return
        # @name.setter / .getter / .deleter on a property defined earlier in the same class body.
        if parts and len(parts) == 2 and parts[0] in class_names and parts[1] in ("setter", "getter", "deleter"):
            return
        if parts is None or parts[0] in self.scope.code or parts[0] in class_names:
            raise Unsafe(f"the decorator `@{_text(deco)}` would run your code while loading; "
                         "only library decorators (@dataclass, @torch.no_grad(), @property, ...) are allowed")
        checker.callable_ok(func)
        if isinstance(deco, ast.Call):
            for arg in deco.args:
                checker.value_ok(arg, True)
            for kw in deco.keywords:
                checker.value_ok(kw.value, True)

    def attacher_ok(self, deco: ast.expr) -> None:
        """``@add_to_class(C)``: runs only when ``C`` is a class this notebook defines."""
        name = _text(deco.func if isinstance(deco, ast.Call) else deco)
        if not isinstance(deco, ast.Call) or len(deco.args) != 1 or deco.keywords:
            raise Unsafe(f"`@{_text(deco)}` must name exactly one class, as in `@{name}(MyClass)`")
        target = deco.args[0]
        if isinstance(target, ast.Name) and target.id in self.scope.code:
            return
        if _module_roots([ast.Attribute(value=target, attr="x")], self.scope) or (
                isinstance(target, ast.Name) and target.id in _BUILTIN_NAMES):
            raise Tampering(f"`@{_text(deco)}` would add a method to `{_text(target)}`, which belongs to a "
                            "library or the grader")
        raise Unsafe(f"`@{_text(deco)}` attaches to `{_text(target)}`, which is not a class this notebook "
                     "defines (define the class in an earlier cell)")

    def class_ok(self, node: ast.ClassDef, scope: Scope) -> str | None:
        """Check a class statement; rewrite its body in place (unsafe statements dropped)."""
        checker = _Checker(scope)
        try:
            for deco in node.decorator_list:
                self.decorator_ok(deco, checker, set())
            for base in node.bases:
                checker.value_ok(base, False)
            for kw in node.keywords:
                if kw.arg == "metaclass":
                    parts = _dotted(kw.value)
                    if not parts or parts[0] not in scope.library:
                        raise Unsafe(f"metaclass `{_text(kw.value)}` would run code while loading")
                checker.value_ok(kw.value, True)
        except Tampering:
            raise
        except Unsafe as exc:
            return str(exc)
        body_scope = scope.copy()
        class_names: set[str] = set()
        body: list[ast.stmt] = []
        for stmt in node.body:
            why = self.class_stmt_ok(stmt, body_scope, class_names)
            if why is None:
                body.append(stmt)
            elif why:
                self.note(stmt, why)
        node.body = body or [ast.Pass(lineno=node.lineno, col_offset=0)]
        return None

    def class_stmt_ok(self, stmt: ast.stmt, scope: Scope, class_names: set[str]) -> str | None:
        """None: keep; "": drop silently; else why it is dropped."""
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if stmt.name in CLASS_TIME_METHODS:
                return f"`{stmt.name}` runs while classes are defined, which loading does not allow"
            why = self.function_ok(stmt, scope, class_names)
            if why is None:
                class_names.add(stmt.name)
            return why
        if isinstance(stmt, ast.ClassDef):
            why = self.class_ok(stmt, scope)
            if why is None:
                class_names.add(stmt.name)
            return why
        if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            return None
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if not _plain_targets(targets):
                return "only plain names can be assigned in a class body"
            checker = _Checker(scope, frozenset(class_names))
            try:
                if isinstance(stmt, ast.AnnAssign):
                    checker.value_ok(stmt.annotation, False)
                if stmt.value is not None:
                    checker.value_ok(stmt.value, False)
            except Unsafe as exc:
                return str(exc)
            for t in targets:
                class_names |= _target_names(t)
            return None
        return "only methods, constants and docstrings are run in a class body while loading"

    # -- top level ------------------------------------------------------------------
    def statement(self, node: ast.stmt) -> None:
        kept = self.result.kept
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if self.import_ok(node, top_level=True):
                self.bind_import(node)
                kept.append(node)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not self.scan_nested_imports(node):
                return
            try:
                why = self.class_ok(node, self.scope) if isinstance(node, ast.ClassDef) else \
                    self.function_ok(node, self.scope, set())
            except Tampering as exc:
                self.flag(node, str(exc))
                return
            if why is not None:
                self.note(node, why)
                return
            self.scope.code.add(node.name)
            self.scope.data.discard(node.name)
            self.scope.library.pop(node.name, None)
            self.scope.attachers.discard(node.name)
            kept.append(node)
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Delete)):
            targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target])
            tampered = _module_roots(targets, self.scope)
            if tampered:
                self.flag(node, f"changes `{tampered[0]}`, which belongs to a library or the grader")
                return
            if isinstance(node, ast.Delete) or not _plain_targets(targets):
                self.note(node, "only assignments to plain names are run while loading")
                return
            value = node.value
            checker = _Checker(self.scope)
            try:
                if isinstance(node, ast.AnnAssign):
                    checker.value_ok(node.annotation, False)
                if isinstance(node, ast.AugAssign):
                    checker.value_ok(node.target, False)
                if value is not None:
                    checker.value_ok(value, False)
            except Unsafe as exc:
                self.note(node, str(exc))
                return
            for t in targets:
                names = _target_names(t)
                self.scope.data |= names
                self.scope.code -= names
                self.scope.attachers -= names
                for name in names:
                    self.scope.library.pop(name, None)
            kept.append(node)
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # a docstring or a bare constant
        if isinstance(node, ast.Pass):
            return
        self.note(node, "not a definition (loading runs only imports, functions, classes and constants)")


def screen_cell(tree: ast.Module, scope: Scope, where: str, *, strict_imports: bool) -> CellScreen:
    """Screen the top-level statements of one cell, updating ``scope`` with what they define.

    ``strict_imports``: the cell is an ``export`` cell, so importing the grader, the tests or
    the solutions is flagged; otherwise (all cells scanned) top-level imports of those are
    only skipped.  Imports of them inside functions or classes are always flagged.
    """
    screener = _Screener(scope, where, strict_imports)
    for node in tree.body:
        screener.statement(node)
    return screener.result
