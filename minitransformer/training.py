"""Utilities every chapter shares: seeding, devices, freezing, batching, a train loop, and measurements."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .tokenizer import PAD, encode, encode_words_with_labels

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


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per optimizer step
    seconds: float = 0.0
    optimizer: Optional[torch.optim.Optimizer] = None

    @property
    def steps(self) -> int:
        return len(self.losses)


def train(model: nn.Module, loader: DataLoader, *, epochs: int = 1, lr: float = 1e-3, weight_decay: float = 0.0,
          max_steps: Optional[int] = None, desc: str = "train", progress: bool = True,
          device: Optional[torch.device] = None) -> TrainResult:
    """AdamW on the parameters that require grad. The model's `forward(**batch)` must return `.loss`."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("No parameter requires grad: nothing to train. Did you freeze the whole model?")
    device = device or next(model.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    result = TrainResult(optimizer=optimizer)
    start = time.perf_counter()
    model.train()
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            for batch in loader:
                if result.steps >= total:
                    break
                batch = {k: v.to(device) for k, v in batch.items()}
                loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                result.losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
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


def measure_latency(fn: Callable[[], object], min_run_time: float = 0.5, num_threads: Optional[int] = None) -> float:
    """Median seconds per call of `fn`, measured with torch.utils.benchmark (warm-up and sync included)."""
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# ----------------------------------------------------------------------------- experiments


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

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total

    def row(self) -> str:
        return (f"{self.name:<24} score {self.score:6.3f}   trainable {self.trainable:>9,} ({100 * self.trainable_share:6.3f}%)"
                f"   train-state memory {format_bytes(self.memory['total']):>9}   {self.seconds:5.1f} s")


def fit_and_evaluate(name: str, model: nn.Module, train_loader: DataLoader, eval_loader: DataLoader, *,
                     epochs: int = 1, lr: float = 1e-3, metric: Callable = None, progress: bool = True) -> Experiment:
    """Train the parameters that require grad, then score on `eval_loader` (accuracy by default)."""
    metric = metric or evaluate_accuracy
    trainable, total = count_parameters(model)
    result = train(model, train_loader, epochs=epochs, lr=lr, desc=name, progress=progress)
    memory = training_state_memory(model, result.optimizer)
    return Experiment(name, metric(model, eval_loader), trainable, total, result.losses, result.seconds, memory, model)


def print_experiments(experiments: Sequence[Experiment]) -> None:
    for e in experiments:
        print(e.row())
