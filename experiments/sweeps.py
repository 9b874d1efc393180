"""Was a method's learning rate swept at the budget its verdict uses?

The protocol judges a method only at a learning rate chosen by a recorded sweep (seed 0) at
the method's final budget, on the verdict's validation metric, with the best rate strictly
inside the grid (a best rate at the grid's edge means the grid was too narrow).  Near-ties
(two rates within the noise of one validation score) are reported as such: the sweep cannot
tell them apart, so the choice between them is not evidence.

The sentiment sweep is ``benchmarks/lr_sweep.json`` (``python -m experiments.benchmark sweep``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.stats import Z_95


@dataclass(frozen=True)
class SweepCheck:
    method: str
    epochs: int
    used: float | None  # the rate the protocol runs use
    grid: tuple[float, ...]  # the rates swept at this budget
    best: float | None  # the sweep's best rate
    scores: tuple[float, ...]  # validation score per rate of the grid
    examples: int = 500

    @property
    def inside(self) -> bool:
        """The sweep's best rate is strictly inside its grid (at an edge, the grid was too narrow)."""
        return bool(self.grid) and self.best is not None and self.grid[0] < self.best < self.grid[-1]

    @property
    def swept(self) -> bool:
        """A sweep at this budget whose best rate is strictly inside its grid and is the rate in use."""
        return self.inside and self.used is not None and math.isclose(self.best, self.used)

    @property
    def near_ties(self) -> list[float]:
        """Other rates within 1.96 standard errors of one accuracy of the best score (a binomial bound)."""
        if self.best is None:
            return []
        top = max(self.scores)
        noise = Z_95 * math.sqrt(top * (1 - top) / self.examples)
        return [lr for lr, s in zip(self.grid, self.scores) if lr != self.best and top - s <= noise]

    def text(self) -> str:
        if not self.grid:
            return f"{self.method}: its learning rate was not swept at {self.epochs} epochs"
        grid = ", ".join(f"{lr:g}" for lr in self.grid)
        where = "inside" if self.inside else "AT THE EDGE of"
        used = "" if self.used is None or math.isclose(self.best, self.used) else f"; the runs use {self.used:g}"
        ties = f"; within noise of it: {', '.join(f'{lr:g}' for lr in self.near_ties)}" if self.near_ties else ""
        return f"{self.method}: best rate {self.best:g} at {self.epochs} epochs, {where} [{grid}]{used}{ties}"


def sentiment_sweep_check(method: str, epochs: int, used: float | None) -> SweepCheck:
    """The sweep record of a sentiment method at ``epochs`` (its own runs only: a variant that borrows its
    family's rate, such as ``lora_r16``, has none)."""
    from experiments.results_io import load_results, run_epochs

    try:
        runs = load_results("lr_sweep")["runs"]
    except FileNotFoundError:
        runs = []
    mine = sorted((r for r in runs if r["method"] == method and run_epochs(r) == epochs), key=lambda r: r["lr"])
    if not mine:
        return SweepCheck(method, epochs, used, (), None, ())
    best = max(mine, key=lambda r: r["validation"])
    return SweepCheck(method, epochs, used, tuple(r["lr"] for r in mine), best["lr"],
                      tuple(r["validation"] for r in mine))
