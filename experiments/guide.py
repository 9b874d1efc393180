"""Chapter 10's guide: decisions of the form "choose X when Y", each citing the numbers that decide it.

Every decision is computed over every row of the comparison table (`experiments.comparison.load_results()["rows"]`),
so a method added to the table takes part in every decision without an edit here. What the guide needs to know about a
method that the numbers cannot say is declared once, as a property of the method:

- ``SAME_COMPUTE``: the methods whose deployed model computes exactly the base model's function with other numbers
  (full fine-tuning, the frozen probe and BitFit change values, not operations; merged LoRA folds its update into W0).
  Their latency ratios should be 1.00: how far they land from it is the timing noise (:func:`noise_band`).
- ``TASK_AS_DATA``: the methods that leave every backbone weight untouched and bring the task in as data (a head, or
  prompts and prefixes), so that one batch can serve several tasks on one copy of the model.

Two rows are **within noise** when their means differ by at most two standard errors of the difference,
``2 * sqrt(sd_a**2 / n_a + sd_b**2 / n_b)`` over the seeds on file. That is a screening rule for a guide, not a verdict:
verdicts are the claims registry's (`experiments.claims`), with their own intervals.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

SAME_COMPUTE = ("full", "frozen", "bitfit", "lora_merged")
TASK_AS_DATA = ("frozen", "prompt_tuning", "p_tuning", "prefix_tuning", "p_tuning_v2")
DUPLICATES = ("lora_merged",)  # the same scores as another row (LoRA): kept for latency, left out of score decisions


def within_noise(a: dict, b: dict) -> bool:
    """Whether two rows' mean scores differ by at most two standard errors of the difference (sd over seeds)."""
    se = math.sqrt((a["sd"] or 0.0) ** 2 / max(a["n"], 1) + (b["sd"] or 0.0) ** 2 / max(b["n"], 1))
    return abs(a["mean"] - b["mean"]) <= 2 * se


def noise_band(rows: Iterable[dict]) -> tuple[float, float]:
    """The lowest and highest latency ratio (batch 1 and 32, every task) of the rows in ``SAME_COMPUTE``."""
    ratios = [r[f"latency_b{n}_vs_base"] for r in rows if r["method"] in SAME_COMPUTE for n in (1, 32)]
    if not ratios:
        raise ValueError("no row computes the base model's function (full, frozen, bitfit, lora_merged): the timing "
                         "noise cannot be estimated; run `python -m experiments.benchmark comparison` for every method")
    return min(ratios), max(ratios)


def _fmt(r: dict) -> str:
    return f"{r['label']} {r['mean']:.3f}"


def _numbers(n: int) -> str:
    return f"{n:,} numbers"


def unlearned_tasks(tasks: Iterable[str], root=None) -> dict[str, str]:
    """{task: why}, for each of ``tasks`` on which full fine-tuning, the reference every row is read against, shows no
    sign of having learned the task: the task module's own gate (``not_learned``, the one the verdicts apply, e.g.
    data-to-text's "above one fixed text"), read on full fine-tuning's protocol runs. Tasks without a gate pass."""
    from experiments import protocol, records
    from experiments.tasks import TASKS, task_module

    out = {}
    for task in tasks:
        module = task_module(task) if task in TASKS else None
        gate = getattr(module, "not_learned", None)
        if gate is None:
            continue
        runs = records.load_runs(task, "full", module.epochs_of("full"), protocol.SEEDS, root)
        if not runs:
            raise FileNotFoundError(f"No protocol run of full fine-tuning on {task}: run `python -m experiments run "
                                    f"{task} --methods full` (after its sweep) first.")
        reason = gate("full", runs)
        if reason:
            out[task] = reason
    return out


def decisions(rows: list[dict], unlearned: Optional[dict[str, str]] = None) -> list[str]:
    """The guide, one markdown sentence per decision, over every row of ``rows``.

    ``unlearned``: {task: why} for the tasks full fine-tuning has not learned (:func:`unlearned_tasks`). A task no
    method has learned proves nothing about any method: its rows decide nothing, and the guide says why instead.
    """
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    scored = [r for r in rows if r["method"] not in DUPLICATES]
    unlearned = dict(unlearned or {})
    lo, hi = noise_band(rows)
    out = []

    def per_task(make) -> list[str]:
        parts = []
        for task in tasks:
            if task in unlearned:
                continue
            cells = [r for r in scored if r["task"] == task]
            if cells:
                text = make(task, cells)
                if text:
                    parts.append(f"{task}: {text}")
        return parts

    # 1. Only the score matters: the best row, and every row within noise of it.
    def best_score(task, cells):
        best = max(cells, key=lambda r: r["mean"])
        tied = [r for r in cells if r is not best and within_noise(r, best)]
        return _fmt(best) + (f" (within noise: {', '.join(_fmt(r) for r in tied)})" if tied else "")

    out.append("**Choose for the score alone** the best row of the task; the rows within noise of it are as good. "
               + "; ".join(per_task(best_score)) + ".")

    # 2. Many tasks on one model: among the rows within noise of the best, the one that stores the fewest numbers.
    def cheapest_near_best(task, cells):
        best = max(cells, key=lambda r: r["mean"])
        near = [r for r in cells if r is best or within_noise(r, best)]
        pick = min(near, key=lambda r: (r["stored_parameters"], -r["mean"]))
        full = next((r for r in cells if r["method"] == "full"), None)
        if full is not None and pick is full:
            return f"{_fmt(pick)}, a full copy of {_numbers(pick['stored_parameters'])}: no cheaper row is within noise"
        against = f", against {_numbers(full['stored_parameters'])} for a full copy" if full is not None else ""
        return f"{_fmt(pick)}, storing {_numbers(pick['stored_parameters'])}{against}"

    out.append("**Choose when every task must be cheap to store** (many tasks, one served model) the row that stores "
               "the fewest numbers among those within noise of the task's best: " + "; ".join(per_task(cheapest_near_best))
               + ".")

    # 3. Latency must not grow: rows inside the noise band at both batch sizes; every row above it, with its ratios.
    def no_extra_latency(task, cells):
        latency_rows = [r for r in rows if r["task"] == task]
        free = [r for r in latency_rows if r["latency_b1_vs_base"] <= hi and r["latency_b32_vs_base"] <= hi]
        if not free:
            return "no row serves within the noise band"
        return _fmt(max(free, key=lambda r: r["mean"]))

    above = []
    for task in tasks:
        slow = [f"{r['label']} x{r['latency_b1_vs_base']:.2f}/x{r['latency_b32_vs_base']:.2f}" for r in rows
                if r["task"] == task and (r["latency_b1_vs_base"] > hi or r["latency_b32_vs_base"] > hi)]
        if slow:
            above.append(f"{task}: {', '.join(slow)}")
    out.append(f"**Choose when latency must not grow** the best row whose forward time stays inside the noise band at "
               f"batch 1 and 32 (x{lo:.2f} to x{hi:.2f} the base model's, the spread of the rows that compute the base "
               f"model's own function): " + "; ".join(per_task(no_extra_latency)) + ". Above the band (batch 1/batch "
               "32), a real cost: " + ("; ".join(above) if above else "none") + ".")

    # 4. Training memory is the limit: among the rows within noise of the best, the least state + activations.
    def least_memory(task, cells):
        best = max(cells, key=lambda r: r["mean"])
        near = [r for r in cells if r is best or within_noise(r, best)]
        pick = min(near, key=lambda r: r["memory"]["total"] + r["activation_bytes"])
        full = next((r for r in cells if r["method"] == "full"), None)
        total = pick["memory"]["total"] + pick["activation_bytes"]
        ratio = (f" ({total / (full['memory']['total'] + full['activation_bytes']):.2f} of full fine-tuning's)"
                 if full and pick is not full else "")
        return f"{_fmt(pick)}, {total / 2**20:.1f} MiB of training state and activations at batch 32{ratio}"

    out.append("**Choose when training memory is the limit** the row with the least training state plus activations "
               "among those within noise of the task's best: " + "; ".join(per_task(least_memory)) + ".")

    # 5. One batch must mix tasks: only the rows that bring the task in as data; how far their best is from the best.
    def mixed_batches(task, cells):
        mixable = [r for r in cells if r["method"] in TASK_AS_DATA]
        if not mixable:
            return None
        pick = max(mixable, key=lambda r: r["mean"])
        best = max(cells, key=lambda r: r["mean"])
        if pick is best or within_noise(pick, best):
            return f"{_fmt(pick)}, within noise of the task's best"
        return f"{_fmt(pick)}, below the task's best ({_fmt(best)}) by more than the noise"

    out.append("**Choose when one batch must mix tasks** on one copy of the model a method that leaves every backbone "
               "weight untouched and brings the task in as data (a head, prompts or prefixes): "
               + "; ".join(per_task(mixed_batches)) + ".")
    out.extend(f"**{task} decides nothing yet:** no method has learned it ({reason}), so its rows decide nothing "
               f"here." for task, reason in unlearned.items())
    return out
