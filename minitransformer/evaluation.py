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
