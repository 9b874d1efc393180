"""Scoring a trained model: accuracy, and entity F1 over BIO spans for tagging."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader


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
def entity_counts(model: nn.Module, loader: DataLoader, label_names: Sequence[str],
                  device: Optional[torch.device] = None) -> list[tuple[int, int, int]]:
    """Per sentence, in order: (correct, predicted, gold) entity spans (exact span and type, first sub-words)."""
    device = device or next(model.parameters()).device
    model.eval()
    rows = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        predictions = model(**batch).logits.argmax(dim=-1)
        for pred_row, gold_row in zip(predictions, labels):
            keep = gold_row != -100
            rows.append(span_counts([label_names[i] for i in pred_row[keep].tolist()],
                                    [label_names[i] for i in gold_row[keep].tolist()]))
    return rows


def span_counts(predicted: Sequence[str], gold: Sequence[str]) -> tuple[int, int, int]:
    """(correct, predicted, gold) entity spans of one sentence's BIO tags."""
    pred, true = bio_spans(predicted), bio_spans(gold)
    return len(pred & true), len(pred), len(true)


def f1_of_counts(rows: Sequence[Sequence[int]]) -> float:
    """Entity-level micro F1 from per-sentence (correct, predicted, gold) counts: 2·correct ÷ (predicted + gold)."""
    correct, predicted, gold = (sum(r[i] for r in rows) for i in range(3))
    return 0.0 if correct == 0 else 2 * correct / (predicted + gold)


def evaluate_entity_f1(model: nn.Module, loader: DataLoader, label_names: Sequence[str],
                       device: Optional[torch.device] = None) -> float:
    """Entity-level micro F1 (exact span and type), the CoNLL metric, over first sub-words."""
    return f1_of_counts(entity_counts(model, loader, label_names, device))
