"""The verdict protocol: its outcomes, a convergence test that can fail, and the rule that joins them.

A claim is judged on the recorded runs (:mod:`experiments.records`) of the methods it
compares, at each method's final budget:

- **converged**: for every method that trains, seed 0 was also run at twice the budget
  (same schedule shape, same learning rate), and the doubled run's score is not higher
  than the 1× run's by more than the method's own noise (the half-width of its score's
  95% interval over seeds and evaluation examples).  A run whose doubled budget helps
  by more than that was still learning: the test fails, and so can any verdict.
- **the interval** of the claim's statistic (``ratio`` or ``difference`` against the
  reference, or the ``value`` itself) comes from :func:`experiments.stats.paired_interval`:
  seed spread and the finite evaluation set together.

- **the learning rate** of every method that trains was chosen by a sweep at that same
  budget, its best rate strictly inside the grid (:mod:`experiments.sweeps`); a rate
  borrowed from another budget or another method is not an optimised run either.

Outcomes, the same in every chapter:

=============================== ===========================================================
``reproduced``                  ≥ 3 seeds, every method converged, the whole interval on the
                                claim's side of the threshold
``not reproduced``              the same, the whole interval on the other side
``inconclusive: not converged`` a method's doubled budget still helped or was never run, a
                                run never left the one-class plateau, or a rate was not swept
                                at the final budget
``inconclusive: within noise``  converged, but the interval holds the threshold (or < 3 seeds)
``inconclusive: task not learned`` converged, but no method of the claim beats what a system
                                that ignores the input scores (a task module's ``not_learned``;
                                data-to-text: one fixed text): such a comparison says nothing
=============================== ===========================================================

A claim with no runs at all is ``not run``, and one with a single seed is shown but not
judged (``one seed: shown, not judged``): neither is a verdict.  Thresholds are part of the claim,
fixed in :mod:`experiments.claims` before any run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from experiments import records
from experiments.stats import MIN_SEEDS, Interval, paired_interval

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_CONVERGED = "inconclusive: not converged"
WITHIN_NOISE = "inconclusive: within noise"
NOT_LEARNED = "inconclusive: task not learned"
NOT_RUN = "not run"
SINGLE_SEED = "one seed: shown, not judged"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, NOT_CONVERGED, WITHIN_NOISE, NOT_LEARNED)

SEEDS = (0, 1, 2)
DOUBLED = 2  # the convergence test's budget multiple


@dataclass(frozen=True)
class Convergence:
    """The doubled-budget test of one method (seed 0)."""

    method: str
    epochs: int
    score: float | None  # seed 0 at 1x
    doubled: float | None  # seed 0 at 2x; None: not run
    noise: float | None  # half-width of the method's own 95% interval at 1x
    exact: bool = False  # fit to convergence by construction (the L-BFGS probe), or not trained at all
    exact_note: str = "fit to convergence (L-BFGS)"

    @property
    def gain(self) -> float | None:
        return None if self.doubled is None or self.score is None else self.doubled - self.score

    @property
    def converged(self) -> bool:
        if self.exact:
            return True
        return self.gain is not None and self.noise is not None and self.gain <= self.noise

    def text(self) -> str:
        if self.exact:
            return f"{self.method}: {self.exact_note}"
        if self.score is None:
            return f"{self.method}: no run of seed 0 at {self.epochs} epochs yet"
        if self.doubled is None:
            return f"{self.method}: no run at {DOUBLED}x {self.epochs} epochs yet"
        verdict = "converged" if self.converged else "STILL LEARNING"
        return (f"{self.method}: {self.epochs}→{DOUBLED * self.epochs} epochs {self.score:.3f}→{self.doubled:.3f} "
                f"(gain {self.gain:+.3f}, noise ±{self.noise:.3f}: {verdict})")


@dataclass
class Verdict:
    claim: object  # experiments.claims.Claim
    outcome: str
    reason: str
    interval: Interval | None = None
    seeds: list[int] = field(default_factory=list)
    convergence: list[Convergence] = field(default_factory=list)
    point: float | None = None  # the statistic of a single seed (no interval, no verdict)
    sweeps: list = field(default_factory=list)  # experiments.sweeps.SweepCheck of each method that trains

    def as_dict(self) -> dict:
        c = self.claim
        out = {"id": c.id, "chapter": c.chapter, "claim": c.statement, "paper": c.paper, "paper_value": c.paper_value,
               "task": c.task, "metric": c.metric, "methods": c.methods, "rule": c.rule, "statistic": c.statistic,
               "comparison": c.comparison, "threshold": c.threshold, "outcome": self.outcome, "reason": self.reason, "seeds": self.seeds,
               "convergence": [{"method": v.method, "epochs": v.epochs, "score": v.score, "doubled": v.doubled,
                                "noise": v.noise, "exact": v.exact, "converged": v.converged}
                               for v in self.convergence],
               "learning_rates": [{"method": w.method, "epochs": w.epochs, "used": w.used, "grid": list(w.grid),
                                   "best": w.best, "swept": w.swept, "near_ties": w.near_ties} for w in self.sweeps]}
        if self.point is not None:
            out["estimate"] = self.point
        if self.interval is not None:
            i = self.interval
            out.update(estimate=i.estimate, low=i.low, high=i.high, seed_half_width=i.seed_half_width,
                       sample_half_width=i.sample_half_width, examples=i.examples)
        return out


def _vectors(runs: dict[int, dict], seeds: Iterable[int], split: str) -> list[list[float]]:
    return [records.correct_vector(runs[s], split) for s in seeds]


def _same_examples(runs: Iterable[dict], split: str) -> bool:
    """Every run was scored on the same examples in the same order: the same texts (``texts``, where recorded:
    a template changes the token ids, not the reviews), else the same token ids (``examples``)."""
    runs = list(runs)
    if all(r[split].get("texts") for r in runs):
        return len({r[split]["texts"] for r in runs}) == 1
    return len({r[split]["examples"] for r in runs}) == 1


def _point(claim, runs: dict[str, dict[int, dict]], seed: int, split: str) -> float:
    from experiments.stats import STATISTICS, STATISTICS_OF_FOUR

    scores = [np.array([runs[m][seed][split]["accuracy"]]) for m in claim.methods]
    if claim.statistic in STATISTICS_OF_FOUR:
        return float(STATISTICS_OF_FOUR[claim.statistic](*scores)[0])
    return float(STATISTICS[claim.statistic](scores[0], scores[1] if claim.reference else np.zeros(1))[0])


def _reduce(task: str) -> str | None:
    """How a task's per-example records become its score (None: their mean; see experiments.stats.REDUCERS)."""
    from experiments.tasks import task_module

    return getattr(task_module(task), "REDUCE", None)


def _noise(runs: dict[int, dict], split: str, reduce: str | None = None) -> float | None:
    """Half-width of a method's own 95% interval over its seeds and examples (None: fewer than 2 seeds)."""
    if len(runs) < 2:
        return None
    return paired_interval(_vectors(runs, sorted(runs), split), statistic="value", reduce=reduce).half_width


def convergence_of(task: str, method: str, epochs: int, runs: dict[int, dict], *, exact: bool = False,
                   split: str = "validation", root=None) -> Convergence:
    """The doubled-budget test of ``method`` from its 1x runs (by seed) and its seed-0 run at 2x."""
    if exact:
        from experiments.tasks import task_module

        note = getattr(task_module(task), "EXACT_NOTE", Convergence.exact_note)
        return Convergence(method, epochs, None, None, None, exact=True, exact_note=note)
    score = runs[0][split]["accuracy"] if 0 in runs else None
    noise = _noise(runs, split, _reduce(task))
    doubled_run = records.load_run(task, method, DOUBLED * epochs, 0, root)
    doubled = doubled_run[split]["accuracy"] if doubled_run is not None else None
    return Convergence(method, epochs, score, doubled, noise)


def previous_budget_test(task: str, method: str, epochs: int, *, split: str = "validation",
                         root=None) -> Convergence | None:
    """The doubled-budget test at half the final budget ``epochs``: the evidence that set the final budget.

    Seed 0 at ``epochs // 2`` against the very same run (seed 0, the same rate) trained for ``epochs``, which the
    final budget's sweep keeps as one of its cells; the noise is the half budget's seeds'. None when those runs
    are not on file (a method whose first budget was its final one).
    """
    half = epochs // 2
    runs = records.load_runs(task, method, half, SEEDS, root)
    if 0 not in runs or runs[0].get("lr") is None:
        return None
    path = records.sweep_path(task, method, epochs, runs[0]["lr"], root)
    if not path.exists():
        return None
    twice = records.load_run_file(path)
    return Convergence(method, half, runs[0][split]["accuracy"], twice[split]["accuracy"],
                       _noise(runs, split, _reduce(task)))


def decide(interval: Interval, comparison: str, threshold: float) -> str:
    """The outcome of a converged claim with enough seeds, from where its interval lies."""
    if comparison not in (">=", "<="):
        raise ValueError(f"comparison must be '>=' or '<=', got {comparison!r}")
    holds, fails = (interval.above(threshold), interval.below(threshold)) if comparison == ">=" else \
        (interval.below(threshold), interval.above(threshold))
    return REPRODUCED if holds else NOT_REPRODUCED if fails else WITHIN_NOISE


def judge(claim, *, root=None, split: str = "validation", sweeps=None) -> Verdict:
    """The claim's verdict from the recorded runs (see the module docstring for the rule).

    ``sweeps(method, epochs, lr)`` gives a method's :class:`experiments.sweeps.SweepCheck`
    (default: the claim's task's committed sweep).
    """
    from experiments.tasks import task_module

    task = task_module(claim.task)
    if sweeps is None:
        sweeps = task.sweep_check
    methods = claim.methods
    runs = {m: records.load_runs(claim.task, m, claim.epochs(m), SEEDS, root) for m in methods}
    if not all(runs.values()):
        missing = [m for m in methods if not runs[m]]
        waiting = task.runnable(missing)[1]
        how = "; ".join(waiting) if waiting else f"run `python -m experiments run {claim.task}`"
        return Verdict(claim, NOT_RUN, f"no recorded runs of {', '.join(missing)} at {claim.task}: {how}")
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    mixed = {m: sorted({r.get("lr") for r in runs[m].values()}, key=str) for m in methods
             if len({r.get("lr") for r in runs[m].values()}) > 1}
    if mixed:  # a seed left over from another rate: the seeds no longer measure one recipe
        which = "; ".join(f"{m}: " + ", ".join(f"seed {s} at lr {r.get('lr'):g}" for s, r in sorted(runs[m].items()))
                          for m in mixed)
        return Verdict(claim, NOT_RUN, f"runs at different learning rates ({which}): delete the runs at the rate "
                                       f"the sweep no longer chooses and run `python -m experiments run {claim.task}`")
    all_runs = [runs[m][s] for m in methods for s in seeds]
    if not _same_examples(all_runs, split):
        raise records.RecordError(f"{claim.id}: the runs were scored on different {split} sets; re-run them.")
    stuck_on_plateau = [f"{m} seed {s}" for m in methods for s in seeds if runs[m][s].get("on_plateau")]
    convergence = [convergence_of(claim.task, m, claim.epochs(m), runs[m], exact=claim.exact(m), split=split,
                                  root=root) for m in methods]
    if len(seeds) < 2:
        return Verdict(claim, SINGLE_SEED, f"seed {seeds[0]} only: its point value is shown, never judged", None, seeds,
                       convergence, point=_point(claim, runs, seeds[0], split))
    a, b, *cd = [_vectors(runs[m], seeds, split) for m in methods] + ([None] if not claim.reference else [])
    interval = paired_interval(a, b, statistic=claim.statistic, reduce=_reduce(claim.task), **dict(zip("cd", cd)))
    side = decide(interval, claim.comparison, claim.threshold)
    sweep_checks = [sweeps(m, claim.epochs(m), runs[m][seeds[0]].get("lr")) for m in methods if not claim.exact(m)]
    unswept = [c for c in sweep_checks if not c.swept]
    stuck = [v for v in convergence if not v.converged]
    if stuck or stuck_on_plateau or unswept:
        reason = "; ".join([v.text() for v in stuck] + ([f"never left the one-class plateau: {', '.join(stuck_on_plateau)}"]
                                                         if stuck_on_plateau else []) + [c.text() for c in unswept])
        return Verdict(claim, NOT_CONVERGED, reason, interval, seeds, convergence, sweeps=sweep_checks)
    not_learned = getattr(task, "not_learned", None)
    unlearned = [not_learned(m, {s: runs[m][s] for s in seeds}, split) for m in methods] if not_learned else []
    if unlearned and all(unlearned):
        return Verdict(claim, NOT_LEARNED, "no method of the claim learned the task: " + "; ".join(unlearned),
                       interval, seeds, convergence, sweeps=sweep_checks)
    if len(seeds) < MIN_SEEDS:
        return Verdict(claim, WITHIN_NOISE, f"{len(seeds)} seeds: a verdict needs {MIN_SEEDS}", interval, seeds,
                       convergence, sweeps=sweep_checks)
    where = {REPRODUCED: "the whole interval is on the claim's side of",
             NOT_REPRODUCED: "the whole interval is on the other side of",
             WITHIN_NOISE: "the interval holds"}[side]
    return Verdict(claim, side, f"{where} {claim.comparison} {claim.threshold:g}", interval, seeds, convergence,
                   sweeps=sweep_checks)
