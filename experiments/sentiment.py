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
SECONDS_PER_EPOCH = {"full": 6.0, "lora": 5.2, "bitfit": 4.6, "adapters": 4.8, "prompt_tuning": 6.3}
FROZEN_SECONDS = 5.0


@dataclass(frozen=True)
class RunSpec:
    """One protocol run to make."""

    method: str
    seed: int
    budget: int  # multiple of the method's standard epochs
    lr: float | None = None  # set for a sweep run (seed 0 at this rate); None: the sweep's chosen rate

    @property
    def epochs(self) -> int:
        return epochs_of(self.method) * self.budget

    def estimate_seconds(self) -> float:
        from experiments.methods import ALL_METHODS

        family = ALL_METHODS[self.method].lr_key
        return FROZEN_SECONDS if not self.epochs else SECONDS_PER_EPOCH[family] * self.epochs

    def __str__(self) -> str:
        if self.lr is not None:
            return f"{self.method} sweep, lr {self.lr:g}, {self.epochs} epochs"
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


def known_methods() -> dict:
    from experiments.methods import ALL_METHODS

    return ALL_METHODS


def exact(method: str) -> bool:
    """The frozen probe is fit to convergence by L-BFGS: no doubled run, no learning rate."""
    return epochs_of(method) == 0


def sweep_check(method: str, epochs: int, used):
    from experiments.sweeps import sentiment_sweep_check

    return sentiment_sweep_check(method, epochs, used)


def claimed_methods() -> tuple[str, ...]:
    """Every method a registered sentiment claim reads, main methods first."""
    from experiments import tasks

    return tasks.claimed_methods(TASK, MAIN_METHODS)


def learning_rate(method: str):
    """The rate a method's protocol runs use: its own sweep's best at its final budget (None: the L-BFGS probe).

    Raises ValueError, naming the command, when that sweep is missing or its best rate is at the grid's edge:
    a run at a rate borrowed from another budget or method could not give a verdict.
    """
    from experiments import tasks
    from experiments.methods import ALL_METHODS
    from experiments.sweeps import sentiment_sweep_check
    from minitransformer import recipes

    epochs = epochs_of(method)
    if not epochs:
        return None
    family = ALL_METHODS[method].lr_key  # a main method's rate must also be the recipe's; a variant's is its own
    check = sentiment_sweep_check(method, epochs, recipes.LEARNING_RATES.get(family) if family == method else None)
    return tasks.swept_rate(TASK, method, check)


def runnable(methods) -> tuple[list[str], list[str]]:
    """(methods whose learning rate a sweep at their budget has chosen, why each other one cannot run yet)."""
    from experiments import tasks

    return tasks.runnable(learning_rate, methods)


def plan(methods=None, seeds=(0, 1, 2), doubled: bool = True) -> list[RunSpec]:
    """Every run the sentiment verdicts read: each method at 1x for every seed, then seed 0 at 2x
    (default methods: every one a registered claim reads whose learning rate is swept at its budget)."""
    methods = runnable(claimed_methods())[0] if methods is None else tuple(methods)
    specs = [RunSpec(m, s, 1) for s in seeds for m in methods]
    if doubled:
        specs += [RunSpec(m, 0, 2) for m in methods if epochs_of(m)]
    return specs


def sweep_plan(methods, lrs) -> list[RunSpec]:
    """A learning-rate sweep at each method's final budget: seed 0, one run per rate."""
    for m in methods:
        if not epochs_of(m):
            raise ValueError(f"{m} is fit exactly (no learning rate): nothing to sweep.")
    return [RunSpec(m, 0, 1, lr=float(lr)) for m in methods for lr in lrs]


def texts_of(split: str) -> str:
    """The text fingerprint of a sentiment evaluation split (:func:`experiments.records.text_fingerprint`)."""
    from minitransformer.world import load_task

    return records.text_fingerprint(getattr(load_task("sentiment"), split))


def protocol_experiments(method: str, seeds=(0, 1, 2), root=None) -> dict:
    """The protocol's recorded runs of `method` at its final budget, by seed, as Experiments (no model): for a
    lesson's tables and plots. Each ran at the method's own swept rate (the record's `lr`)."""
    from minitransformer.training import Experiment

    from experiments.methods import ALL_METHODS
    from minitransformer import recipes

    epochs = epochs_of(method)  # a ValueError that lists the methods, for an unknown one
    spec = ALL_METHODS[method]
    model = spec.prepare(recipes.fresh_classifier(spec.backbone)) if spec.prepare else None
    tensors = sum(1 for p in model.parameters() if p.requires_grad) if model is not None else 0
    found = {}
    for seed, r in records.load_runs(TASK, method, epochs, seeds, root).items():
        # The training state of float32 AdamW, as measure.training_state_memory counts it on the real tensors: every
        # parameter, a gradient and two moments for each trainable number, and Adam's step count (one 4-byte
        # tensor) for each trainable tensor.
        memory = {"parameters": 4 * r["total"], "gradients": 4 * r["trainable"],
                  "optimizer_state": 8 * r["trainable"] + 4 * tensors}
        memory["total"] = sum(memory.values())
        found[seed] = Experiment(r["label"], r["validation"]["accuracy"], r["trainable"], r["total"], [], r["seconds"],
                                 memory, None, r["curve"], r["train_accuracy"], r["majority"])
    if not found:
        raise KeyError(f"no protocol run of {method!r} on file: run `python -m experiments run sentiment --methods "
                       f"{method}` (after its sweep, `python -m experiments sweep sentiment --methods {method} ...`)")
    return found


def add_texts(record: dict) -> bool:
    """Give a sentiment record made before ``texts`` existed its text fingerprints; True if it changed."""
    changed = False
    for split in ("validation", "test"):
        if split in record and "texts" not in record[split]:
            record[split]["texts"] = texts_of(split)
            changed = True
    return changed


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


def run(spec: RunSpec, progress: bool = True, reuse_sweep: bool = True) -> dict:
    """Train and score one run; returns its record (not yet saved).

    Seed 0 at the chosen rate is a run the sweep already made (runs are deterministic): with ``reuse_sweep`` its
    sweep record is copied instead of training again, and a sweep run at the rate of a recorded seed-0 run copies
    that run."""
    from minitransformer import recipes
    from experiments.methods import ALL_METHODS

    method = ALL_METHODS[spec.method]
    lr = spec.lr if spec.lr is not None or method.prepare is None else learning_rate(spec.method)
    if reuse_sweep and method.prepare is not None:
        reused = records.reused_run(TASK, spec, lr)
        if reused is not None:
            return reused
    setup = recipes.sentiment_setup(seed=spec.seed, backbone=method.backbone, template=method.template)
    if method.prepare is None:
        experiment = recipes.frozen_probe(setup, seed=spec.seed)
    else:
        model = method.prepare(recipes.fresh_classifier(method.backbone, seed=spec.seed))
        experiment = recipes.train_standard(method.label, model, setup, method.lr_key, lr=lr, epochs=spec.epochs,
                                            track_curve=True, progress=progress)
    return {
        "schema": records.SCHEMA, "task": TASK, "method": spec.method, "label": method.label, "seed": spec.seed,
        "sweep": spec.lr is not None, "backbone": method.backbone, "template": method.template,
        "epochs": spec.epochs, "budget": spec.budget, "lr": lr, "schedule": recipes.SCHEDULE,
        "warmup_ratio": recipes.WARMUP_RATIO, "batch_size": recipes.BATCH_SIZE, "n_train": recipes.N_TRAIN,
        "validation": {**score(experiment.model, setup.val_loader), "texts": texts_of("validation")},
        "test": {**score(experiment.model, setup.test_loader), "texts": texts_of("test")},
        "curve": [round(s, 4) for s in experiment.curve],
        "train_accuracy": None if experiment.train_accuracy is None else round(experiment.train_accuracy, 4),
        "majority": round(experiment.majority, 4), "on_plateau": experiment.on_plateau,
        "trainable": experiment.trainable, "total": experiment.total, "seconds": round(experiment.seconds, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(), "cpu": records.cpu_id(),
        "_weights": {n: p.detach().cpu().clone() for n, p in experiment.model.named_parameters() if p.requires_grad}
        if experiment.trainable <= records.WEIGHTS_LIMIT else None,
    }
