"""Utilities every chapter shares: seeding, devices, freezing, batching, a train loop, and measurements."""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm as _tqdm

from .tokenizer import PAD, encode, encode_words_with_labels

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


# ----------------------------------------------------------------------------- batching


def _collate(pad_id: int) -> Callable:
    def collate(items: Sequence[tuple[list[int], object]]) -> dict[str, torch.Tensor]:
        longest = max(len(ids) for ids, _ in items)
        input_ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        token_level = isinstance(items[0][1], list)
        labels = torch.full((len(items), longest), -100, dtype=torch.long) if token_level else torch.empty(len(items), dtype=torch.long)
        for row, (ids, label) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            if token_level:
                labels[row, : len(label)] = torch.tensor(label)
            else:
                labels[row] = label
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    return collate


class SeededLoader(DataLoader):
    """A DataLoader whose shuffle order depends only on (seed, epoch).

    A plain DataLoader keeps drawing from one generator, so the second training run in a
    notebook would see a different order than the first. `train` calls `set_epoch`.
    """

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, generator=torch.Generator().manual_seed(seed), **kwargs)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100_003 + epoch)


def make_loader(items: list, tokenizer, batch_size: int = 32, shuffle: bool = False, seed: int = 0) -> SeededLoader:
    """A DataLoader over (ids, label) pairs that right-pads each batch. Shuffling is seeded per epoch."""
    return SeededLoader(items, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        collate_fn=_collate(tokenizer.token_to_id(PAD)))


def classification_loader(examples: Iterable[dict], tokenizer, mode: str, batch_size: int = 32, shuffle: bool = False,
                          seed: int = 0, max_len: int = 96, text_key: str = "text", label_key: str = "label") -> DataLoader:
    items = [(encode(tokenizer, ex[text_key], mode, max_len), int(ex[label_key])) for ex in examples]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)


def token_classification_loader(examples: Iterable[dict], tokenizer, mode: str, label_names: Sequence[str],
                                batch_size: int = 32, shuffle: bool = False, seed: int = 0, max_len: int = 96) -> DataLoader:
    index = {name: i for i, name in enumerate(label_names)}
    items = [encode_words_with_labels(tokenizer, ex["tokens"], [index[t] for t in ex["tags"]], mode, max_len) for ex in examples]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)


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


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader: DataLoader, device: Optional[torch.device] = None) -> float:
    """Share of correct predictions; token-level labels of -100 are ignored."""
    device = device or next(model.parameters()).device
    model.eval()
    correct = total = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        predictions = model(**batch).logits.argmax(dim=-1)
        keep = labels != -100
        correct += (predictions[keep] == labels[keep]).sum().item()
        total += keep.sum().item()
    return correct / max(total, 1)


def bio_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Entity spans (start, end, type) from BIO tags; an I- without a B- starts a new span."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == kind):
            spans.add((start, i, kind))
            start = kind = None
        if tag.startswith("B-") or (tag.startswith("I-") and start is None):
            start, kind = i, tag[2:]
    return spans


@torch.no_grad()
def evaluate_entity_f1(model: nn.Module, loader: DataLoader, label_names: Sequence[str],
                       device: Optional[torch.device] = None) -> float:
    """Entity-level micro F1 (exact span and type), the CoNLL metric, over first sub-words."""
    device = device or next(model.parameters()).device
    model.eval()
    tp = n_pred = n_gold = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        predictions = model(**batch).logits.argmax(dim=-1)
        for pred_row, gold_row in zip(predictions, labels):
            keep = gold_row != -100
            gold = bio_spans([label_names[i] for i in gold_row[keep].tolist()])
            pred = bio_spans([label_names[i] for i in pred_row[keep].tolist()])
            tp, n_pred, n_gold = tp + len(gold & pred), n_pred + len(pred), n_gold + len(gold)
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- measurements


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_state_memory(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes held by the real parameter, gradient and optimizer-state tensors (call after a step).

    On CUDA the peak allocated memory is added, which also counts activations.
    """
    params = {id(p): p for p in model.parameters()}.values()
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    memory = {
        "parameters": tensor_bytes(params),
        "gradients": tensor_bytes(p.grad for p in params if p.grad is not None),
        "optimizer_state": tensor_bytes(state),
    }
    memory["total"] = sum(memory.values())
    if torch.cuda.is_available() and any(p.is_cuda for p in params):
        memory["cuda_peak_allocated"] = torch.cuda.max_memory_allocated()
    return memory


class CountOps(TorchFunctionMode):
    """Count the tensor operations a forward pass dispatches (reads like .shape are not operations)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += getattr(func, "__name__", "") != "__get__"
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def forward_cost(fn: Callable[[], object]) -> tuple[int, int]:
    """(FLOPs, tensor operations) of one call of `fn`: exact counts, unlike a clock, so two models that
    run the same computation give equal costs on any machine, and one that does more work gives more."""
    with FlopCounterMode(display=False) as flops, CountOps() as ops:
        fn()
    return flops.get_total_flops(), ops.n


def measure_latency(fn: Callable[[], object], min_run_time: float = 0.5, num_threads: Optional[int] = None) -> float:
    """Median seconds per call of `fn`, measured with torch.utils.benchmark (warm-up and sync included)."""
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


@dataclass
class LatencyComparison:
    seconds: dict[str, float]  # median seconds per call, over the rounds
    ratio: dict[str, float]  # median over the rounds of (this call's time / the first call's time in that round)


def compare_latency(calls: dict[str, Callable[[], object]], rounds: int = 20, min_run_time: float = 0.03,
                    num_threads: int = 1) -> LatencyComparison:
    """Time several calls against the first one (the baseline), in `rounds` interleaved rounds.

    A shared machine's speed drifts over seconds. Timing one model after the other lets a slow
    spell land on one of them only; in interleaved rounds every model of a round meets the same
    machine, so the ratio within a round cancels the drift, and the median over rounds drops the
    rounds a hiccup hit. One thread: on a 2-core laptop, 2 threads are the noisiest.
    Include a second copy of the baseline as a control: its ratio shows how far from 1.00 the
    noise alone goes.
    """
    if not calls or rounds < 1:
        raise ValueError(f"compare_latency needs at least one call and one round, got {len(calls)} call(s) and "
                         f"rounds={rounds}; pass {{'base': lambda: base(x), 'other': lambda: other(x)}} and rounds >= 1.")
    for fn in calls.values():  # warm up: the first calls of a model or of a new shape are slower
        measure_latency(fn, min_run_time=min_run_time, num_threads=num_threads)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            times[name].append(measure_latency(fn, min_run_time=min_run_time, num_threads=num_threads))
    baseline = times[next(iter(calls))]
    return LatencyComparison(
        seconds={name: statistics.median(ts) for name, ts in times.items()},
        ratio={name: statistics.median(t / b for t, b in zip(ts, baseline)) for name, ts in times.items()})


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


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


@torch.no_grad()
def pooled_features(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, d), labels (N,)): what a SequenceClassifier's head sees, computed once."""
    device = next(model.parameters()).device
    model.eval()
    features, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model.backbone(batch["input_ids"], batch["attention_mask"], return_logits=False).hidden_states
        features.append(model.pool(hidden, batch["attention_mask"]).float().cpu())
        labels.append(batch["labels"].cpu())
    return torch.cat(features), torch.cat(labels)


def fit_logistic_regression(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor,
                            l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)):
    """Multinomial logistic regression with an L2 penalty, fit to convergence with L-BFGS per strength.

    Returns (eval accuracy, l2, weight (C, d), bias (C,), optimizer) of the strength that scores best on
    the eval set. Inputs should be standardised (unit scale per feature) for L-BFGS to converge well.
    """
    num_classes = int(max(y_train.max(), y_eval.max())) + 1
    best = None
    for l2 in l2_grid:
        weight = torch.zeros(num_classes, x_train.shape[1], requires_grad=True)
        bias = torch.zeros(num_classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(x_train @ weight.T + bias, y_train) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            score = ((x_eval @ weight.T + bias).argmax(-1) == y_eval).float().mean().item()
        if best is None or score > best[0]:
            best = (score, l2, weight.detach(), bias.detach(), optimizer)
    return best


def _tensors_in(value) -> list[torch.Tensor]:
    """Every tensor inside nested dicts and lists (L-BFGS keeps its history in lists)."""
    if torch.is_tensor(value):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [t for item in items for t in _tensors_in(item)]


def fit_linear_probe(name: str, model: nn.Module, train_loader: DataLoader, eval_loader: DataLoader, *,
                     l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> Experiment:
    """The frozen baseline done right: an L2 logistic regression on standardised frozen features.

    The backbone's features are computed once; the head is fit to convergence with L-BFGS (as
    scikit-learn's LogisticRegression does) for each L2 strength in `l2_grid`, the best on
    `eval_loader` is kept, and the standardisation is folded into `model.head`, so the result is
    an ordinary SequenceClassifier. Only `model.head` changes.
    """
    if any(p.requires_grad for p in model.backbone.parameters()):
        raise ValueError("fit_linear_probe trains the head of a frozen backbone: call freeze(model.backbone) first.")
    start = time.perf_counter()
    x_train, y_train = pooled_features(model, train_loader)
    x_eval, y_eval = pooled_features(model, eval_loader)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    z_train, z_eval = (x_train - mean) / std, (x_eval - mean) / std  # (N, d), unit scale per feature
    score, l2, weight, bias, optimizer = fit_logistic_regression(z_train, y_train, z_eval, y_eval, l2_grid)
    with torch.no_grad():  # head(x) = W (x - mean) / std + b, folded into one nn.Linear
        model.head.weight.copy_(weight / std)
        model.head.bias.copy_(bias - (weight / std) @ mean)
        train_accuracy = ((z_train @ weight.T + bias).argmax(-1) == y_train).float().mean().item()
    trainable, total = count_parameters(model)
    params = {id(p): p for p in model.parameters()}.values()
    memory = {"parameters": tensor_bytes(params), "gradients": tensor_bytes(model.head.parameters()),
              "optimizer_state": tensor_bytes(_tensors_in(optimizer.state_dict()["state"]))}
    memory["total"] = sum(memory.values())
    experiment = Experiment(f"{name} (L2 {l2:g})", score, trainable, total, [], time.perf_counter() - start, memory,
                            model, [], train_accuracy, majority_share(train_loader))
    return experiment


def print_experiments(experiments: Sequence[Experiment]) -> None:
    for e in experiments:
        print(e.row())
