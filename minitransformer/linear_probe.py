"""The frozen baseline done right: an L2 logistic regression on frozen features, fit to convergence."""

from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .measure import tensor_bytes
from .training import Experiment, count_parameters, majority_share


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


@torch.no_grad()
def token_features(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, d), labels (N,)): what a TokenClassifier's head sees at every labelled token (label != -100)."""
    device = next(model.parameters()).device
    model.eval()
    features, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model.backbone(batch["input_ids"], batch["attention_mask"], return_logits=False).hidden_states
        keep = batch["labels"] != -100  # (B, T): the first sub-word of every word
        features.append(hidden[keep].float().cpu())
        labels.append(batch["labels"][keep].cpu())
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
                     l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), features=pooled_features) -> Experiment:
    """The frozen baseline done right: an L2 logistic regression on standardised frozen features.

    The backbone's features are computed once; the head is fit to convergence with L-BFGS (as
    scikit-learn's LogisticRegression does) for each L2 strength in `l2_grid`, the best on
    `eval_loader` is kept, and the standardisation is folded into `model.head`, so the result is
    an ordinary SequenceClassifier (or TokenClassifier, with ``features=token_features``: one example per
    labelled token). Only `model.head` changes.
    """
    if any(p.requires_grad for p in model.backbone.parameters()):
        raise ValueError("fit_linear_probe trains the head of a frozen backbone: call freeze(model.backbone) first.")
    start = time.perf_counter()
    x_train, y_train = features(model, train_loader)  # token_features for a TokenClassifier
    x_eval, y_eval = features(model, eval_loader)
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
