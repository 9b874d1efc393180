"""Curriculum machinery: notebook export, graded tests and notebook self-checks.

- ``python -m curriculum.export`` turns each lesson notebook into an exercise
  notebook and a reference ``solutions`` module (see :mod:`curriculum.export`).
- :func:`points` marks a graded test; :func:`self_check` runs a chapter's graded
  tests from inside a notebook (see :mod:`curriculum.grading`).
- :mod:`curriculum.pytest_plugin` grades ``solutions/`` or student notebooks
  with pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curriculum.grading import points, self_check

__all__ = ["points", "self_check"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m curriculum.export` does not import the submodule twice.
    if name in __all__:
        from curriculum import grading

        return getattr(grading, name)
    raise AttributeError(f"module 'curriculum' has no attribute {name!r}")
