"""The training loop every chapter shares: seeding, devices, freezing, the schedule, train(), and run records.

Its neighbours, each named for its job: `data` (loaders), `evaluation` (accuracy, entity F1), `measure`
(memory, FLOPs, latency, bytes) and `linear_probe` (the frozen baseline, fit by L-BFGS)."""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm as _tqdm

from .evaluation import evaluate_accuracy
from .measure import format_bytes, training_state_memory

# ----------------------------------------------------------------------------- progress

# Most redraws one bar makes, and the least time between two. Why a bound: a notebook bar
# (tqdm.auto in Jupyter) sends 2-3 messages per redraw, nbval reads a cell's messages only
# after the cell ends, and ZeroMQ silently drops what exceeds its high-water mark (1,000 per
# socket). A bar redrawn every 0.1 s over a 3-minute training cell drops the kernel's
# "idle" message, and nbval fails with "Timeout of 5 seconds exceeded waiting for output".
MAX_REDRAWS = 100
MIN_REDRAW_SECONDS = 1.0


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[int] = None, **kwargs):
    """A tqdm.auto bar that redraws at most MAX_REDRAWS times and at most once per MIN_REDRAW_SECONDS.

    Every progress bar of the project comes from here. tqdm redraws only when both hold: at least
    `miniters` updates and at least `mininterval` seconds since the last redraw.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    kwargs.setdefault("mininterval", MIN_REDRAW_SECONDS)
    if total:
        kwargs.setdefault("miniters", max(1, math.ceil(total / MAX_REDRAWS)))
    return _tqdm(iterable, total=total, **kwargs)


# ----------------------------------------------------------------------------- setup


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that a rerun gives the same numbers on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(prefer: Optional[str] = None) -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU. `prefer` (or $PEFT_DEVICE) overrides."""
    prefer = prefer or os.environ.get("PEFT_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter of `module` (in place) and return it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the probability of every nn.Dropout in `model` to `p` (in place); returns how many there are.

    Call it before adding a method's own layers (LoRA's `lora_dropout` is a separate setting).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}.")
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for layer in layers:
        layer.p = p
    return len(layers)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts. Tied weights are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


# ----------------------------------------------------------------------------- training


SCHEDULES = ("linear", "cosine", "constant")


def lr_factor(step: int, total: int, warmup_steps: int, schedule: str = "linear") -> float:
    """The learning-rate multiplier at `step`: linear warmup over `warmup_steps`, then decay to 0.

    The schedule of BERT fine-tuning (Hugging Face's `get_linear_schedule_with_warmup`), or its
    cosine variant. "constant" keeps the warmup and then holds the peak.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; choose one of {SCHEDULES}.")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)  # 0 -> 1 after warmup
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per optimizer step
    learning_rates: list[float] = field(default_factory=list)  # the peak-group lr used at each step
    curve: list[float] = field(default_factory=list)  # the `eval_fn` score after each epoch, if given
    train_accuracy: Optional[float] = None  # running accuracy over the last epoch (dropout on), if measurable
    seconds: float = 0.0
    optimizer: Optional[torch.optim.Optimizer] = None

    @property
    def steps(self) -> int:
        return len(self.losses)


def _running_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> Optional[tuple[int, int]]:
    """(correct, counted) for class logits (B, C) or (B, T, C) against labels; None if shapes do not fit."""
    if logits is None or logits.shape[:-1] != labels.shape:
        return None
    keep = labels != -100
    return int((logits.argmax(-1)[keep] == labels[keep]).sum()), int(keep.sum())


def train(model: nn.Module, loader: DataLoader, *, epochs: int = 1, lr: float = 1e-3, weight_decay: float = 0.0,
          warmup_ratio: float = 0.1, schedule: str = "linear", lr_overrides: Optional[dict[str, float]] = None,
          max_steps: Optional[int] = None, eval_fn: Optional[Callable[[nn.Module], float]] = None, desc: str = "train",
          progress: bool = True, device: Optional[torch.device] = None) -> TrainResult:
    """AdamW on the parameters that require grad, with linear warmup then decay (see `lr_factor`).

    `lr_overrides` maps a parameter-name prefix to its own peak learning rate (e.g. {"head.": 1e-3});
    every other parameter uses `lr`. The model's `forward(**batch)` must return `.loss` (and
    `.logits`, for the running train accuracy). `eval_fn(model)`, if given, is called after every
    epoch; its scores form `result.curve`.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("No parameter requires grad: nothing to train. Did you freeze the whole model?")
    groups = {lr: []}
    for name, p in named:
        group_lr = next((v for prefix, v in (lr_overrides or {}).items() if name.startswith(prefix)), lr)
        groups.setdefault(group_lr, []).append(p)
    params = [{"params": ps, "lr": group_lr} for group_lr, ps in groups.items() if ps]
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}; 0.06 to 0.1 is usual.")
    device = device or next(model.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)  # the groups' own lr win
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    warmup_steps = max(1, round(warmup_ratio * total)) if warmup_ratio > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup_steps, schedule))
    result = TrainResult(optimizer=optimizer)
    start = time.perf_counter()
    model.train()
    with progress_bar(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            correct = counted = 0
            for batch in loader:
                if result.steps >= total:
                    break
                batch = {k: v.to(device) for k, v in batch.items()}
                output = model(**batch)
                optimizer.zero_grad(set_to_none=True)
                output.loss.backward()
                result.learning_rates.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
                result.losses.append(output.loss.item())
                hits = _running_accuracy(getattr(output, "logits", None), batch.get("labels"))
                if hits is not None:
                    correct, counted = correct + hits[0], counted + hits[1]
                # refresh=False: the bar redraws at most every `mininterval`, not on every step
                # (a redraw per step floods a notebook's kernel with messages).
                bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
                bar.update(1)
            if counted:
                result.train_accuracy = correct / counted
            if eval_fn is not None:
                result.curve.append(eval_fn(model))
                model.train()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- experiments


class PlateauWarning(UserWarning):
    """A run ended with training accuracy at the majority-class share: it never learned the task."""


def majority_share(loader: DataLoader) -> float:
    """The share of the most frequent label (token labels of -100 ignored): the one-class plateau."""
    counts: dict[int, int] = {}
    for batch in loader:
        labels = batch["labels"]
        for label, n in zip(*torch.unique(labels[labels != -100], return_counts=True)):
            counts[int(label)] = counts.get(int(label), 0) + int(n)
    return max(counts.values()) / sum(counts.values())


# A run counts as trained when its last-epoch training accuracy beats the majority share by this much.
PLATEAU_MARGIN = 0.05
# A validation curve counts as flattened when its last 3 epochs gain less than this over the 3 before them.
RISING_MARGIN = 0.01


def still_rising(curve: Sequence[float], window: int = 3) -> bool:
    """True if the validation curve has not flattened: the mean of its last `window` scores beats the mean
    of the `window` before them by more than RISING_MARGIN (one point of accuracy). A score claim judged on
    such a run says "not reached within the budget", not "not reproduced"."""
    if len(curve) < 2 * window:
        raise ValueError(f"need at least {2 * window} per-epoch scores to judge the curve, got {len(curve)}")
    last, before = curve[-window:], curve[-2 * window:-window]
    return sum(last) / window - sum(before) / window > RISING_MARGIN


@dataclass
class Experiment:
    """One training run, summarised for the comparison tables and plots of every chapter."""

    name: str
    score: float
    trainable: int
    total: int
    losses: list[float]
    seconds: float
    memory: dict[str, int]
    model: Optional[nn.Module] = field(default=None, repr=False)  # the trained model, for further evaluation
    curve: list[float] = field(default_factory=list)  # validation score after each epoch
    train_accuracy: Optional[float] = None  # running accuracy over the last epoch
    majority: Optional[float] = None  # majority-class share of the training labels

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total

    @property
    def on_plateau(self) -> bool:
        """True if training never left the one-class plateau (see PLATEAU_MARGIN)."""
        if self.train_accuracy is None or self.majority is None:
            return False
        return self.train_accuracy < self.majority + PLATEAU_MARGIN

    def row(self) -> str:
        flag = "   ON THE ONE-CLASS PLATEAU" if self.on_plateau else ""
        return (f"{self.name:<24} score {self.score:6.3f}   trainable {self.trainable:>9,} ({100 * self.trainable_share:6.3f}%)"
                f"   train-state memory {format_bytes(self.memory['total']):>9}   {self.seconds:5.1f} s{flag}")


def fit_and_evaluate(name: str, model: nn.Module, train_loader: DataLoader, eval_loader: DataLoader, *,
                     epochs: int = 1, lr: float = 1e-3, metric: Callable = None, track_curve: bool = False,
                     progress: bool = True, **train_kwargs) -> Experiment:
    """Train the parameters that require grad, then score on `eval_loader` (accuracy by default).

    `track_curve=True` also scores `eval_loader` after every epoch (`Experiment.curve`). A run whose
    training accuracy stays at the majority share gets a PlateauWarning: its score says nothing
    about the method, only that it did not train.
    """
    import warnings

    metric = metric or evaluate_accuracy
    trainable, total = count_parameters(model)
    eval_fn = (lambda m: metric(m, eval_loader)) if track_curve else None
    result = train(model, train_loader, epochs=epochs, lr=lr, desc=name, progress=progress, eval_fn=eval_fn,
                   **train_kwargs)
    memory = training_state_memory(model, result.optimizer)
    score = result.curve[-1] if track_curve else metric(model, eval_loader)
    experiment = Experiment(name, score, trainable, total, result.losses, result.seconds, memory, model,
                            result.curve, result.train_accuracy, majority_share(train_loader))
    if experiment.on_plateau:
        warnings.warn(f"{name}: training accuracy {experiment.train_accuracy:.3f} is at the majority-class share "
                      f"{experiment.majority:.3f}: the run never left the one-class plateau. Its score says nothing "
                      f"about the method; raise the learning rate or train longer.", PlateauWarning, stacklevel=2)
    return experiment


def print_experiments(experiments: Sequence[Experiment]) -> None:
    for e in experiments:
        print(e.row())
