"""The protocol's knowledge-probe runs (chapter 7): P-tuning against hand-written prompts, on GPT.

    python -m experiments sweep probe --methods p_tuning --lrs 0.001 0.003 0.01   # seed 0, one run per rate
    python -m experiments run probe                                               # 3 seeds + seed 0 at 2x (resumes)

One prompt per relation (``solutions.p_tuning.p_tune_probe``), trained on the frozen GPT
backbone; a run's record holds, per split, which probes it answered correctly, in the
relations' fixed order, so that the verdicts' paired bootstrap can resample probes.  The
hand-written baseline (``handwritten``: per relation the prompt with the best zero-shot
validation accuracy) does not train: it is exact, like the sentiment chapter's L-BFGS probe.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from experiments import records

TASK = "probe"
BACKBONE = "gpt"
# method -> (encoder, anchors) for P-tuning; None: the best hand-written prompt, zero-shot
METHODS = {"handwritten": None, "p_tuning": ("LSTM", False), "p_tuning_none": ("NONE", False),
           "p_tuning_anchors": ("LSTM", True)}
LABELS = {"handwritten": "best hand-written prompt (zero-shot)", "p_tuning": "P-tuning, LSTM encoder",
          "p_tuning_none": "P-tuning, plain vectors", "p_tuning_anchors": "P-tuning, LSTM + anchor word"}
EXACT_NOTE = "does not train (zero-shot prompts): nothing to converge"
SECONDS_PER_EPOCH = 1.2  # one thread, all relations; for the time estimate only


@dataclass(frozen=True)
class RunSpec:
    method: str
    seed: int
    budget: int
    lr: float | None = None  # a sweep run's rate

    @property
    def epochs(self) -> int:
        return epochs_of(self.method) * self.budget

    def estimate_seconds(self) -> float:
        return 5.0 if not self.epochs else SECONDS_PER_EPOCH * self.epochs

    def __str__(self) -> str:
        if self.lr is not None:
            return f"{self.method} sweep, lr {self.lr:g}, {self.epochs} epochs"
        return f"{self.method} seed {self.seed}, {self.epochs} epochs" if self.epochs else f"{self.method} (zero-shot)"


def known_methods() -> dict:
    return dict(LABELS)


def epochs_of(method: str) -> int:
    if method not in METHODS:
        raise ValueError(f"Unknown probe method {method!r}; choose from {list(METHODS)}.")
    from solutions.p_tuning import PROBE_EPOCHS

    return 0 if METHODS[method] is None else PROBE_EPOCHS


def exact(method: str) -> bool:
    return epochs_of(method) == 0


def sweep_check(method: str, epochs: int, used, root=None):
    from experiments.sweeps import check_from_records, protocol_sweep_cells

    return check_from_records(method, epochs, used, protocol_sweep_cells(TASK, method, epochs, root))


def learning_rate(method: str, root=None):
    """The rate of the method's sweep at its final budget; ValueError naming the command when there is none."""
    epochs = epochs_of(method)
    if not epochs:
        return None
    from experiments import tasks

    return tasks.swept_rate(TASK, method, sweep_check(method, epochs, None, root))


def runnable(methods) -> tuple[list[str], list[str]]:
    from experiments import tasks

    return tasks.runnable(learning_rate, methods)


def claimed_methods() -> tuple[str, ...]:
    from experiments import tasks

    return tasks.claimed_methods(TASK)


def plan(methods=None, seeds=(0, 1, 2), doubled: bool = True) -> list[RunSpec]:
    methods = runnable(claimed_methods())[0] if methods is None else tuple(methods)
    # A zero-shot prompt gives every seed the same record; it is written for each seed all the same, so that every
    # claim pairs seed with seed.
    specs = [RunSpec(m, s, 1) for s in seeds for m in methods]
    if doubled:
        specs += [RunSpec(m, 0, 2) for m in methods if not exact(m)]
    return specs


def sweep_plan(methods, lrs) -> list[RunSpec]:
    for m in methods:
        if exact(m):
            raise ValueError(f"{m} does not train (a zero-shot prompt): nothing to sweep.")
    return [RunSpec(m, 0, 1, lr=float(lr)) for m in methods for lr in lrs]


def _score_relations(models_and_loaders) -> dict:
    """One split's record over all relations, in order: accuracy, mean loss, the correct string."""
    from experiments.sentiment import score

    parts = [score(model, loader) for model, loader in models_and_loaders]
    correct = "".join(p["correct"] for p in parts)
    n = [len(p["correct"]) for p in parts]
    loss = sum(p["loss"] * k for p, k in zip(parts, n)) / sum(n)
    import hashlib

    fingerprint = hashlib.sha256("".join(p["examples"] for p in parts).encode()).hexdigest()[:16]
    return {"accuracy": correct.count("1") / len(correct), "loss": round(loss, 5), "correct": correct,
            "examples": fingerprint}


def run(spec: RunSpec, progress: bool = True) -> dict:
    """Train (or, for the hand-written prompt, just evaluate) one run; its record, not yet saved."""
    from minitransformer import recipes
    from minitransformer.training import PLATEAU_MARGIN
    from minitransformer.world import load_task
    from solutions.p_tuning import (DISCRETE_PROMPTS, PromptEncoderConfig, PTuningModel, discrete_template,
                                    p_tune_probe, probe_loader, probe_splits)

    task = load_task("probing")
    lr = spec.lr if spec.lr is not None or exact(spec.method) else learning_rate(spec.method)
    backbone, tokenizer = recipes.fresh_backbone(BACKBONE, spec.seed)
    relations = list(DISCRETE_PROMPTS)
    splits = {r: probe_splits(task, r) for r in relations}

    def loaders(r, i):
        (examples, candidates) = splits[r][0][i], splits[r][1]
        return probe_loader(examples, tokenizer, candidates, batch_size=64)

    extra = {}
    if exact(spec.method):
        models, chosen = {}, {}
        for r in relations:
            best = None
            for prompt in DISCRETE_PROMPTS[r]:
                config = PromptEncoderConfig(num_virtual_tokens=0, encoder_reparameterization_type="NONE",
                                             template=discrete_template(prompt, backbone.config.mode))
                model = PTuningModel(backbone, tokenizer, config, splits[r][1])
                val = _score_relations([(model, loaders(r, 1))])["accuracy"]
                if best is None or val > best[0]:
                    best = (val, prompt, model)
            chosen[r], models[r] = best[1], best[2]
        extra = {"prompts": chosen, "curve": [], "train_accuracy": None, "majority": None, "on_plateau": False,
                 "trainable": 0, "seconds": 0.0}
    else:
        kind, anchors = METHODS[spec.method]
        result = p_tune_probe(backbone, tokenizer, task, kind=kind, anchors=anchors, lr=lr, epochs=spec.epochs,
                              seed=spec.seed, progress=progress)
        models = result["models"]
        extra = {"curve": [round(c, 4) for c in result["curve"]],
                 "train_accuracy": round(result["train_accuracy"], 4), "majority": round(result["majority"], 4),
                 "on_plateau": result["train_accuracy"] < result["majority"] + PLATEAU_MARGIN,
                 "trainable": sum(p.numel() for m in models.values() for p in m.parameters() if p.requires_grad),
                 "seconds": round(result["seconds"], 1)}
    return {
        "schema": records.SCHEMA, "task": TASK, "method": spec.method, "label": LABELS[spec.method],
        "seed": spec.seed, "sweep": spec.lr is not None, "backbone": BACKBONE, "epochs": spec.epochs,
        "budget": spec.budget, "lr": lr, "schedule": recipes.SCHEDULE, "warmup_ratio": recipes.WARMUP_RATIO,
        "validation": _score_relations([(models[r], loaders(r, 1)) for r in relations]),
        "test": _score_relations([(models[r], loaders(r, 2)) for r in relations]),
        **extra, "total": sum(p.numel() for p in backbone.parameters()),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(), "cpu": records.cpu_id(),
    }
