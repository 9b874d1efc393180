"""Was a method's learning rate swept at the budget its verdict uses?

The protocol judges a method only at a learning rate chosen by a recorded sweep (seed 0) at
the method's final budget, on the verdict's validation metric, with the best rate strictly
inside the grid (a best rate at the grid's edge means the grid was too narrow).  Near-ties
(rates within the noise of one validation score of the top one) are reported as such: accuracy
cannot tell them apart, so where the sweep recorded the validation loss, the near-tie with the
lowest loss is the choice.

Sweeps on disk: the sentiment sweep of chapters 2-5, ``benchmarks/lr_sweep.json`` (``python -m
experiments.benchmark sweep``; accuracy only), and every protocol sweep, one record per rate in
``benchmarks/protocol/<task>/<method>/sweep/`` (``python -m experiments sweep <task>``; these
record the validation loss too).
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
    losses: tuple[float, ...] | None = None  # validation loss per rate, where the sweep recorded it

    @property
    def inside(self) -> bool:
        """The sweep's best rate is strictly inside its grid (at an edge, the grid was too narrow)."""
        return bool(self.grid) and self.best is not None and self.grid[0] < self.best < self.grid[-1]

    @property
    def swept(self) -> bool:
        """A sweep at this budget whose best rate is strictly inside its grid and is the rate in use."""
        return self.inside and self.used is not None and math.isclose(self.best, self.used)

    @property
    def near_ties(self) -> list[float]:  # over the whole grid, runs on the plateau included
        """Other rates within 1.96 standard errors of one accuracy of the top score (a binomial bound)."""
        if self.best is None:
            return []
        return [lr for lr in tied_rates(self.grid, self.scores, self.examples) if lr != self.best]

    @property
    def tie_broken_by_loss(self) -> bool:
        return bool(self.near_ties) and self.losses is not None

    def text(self) -> str:
        if not self.grid:
            return f"{self.method}: its learning rate was not swept at {self.epochs} epochs"
        grid = ", ".join(f"{lr:g}" for lr in self.grid)
        where = "inside" if self.inside else "AT THE EDGE of"
        used = "" if self.used is None or math.isclose(self.best, self.used) else f"; the runs use {self.used:g}"
        ties = f"; within noise of it: {', '.join(f'{lr:g}' for lr in self.near_ties)}" if self.near_ties else ""
        if self.tie_broken_by_loss:
            ties += " (chosen by the lowest validation loss)"
        return f"{self.method}: best rate {self.best:g} at {self.epochs} epochs, {where} [{grid}]{used}{ties}"


def tied_rates(grid, scores, examples: int) -> list[float]:
    """The rates whose score is within 1.96 binomial standard errors of the top score (the top one included)."""
    top = max(scores)
    noise = Z_95 * math.sqrt(top * (1 - top) / examples)
    return [lr for lr, s in zip(grid, scores) if top - s <= noise]


def check_from_records(method: str, epochs: int, used: float | None, cells: list[dict]) -> SweepCheck:
    """A SweepCheck from sweep cells ``{"lr", "validation", "loss" (optional), "examples"}``, one per rate.

    Only runs that left the one-class plateau compete, where any did (a run on the plateau did not train). The best
    rate is their top validation score; among rates within noise of it, the lowest validation loss where every
    tied cell recorded one."""
    cells = sorted(cells, key=lambda c: c["lr"])
    if not cells:
        return SweepCheck(method, epochs, used, (), None, ())
    grid, scores = tuple(c["lr"] for c in cells), tuple(c["validation"] for c in cells)
    examples = cells[0].get("examples", 500)
    losses = tuple(c["loss"] for c in cells) if all(c.get("loss") is not None for c in cells) else None
    pool = [c for c in cells if not c.get("on_plateau")] or cells
    best = max(pool, key=lambda c: c["validation"])["lr"]
    if losses is not None:
        tied = set(tied_rates([c["lr"] for c in pool], [c["validation"] for c in pool], examples))
        best = min((c for c in pool if c["lr"] in tied), key=lambda c: c["loss"])["lr"]
    return SweepCheck(method, epochs, used, grid, best, scores, examples, losses)


def protocol_sweep_cells(task: str, method: str, epochs: int, root=None) -> list[dict]:
    from experiments import records

    return [{"lr": r["lr"], "validation": r["validation"]["accuracy"], "loss": r["validation"].get("loss"),
             "examples": len(records.correct_vector(r)), "on_plateau": bool(r.get("on_plateau"))}
            for r in records.load_sweep(task, method, epochs, root)]


def sentiment_sweep_check(method: str, epochs: int, used: float | None, root=None) -> SweepCheck:
    """The sweep of a sentiment method at ``epochs``: its protocol sweep where it has one, else its cells of
    ``benchmarks/lr_sweep.json`` (its own runs only: a variant that borrows its family's rate has none)."""
    from experiments.results_io import load_results, run_epochs

    cells = protocol_sweep_cells("sentiment", method, epochs, root)
    if not cells:
        try:
            runs = load_results("lr_sweep")["runs"]
        except FileNotFoundError:
            runs = []
        cells = [{"lr": r["lr"], "validation": r["validation"]} for r in runs
                 if r["method"] == method and run_epochs(r) == epochs]
    return check_from_records(method, epochs, used, cells)


def sweep_table(task: str, methods, root=None) -> str:
    """The protocol sweep of each method at its final budget, one row per rate: the validation score (the task's
    ``METRIC``) and loss, training accuracy, plateau, and the task's ``SWEEP_COLUMNS``; the chosen rate in bold
    (see :func:`check_from_records`)."""
    from experiments import records
    from experiments.tasks import task_module

    module = task_module(task)
    metric = getattr(module, "METRIC", "validation accuracy")
    extra = getattr(module, "SWEEP_COLUMNS", {})  # a task's own columns: name -> the cell of a record
    lines = [f"| method | epochs | lr | {metric} | validation loss | train accuracy | plateau? |"
             + "".join(f" {name} |" for name in extra), "|---|---:|---:|---:|---:|---:|---|" + "---:|" * len(extra)]
    notes = []
    for m in methods:
        epochs = module.epochs_of(m)
        runs = records.load_sweep(task, m, epochs, root)
        check = module.sweep_check(m, epochs, None)
        for r in runs:
            mark = "**" if check.best is not None and math.isclose(r["lr"], check.best) else ""
            train = "—" if r.get("train_accuracy") is None else f"{r['train_accuracy']:.3f}"
            lines.append(f"| {m} | {epochs} | {mark}{r['lr']:g}{mark} | {mark}{r['validation']['accuracy']:.3f}{mark} | "
                         f"{r['validation']['loss']:.4f} | {train} | {'yes' if r.get('on_plateau') else 'no'} |"
                         + "".join(f" {cell(r)} |" for cell in extra.values()))
        notes.append(check.text())
    return "\n".join(lines + [""] + notes)
