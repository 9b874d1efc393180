"""The protocol's sentiment runs (chapters 2-5): every main method, 3 seeds, and seed 0 at twice its budget.

    python -m experiments run sentiment                 # what is missing, 2 runs at a time (resumes)
    python -m experiments run sentiment --dry-run       # list what would run, with a time estimate

Each run trains with the standard recipe (:mod:`minitransformer.recipes`) and records, besides
its scores, which validation and test reviews it got right (:mod:`experiments.records`): the
verdicts' paired bootstrap needs them.  The methods and their configurations are the
registry (``experiments.methods.METHODS``): one registry, not a copy.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from experiments import records

TASK = "sentiment"
MAIN_METHODS = ("full", "frozen", "lora", "bitfit", "adapters")
# Seconds per epoch on one thread of the 2-core reference machine (AMD EPYC), two runs at a time, measured by
# this runner's first runs; for the time estimate only.
SECONDS_PER_EPOCH = {"full": 6.0, "lora": 5.2, "bitfit": 4.6, "adapters": 4.8}
FROZEN_SECONDS = 5.0


@dataclass(frozen=True)
class RunSpec:
    """One protocol run to make."""

    method: str
    seed: int
    budget: int  # multiple of the method's standard epochs

    @property
    def epochs(self) -> int:
        return epochs_of(self.method) * self.budget

    def estimate_seconds(self) -> float:
        from experiments.methods import ALL_METHODS

        family = ALL_METHODS[self.method].lr_key
        return FROZEN_SECONDS if not self.epochs else SECONDS_PER_EPOCH[family] * self.epochs

    def __str__(self) -> str:
        return f"{self.method} seed {self.seed}, {self.epochs} epochs" if self.epochs else \
            f"{self.method} seed {self.seed} (L-BFGS probe)"


def epochs_of(method: str) -> int:
    """The method's final budget in epochs: its family's (an ablation trains as long as its method); 0 for the
    frozen probe, fit by L-BFGS."""
    from experiments.methods import ALL_METHODS
    from minitransformer import recipes

    if method not in ALL_METHODS:
        raise ValueError(f"Unknown sentiment method {method!r}; choose from {list(ALL_METHODS)}.")
    spec = ALL_METHODS[method]
    return 0 if spec.prepare is None else recipes.epochs_for(spec.lr_key)


def claimed_methods() -> tuple[str, ...]:
    """Every method a registered sentiment claim reads, main methods first."""
    from experiments.claims import CLAIMS

    found = list(MAIN_METHODS)
    for c in CLAIMS:
        for m in (c.method, c.reference):
            if c.task == TASK and m and m not in found:
                found.append(m)
    return tuple(found)


def learning_rate(method: str):
    """The rate a method's protocol runs use: its own sweep's best at its final budget (None: the L-BFGS probe).

    Raises ValueError, naming the command, when that sweep is missing or its best rate is at the grid's edge:
    a run at a rate borrowed from another budget or method could not give a verdict.
    """
    from experiments.methods import ALL_METHODS
    from experiments.sweeps import sentiment_sweep_check
    from minitransformer import recipes

    epochs = epochs_of(method)
    if not epochs:
        return None
    family = ALL_METHODS[method].lr_key  # a main method's rate must also be the recipe's; a variant's is its own
    check = sentiment_sweep_check(method, epochs, recipes.LEARNING_RATES.get(family) if family == method else None)
    if not check.grid:
        raise ValueError(f"{check.text()}: sweep it first, `python -m experiments.benchmark sweep --methods {method}`")
    if not check.inside:
        step = check.grid[1] / check.grid[0] if len(check.grid) > 1 else 10 ** 0.5
        beyond = check.best / step if check.best == check.grid[0] else check.best * step
        raise ValueError(f"{check.text()}: widen its grid, `python -m experiments.benchmark sweep --methods {method} "
                         f"--lrs {beyond:.1g}`")
    return check.best


def runnable(methods) -> tuple[list[str], list[str]]:
    """(methods whose learning rate a sweep at their budget has chosen, why each other one cannot run yet)."""
    ready, waiting = [], []
    for m in methods:
        try:
            learning_rate(m)
            ready.append(m)
        except ValueError as exc:
            waiting.append(str(exc))
    return ready, waiting


def plan(methods=None, seeds=(0, 1, 2), doubled: bool = True) -> list[RunSpec]:
    """Every run the sentiment verdicts read: each method at 1x for every seed, then seed 0 at 2x
    (default methods: every one a registered claim reads whose learning rate is swept at its budget)."""
    methods = runnable(claimed_methods())[0] if methods is None else tuple(methods)
    specs = [RunSpec(m, s, 1) for s in seeds for m in methods]
    if doubled:
        specs += [RunSpec(m, 0, 2) for m in methods if epochs_of(m)]
    return specs


def fingerprint(loader) -> str:
    """sha256 of an evaluation set's token ids and labels, in order."""
    digest = hashlib.sha256()
    for batch in loader:
        digest.update(batch["input_ids"].numpy().tobytes())
        digest.update(batch["labels"].numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def score(model, loader) -> dict:
    """Accuracy, mean cross-entropy and the per-example correct string of ``model`` on ``loader``."""
    model.eval()
    correct, losses = [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits
        correct += (logits.argmax(-1) == labels).tolist()
        losses += F.cross_entropy(logits, labels, reduction="none").tolist()
    return {"accuracy": sum(correct) / len(correct), "loss": round(sum(losses) / len(losses), 5),
            "correct": "".join("1" if c else "0" for c in correct), "examples": fingerprint(loader)}


def run(spec: RunSpec, progress: bool = True) -> dict:
    """Train and score one run; returns its record (not yet saved)."""
    from minitransformer import recipes
    from experiments.methods import ALL_METHODS

    method = ALL_METHODS[spec.method]
    setup = recipes.sentiment_setup(seed=spec.seed, backbone=method.backbone)
    if method.prepare is None:
        experiment, lr = recipes.frozen_probe(setup, seed=spec.seed), None
    else:
        model = method.prepare(recipes.fresh_classifier(method.backbone, seed=spec.seed))
        lr = learning_rate(spec.method)
        experiment = recipes.train_standard(method.label, model, setup, method.lr_key, lr=lr, epochs=spec.epochs,
                                            track_curve=True, progress=progress)
    return {
        "schema": records.SCHEMA, "task": TASK, "method": spec.method, "label": method.label, "seed": spec.seed,
        "epochs": spec.epochs, "budget": spec.budget, "lr": lr, "schedule": recipes.SCHEDULE,
        "warmup_ratio": recipes.WARMUP_RATIO, "batch_size": recipes.BATCH_SIZE, "n_train": recipes.N_TRAIN,
        "validation": score(experiment.model, setup.val_loader), "test": score(experiment.model, setup.test_loader),
        "curve": [round(s, 4) for s in experiment.curve],
        "train_accuracy": None if experiment.train_accuracy is None else round(experiment.train_accuracy, 4),
        "majority": round(experiment.majority, 4), "on_plateau": experiment.on_plateau,
        "trainable": experiment.trainable, "total": experiment.total, "seconds": round(experiment.seconds, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
    }
