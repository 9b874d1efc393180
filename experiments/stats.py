"""The one statistics rule every verdict of the course uses.

A score such as "LoRA's accuracy ÷ full fine-tuning's" is uncertain for two reasons:

1. **Seeds.** Another seed (head init, data order) trains another model. With k seeds,
   the seed part of the standard error is s / √k, where s is the standard deviation of
   the per-seed statistics; its 95% half-width uses Student's t with k - 1 degrees of
   freedom, since s itself is estimated from k values.
2. **The finite evaluation set.** 500 validation reviews are a sample of the reviews
   the world could produce. This part is estimated with a *paired* bootstrap over
   evaluation examples: the same resampled examples score both methods, so that a
   review both methods find hard does not count twice. Its 95% half-width is 1.96
   bootstrap standard errors.

The two parts are independent (the evaluation set is the same for every seed), so their
half-widths add in quadrature::

    half_width = sqrt((t_{k-1} · s / √k)² + (1.96 · se_bootstrap)²)

Everything here is plain numpy and deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Z_95 = 1.959963984540054
# Two-sided 95% quantiles of Student's t, by degrees of freedom (df > 30: the normal's).
_T_95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
BOOTSTRAP_REPLICATES = 4000
MIN_SEEDS = 3  # fewer seeds: the seed spread is unknown, so no definite verdict


def t_quantile_95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom (2 seeds), got {df}.")
    return _T_95[df - 1] if df <= len(_T_95) else Z_95


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval and the two parts of its half-width."""

    estimate: float
    low: float
    high: float
    seed_half_width: float  # t_{k-1} · s / √k (0 with one seed: unknown, not zero; see `seeds`)
    sample_half_width: float  # 1.96 · the paired bootstrap's standard error
    seeds: int
    examples: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def above(self, threshold: float) -> bool:
        return self.low > threshold

    def below(self, threshold: float) -> bool:
        return self.high < threshold

    def text(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ÷ b (the score of a method relative to a reference)."""
    return a / np.where(b == 0, np.nan, b)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b."""
    return a - b


def identity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a alone (an absolute score; b is ignored)."""
    return a


STATISTICS: dict[str, Statistic] = {"ratio": ratio, "difference": difference, "value": identity}
# Statistics of four methods: (a ÷ b) − (c ÷ d), e.g. how much more of full fine-tuning's score prompt tuning
# gets on a larger model than on a smaller one (the runs of all four share the evaluation set).
STATISTICS_OF_FOUR = {"ratio_gain": lambda a, b, c, d: ratio(a, b) - ratio(c, d)}


def _as_matrix(per_seed: Sequence[Sequence[float]], name: str, counts: bool = False) -> np.ndarray:
    matrix = np.asarray([np.asarray(s, dtype=np.float64) for s in per_seed])
    if matrix.ndim != (3 if counts else 2) or 0 in matrix.shape:
        what = "one row of counts per example" if counts else "one vector of per-example scores"
        raise ValueError(f"{name} needs {what} per seed, all of one length (got shape {matrix.shape}).")
    return matrix


def entity_f1(counts: np.ndarray) -> np.ndarray:
    """Entity F1 from summed (or averaged) per-sentence counts (..., 3) = (correct, predicted, gold) spans:
    2·correct ÷ (predicted + gold), the CoNLL micro F1 (0 where nothing was predicted or expected)."""
    denominator = counts[..., 1] + counts[..., 2]
    return np.where(denominator > 0, 2 * counts[..., 0] / np.where(denominator > 0, denominator, 1), 0.0)


# A corpus score that is not a mean of per-example scores, computed from the mean of per-example counts.
REDUCERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"entity_f1": entity_f1}


def paired_interval(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]] | None = None, *,
                    statistic: str = "ratio", c=None, d=None, replicates: int = BOOTSTRAP_REPLICATES,
                    seed: int = 0, reduce: str | None = None) -> Interval:
    """The 95% interval of ``statistic(mean score of a, mean score of b)``.

    ``a`` and ``b`` hold, per seed, one score per evaluation example (1/0 for correct/wrong),
    in the same example order; seeds are paired by position (seed i of a with seed i of b).
    For ``statistic="value"``, ``b`` is not used; ``"ratio_gain"`` also needs ``c`` and ``d``:
    (a ÷ b) − (c ÷ d).

    A score that is not a mean over examples (entity F1) passes, per example, a row of counts and the name of
    the function of their mean that gives the score (``reduce``, one of ``REDUCERS``): the bootstrap then
    resamples the rows, as it would resample sentences.
    """
    if reduce is not None and reduce not in REDUCERS:
        raise ValueError(f"Unknown reduce {reduce!r}; choose one of {sorted(REDUCERS)} or None (a mean of scores).")
    score = REDUCERS[reduce] if reduce else (lambda m: m)
    counts = reduce is not None
    if statistic not in STATISTICS and statistic not in STATISTICS_OF_FOUR:
        raise ValueError(f"Unknown statistic {statistic!r}; choose one of {sorted(STATISTICS) + sorted(STATISTICS_OF_FOUR)}.")
    a_m = _as_matrix(a, "a", counts)
    b_m = _as_matrix(b, "b", counts) if b is not None else np.ones_like(a_m)
    if statistic != "value" and b is None:
        raise ValueError(f"statistic={statistic!r} compares two methods: pass b.")
    mats = [a_m, b_m]
    if statistic in STATISTICS_OF_FOUR:
        if c is None or d is None:
            raise ValueError(f"statistic={statistic!r} compares four runs: pass c and d.")
        mats += [_as_matrix(c, "c", counts), _as_matrix(d, "d", counts)]
        four = STATISTICS_OF_FOUR[statistic]

        def fn(*means):
            return four(*means)
    else:
        two = STATISTICS[statistic]

        def fn(*means):
            return two(means[0], means[1])
    if len({m.shape for m in mats}) != 1:
        raise ValueError(f"the runs must have the same seeds and evaluation examples: shapes "
                         f"{[m.shape for m in mats]}. Pair the runs by seed and score them on the same evaluation set.")
    k, n = a_m.shape[:2]
    per_seed = fn(*(score(m.mean(axis=1)) for m in mats))  # (k,)
    estimate = float(fn(*(np.atleast_1d(score(m.mean(axis=(0, 1)))) for m in mats))[0])
    seed_half = t_quantile_95(k - 1) * float(np.std(per_seed, ddof=1)) / math.sqrt(k) if k > 1 else 0.0
    # Paired bootstrap over examples, on the seed-averaged scores: resample n examples with replacement,
    # the same ones for a and b.
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64) / n  # (R, n)
    boot = fn(*(score(weights @ m.mean(axis=0)) for m in mats))  # each (R,): the seed-averaged scores, resampled
    sample_half = Z_95 * float(np.nanstd(boot, ddof=1))
    half = math.hypot(seed_half, sample_half)
    return Interval(estimate, estimate - half, estimate + half, seed_half, sample_half, k, n)
