"""The plots every chapter draws: loss curves and score against trainable parameters."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .training import Experiment

# One colour per method, the same in every chapter's plots and diagrams.
METHOD_COLORS = {"full": "tab:blue", "frozen": "tab:gray", "lora": "tab:orange", "bitfit": "tab:green",
                 "adapters": "tab:red", "prompt_tuning": "tab:purple", "p_tuning": "tab:brown",
                 "prefix_tuning": "tab:pink", "p_tuning_v2": "tab:olive", "qlora": "tab:cyan"}
FROZEN_COLOR = "0.75"  # what a method leaves untouched
# How the experiments name their method (Experiment.name starts with it), longest first.
_NAME_PREFIXES = (("p-tuning v2", "p_tuning_v2"), ("prompt tuning", "prompt_tuning"), ("prefix", "prefix_tuning"),
                  ("p-tuning", "p_tuning"), ("qlora", "qlora"), ("full", "full"), ("frozen", "frozen"), ("lora", "lora"),
                  ("bitfit", "bitfit"), ("adapter", "adapters"), ("houlsby", "adapters"))


def method_colors(names: Sequence[str]) -> list:
    """The course's colour of each experiment's method (:data:`METHOD_COLORS`), by its name; a second run of the
    same method in one plot, or an unknown method, gets None (matplotlib's next colour) so no two lines share one."""
    used, colors = set(), []
    for name in names:
        method = next((m for prefix, m in _NAME_PREFIXES if name.lower().startswith(prefix)), None)
        colors.append(METHOD_COLORS[method] if method and method not in used else None)
        used.add(method)
    return colors


def smooth(values: Sequence[float], window: int = 10) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_loss_curves(experiments: Sequence[Experiment], ax=None, title: str = "Training loss"):
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for e, color in zip(experiments, method_colors([e.name for e in experiments])):
        ax.plot(smooth(e.losses), label=e.name, color=color)
    ax.set(xlabel="optimizer step", ylabel="loss (moving average of 10)", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_score_vs_params(experiments: Sequence[Experiment], ax=None, metric: str = "accuracy",
                         title: str = "Score against trainable parameters"):
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for e, color in zip(experiments, method_colors([e.name for e in experiments])):
        ax.scatter(e.trainable, e.score, s=40, color=color)
        ax.annotate(e.name, (e.trainable, e.score), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    return ax
