"""Detecting a submission that changes the libraries or the grader it is graded with.

:func:`take_snapshot` records, by identity, the attributes of ``builtins``, of the
``torch`` and ``numpy`` modules, of the grader (``curriculum``), of ``minitransformer``
and of the graded test modules, plus the dictionaries of the classes they define
(``torch.Tensor.__eq__``, ``nn.Module.__call__``, ...), the function code objects of
the grader and the tests, and a few interpreter hooks (``sys.settrace``, ...).
:func:`changes_since` lists what differs later.  Grading compares after loading a
notebook and after every test; any difference flags the notebook.

Attributes that appear later (torch imports submodules lazily) are not changes;
private module-level names of torch and numpy (``torch._dynamo...``) are not
watched because those libraries update them themselves, and neither are plain
numbers in class dictionaries (counters such as ``RemovableHandle.next_id`` that
honest code moves).  The standard-library modules the grading process uses to
time, classify and report a test (:data:`STDLIB_WATCHED`: ``json``, ``signal``,
``traceback``, ...) are watched whole.

:func:`private_copy` gives the grading process its own copy of the grader's
functions, bound before any student code runs, so a later patch of
``curriculum.grading.classify`` (even one that undoes itself) cannot reach them.
"""

from __future__ import annotations

import builtins
import re
import sys
import types
import warnings
from typing import Any

WATCHED_PACKAGES = ("torch", "numpy", "curriculum", "minitransformer")
_OWN = ("curriculum", "minitransformer", "builtins", "_curriculum_graded_")
# Standard-library modules the grading process itself relies on to time, classify and report a
# test: every attribute watched, private ones too (``json._default_encoder`` is what ``json.dumps`` uses).
STDLIB_WATCHED = ("json", "json.encoder", "json.decoder", "multiprocessing.connection", "signal", "traceback",
                  "linecache", "inspect", "types", "contextlib")


def _own(module_name: str) -> bool:
    return module_name.startswith(_OWN) or module_name in STDLIB_WATCHED


def _counter(value: Any) -> bool:
    """Plain numbers in a class's dictionary are state that honest code moves (``RemovableHandle.next_id``
    counts the hooks registered so far): they are not watched."""
    return type(value) in (int, float)


# torch and numpy modules whose public attributes and classes are watched: those the tests and
# the lessons use (watching every submodule of torch costs seconds per notebook).
LIBRARY_MODULES = re.compile(
    r"^(torch|torch\.(nn|nn\.functional|nn\.init|nn\.parameter|nn\.modules(\.\w+)?|nn\.utils"
    r"|autograd|linalg|testing|random|serialization|functional|types|utils\.data)"
    r"|numpy|numpy\.(testing|linalg|random))$"
)


def watched_modules() -> dict[str, types.ModuleType]:
    """The modules whose attributes are watched: builtins, torch and numpy's main modules, the grader,
    minitransformer and the graded tests."""
    found: dict[str, types.ModuleType] = {"builtins": builtins}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType):
            continue
        if LIBRARY_MODULES.match(name) or _own(name):
            found[name] = module
    return found


def _interpreter_hooks() -> dict[str, Any]:
    return {
        "sys.settrace": sys.gettrace(),
        "sys.setprofile": sys.getprofile(),
        "sys.excepthook": sys.excepthook,
        "sys.breakpointhook": sys.breakpointhook,
        "builtins.__import__": builtins.__import__,
    }


Snapshot = dict[tuple[str, ...], Any]


def take_snapshot() -> Snapshot:
    """Everything watched, by identity (the objects themselves are kept, so ids cannot be reused)."""
    snap: Snapshot = {}
    for key, value in _interpreter_hooks().items():
        snap[("hook", key)] = value
    seen_classes: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some torch attributes warn when touched
        for name, module in watched_modules().items():
            snap[("sys.modules", name)] = module
            own = _own(name)
            for attr, value in list(vars(module).items()):
                if not own and attr.startswith("_"):
                    continue
                snap[(name, attr)] = value
                if isinstance(value, type):
                    origin = str(getattr(value, "__module__", ""))
                    if id(value) in seen_classes or origin == "builtins" or \
                            not (origin.split(".")[0] in ("torch", "numpy") or _own(origin)
                                 or origin.startswith("_json")):
                        continue
                    seen_classes.add(id(value))
                    qualname = f"{origin}.{value.__qualname__}"
                    members = vars(value)
                    snap[("members", qualname)] = frozenset(members)
                    for cattr, cvalue in list(members.items()):
                        if cattr not in ("__dict__", "__weakref__", "__doc__", "__abstractmethods__", "_abc_impl") \
                                and not _counter(cvalue):
                            snap[("class", qualname, cattr)] = cvalue
                elif own and isinstance(value, types.FunctionType):
                    snap[("code", f"{name}.{attr}")] = value.__code__
                    snap[("defaults", f"{name}.{attr}")] = value.__defaults__
    return snap


def _describe(key: tuple[str, ...]) -> str:
    kind = key[0]
    if kind == "hook":
        return f"{key[1]} was changed"
    if kind == "sys.modules":
        return f"sys.modules['{key[1]}'] was replaced"
    if kind == "class":
        return f"{key[1]}.{key[2]} was changed"
    if kind in ("code", "defaults"):
        return f"the code of {key[1]} was changed" if kind == "code" else f"the default arguments of {key[1]} were changed"
    module = "builtins" if key[0] == "builtins" else key[0]
    return f"{module}.{key[1]} was changed"


def changes_since(before: Snapshot, limit: int = 5) -> list[str]:
    """What changed since ``before`` (at most ``limit`` items, most telling first)."""
    now = take_snapshot()
    changed = []
    for key, value in before.items():
        if key not in now:  # deleted, or a watched module removed from sys.modules
            changed.append(_describe(key).replace("was changed", "was deleted"))
            if len(changed) >= limit:
                break
            continue
        if key[0] == "members":
            added = sorted(now[key] - value)
            if added:
                changed.append(f"{key[1]}.{added[0]} was added")
        elif now[key] is not value:
            changed.append(_describe(key))
        if len(changed) >= limit:
            break
    return changed


def private_copy(module: types.ModuleType) -> types.SimpleNamespace:
    """The module's functions re-created over a private copy of its globals.

    A function looks its helpers up in its module's ``__dict__`` at call time, so patching
    ``module.classify`` changes what every caller gets.  The copies look them up in a
    dictionary that only this call holds: patches of the module made later do not reach
    them.  ``@contextmanager`` functions are re-wrapped around their copied generator.
    """
    import contextlib

    namespace = dict(vars(module))

    def clone(func: types.FunctionType) -> types.FunctionType:
        copy = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
        copy.__kwdefaults__ = func.__kwdefaults__
        copy.__dict__.update(func.__dict__)
        copy.__qualname__ = func.__qualname__
        return copy

    for name, value in list(namespace.items()):
        wrapped = getattr(value, "__wrapped__", None)
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            if isinstance(wrapped, types.FunctionType) and wrapped.__module__ == module.__name__ \
                    and value.__code__.co_name == "helper":  # @contextmanager
                namespace[name] = contextlib.contextmanager(clone(wrapped))
            else:
                namespace[name] = clone(value)
    return types.SimpleNamespace(**namespace)
