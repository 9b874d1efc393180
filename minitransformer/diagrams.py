"""Pictures of the mechanisms, drawn from the real modules so they stay true.

Each figure reads the objects a lesson has just built, never a hand-drawn copy of them:

* :func:`draw_lora` draws a real ``LoraLinear``: ``W`` (frozen) beside ``B`` and ``A``, to scale, with the
  shapes, the parameter counts and the scaling ``lora_alpha / r`` read from the layer.
* :func:`draw_block` draws one transformer block of a real model and marks what a method changed in it:
  which sub-layers are wrapped (a ``base_layer`` inside: LoRA, adapters) and which hold trainable tensors
  (BitFit's biases, trained LayerNorms).
* :func:`attention_pattern` runs the real backbone and records its attention weights (a forward hook on each
  block's attention dropout, whose input is the softmax); :func:`draw_attention_patterns` shows, layer by
  layer, which keys each query reads: a prompt in front of the input (prompt tuning, P-tuning), a prefix of
  keys and values in every layer (prefix tuning, P-tuning v2), or nothing.

The colours are :data:`minitransformer.plots.METHOD_COLORS`, one per method in every chapter.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
from matplotlib.patches import FancyArrowPatch, Rectangle

from .plots import FROZEN_COLOR, METHOD_COLORS

# The sub-layers of a pre-LayerNorm block, in the order the forward pass uses them.
BLOCK_LAYOUT = (("ln_1", "LayerNorm"), ("attn.q_proj", "q"), ("attn.k_proj", "k"), ("attn.v_proj", "v"),
                ("attn.out_proj", "out_proj"), ("ln_2", "LayerNorm"), ("mlp.fc1", "fc1 (d→4d)"),
                ("mlp.fc2", "fc2 (4d→d)"))


def _box(ax, x, y, w, h, text, color, *, alpha=0.85, fontsize=9, text_color="black", hatch=None):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", lw=0.8, alpha=alpha, hatch=hatch))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=text_color)


def _arrow(ax, start, end, color="black"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=color, lw=0.9))


def draw_lora(layer: nn.Module, ax=None, color: str = METHOD_COLORS["lora"]):
    """Draw a LoRA-wrapped linear layer to scale: h = W x + (lora_alpha / r) · B A x.

    ``layer`` is the real module (it must have ``base_layer``, ``lora_A``, ``lora_B`` and ``scaling``, as
    peft's and this course's ``LoraLinear`` do). Box sides are proportional to the matrices' dimensions.
    """
    for name in ("base_layer", "lora_A", "lora_B", "scaling"):
        if not hasattr(layer, name):
            raise TypeError(f"draw_lora needs a LoRA layer with `{name}` (e.g. a LoraLinear from inject_lora); "
                            f"got {type(layer).__name__}.")
    d_out, d_in = layer.base_layer.weight.shape
    r = layer.lora_A.weight.shape[0]
    ax = ax or plt.subplots(figsize=(8, 3.4))[1]
    unit = 3.0 / max(d_out, d_in)  # the largest side is 3 units long
    w_w, w_h, r_side = d_in * unit, d_out * unit, max(r * unit, 0.06)
    _box(ax, 0, 0, w_w, w_h, f"W\n{d_out} × {d_in}\nfrozen\n{d_out * d_in:,} numbers", FROZEN_COLOR, alpha=0.5)
    ax.text(w_w + 0.35, w_h / 2, "+", fontsize=20, ha="center", va="center")
    x_b = w_w + 0.8
    _box(ax, x_b, 0, r_side, w_h, "", color)
    ax.text(x_b + r_side / 2, -0.25, f"B\n{d_out} × {r}\n(zeros at init)", ha="center", va="top", fontsize=8)
    x_a = x_b + r_side + 0.25
    _box(ax, x_a, w_h - r_side, w_w, r_side, "", color)
    ax.text(x_a + w_w / 2, w_h - r_side - 0.12, f"A: {r} × {d_in} (random at init)", ha="center", va="top",
            fontsize=8)
    ax.text(x_a + w_w + 0.2, w_h / 2, f"× lora_alpha / r = {layer.scaling:g}", fontsize=10, va="center")
    n_lora = r * (d_in + d_out)
    ax.set_title(f"LoRA on one {d_out} × {d_in} projection: h = W x + (α/r) · B A x   "
                 f"(trainable {n_lora:,} = r·(d_in + d_out), {n_lora / (d_out * d_in):.1%} of W)", fontsize=10)
    ax.set_xlim(-0.2, x_a + w_w + 2.2)
    ax.set_ylim(-1.0, w_h + 0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _find_blocks(model: nn.Module) -> list[nn.Module]:
    blocks = [m for m in model.modules() if hasattr(m, "ln_1") and hasattr(m, "attn") and hasattr(m, "mlp")]
    if not blocks:
        raise TypeError(f"{type(model).__name__} has no transformer block (a module with ln_1, attn and mlp); "
                        "pass a MiniTransformer or a model that contains one.")
    return blocks


def _status(block: nn.Module, path: str) -> tuple[str, Optional[str]]:
    """('frozen' | 'wrapped' | 'trainable', a short label) for one sub-layer of a real block."""
    module = block.get_submodule(path)
    if hasattr(module, "base_layer"):
        kind = type(module).__name__.replace("Linear", "")
        extra = f" r={module.lora_A.weight.shape[0]}" if hasattr(module, "lora_A") else (
            f" m={module.adapter.bottleneck_size}" if hasattr(module, "adapter") else "")
        return "wrapped", f"{kind}{extra}"
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    if trainable:
        return "trainable", " + ".join(sorted(trainable))
    return "frozen", None


def draw_block(model: nn.Module, ax=None, color: str = "tab:orange", title: Optional[str] = None, layer: int = 0):
    """Draw block ``layer`` of a real model, the residual stream and every sub-layer, marking what is adapted.

    A sub-layer wrapped by a method (it now holds a ``base_layer``) is filled with ``color`` and named; one whose
    own tensors train (a bias, a LayerNorm) is outlined in ``color`` with the trained names; the rest is gray.
    """
    block = _find_blocks(model)[layer]
    ax = ax or plt.subplots(figsize=(10, 2.8))[1]
    # (x, width, y) of each sub-layer; the residual stream runs along y = 0, the branches at y = 1.3.
    places = {"ln_1": (0.0, 1.4, 1.3), "attn.q_proj": (1.8, 1.0, 2.0), "attn.k_proj": (1.8, 1.0, 1.3),
              "attn.v_proj": (1.8, 1.0, 0.6), "attn.out_proj": (4.6, 1.6, 1.3), "ln_2": (7.0, 1.4, 1.3),
              "mlp.fc1": (8.8, 1.6, 1.3), "mlp.fc2": (10.8, 1.6, 1.3)}
    ax.plot([-0.6, 13.2], [0, 0], color="black", lw=1.2)  # the residual stream
    ax.text(-0.7, 0, "x", ha="right", va="center", fontsize=11)
    ax.text(13.3, 0, "x'", ha="left", va="center", fontsize=11)
    for path, label in BLOCK_LAYOUT:
        x, width, y = places[path]
        state, what = _status(block, path)
        face = color if state == "wrapped" else FROZEN_COLOR
        _box(ax, x, y - 0.25, width, 0.5, label if what is None else f"{label}\n{what}", face,
             alpha=0.8 if state == "wrapped" else 0.35, fontsize=7.5)
        if state == "trainable":
            ax.add_patch(Rectangle((x, y - 0.25), width, 0.5, fill=False, edgecolor=color, lw=2.5))
    _box(ax, 3.0, 1.05, 1.45, 0.5, "attention\nsoftmax(QKᵀ/√h)·V", "white", fontsize=6.5)
    arrows = [((-0.2, 0), (0.7, 1.05)), ((6.2, 1.3), (6.6, 0.12)), ((6.8, 0), (7.7, 1.05)),
              ((8.4, 1.3), (8.8, 1.3)), ((10.4, 1.3), (10.8, 1.3)), ((12.4, 1.3), (12.8, 0.12)),
              ((4.45, 1.3), (4.6, 1.3))]
    arrows += [((1.4, 1.3), (1.8, y)) for y in (2.0, 1.3, 0.6)] + [((2.8, y), (3.0, 1.3)) for y in (2.0, 1.3, 0.6)]
    for start, end in arrows:
        _arrow(ax, start, end)
    for xs in (6.6, 12.8):
        ax.text(xs, 0, "⊕", ha="center", va="center", fontsize=14, backgroundcolor="white")
    ax.text(10.6, 1.6, "GELU", fontsize=7, ha="center")
    ax.set_xlim(-1, 13.7)
    ax.set_ylim(-0.4, 2.5)
    ax.axis("off")
    ax.set_title(title or f"Block {layer}: filled = what the method adds, outlined = its own tensors that train, "
                          "gray = frozen", fontsize=10)
    return ax


@torch.no_grad()
def attention_pattern(model: nn.Module, **inputs) -> list[torch.Tensor]:
    """The attention weights of every block of ``model`` on ``inputs`` (the first example, averaged over
    heads): a list of (T_queries, T_keys) tensors, recorded by a forward hook on each block's attention
    dropout, whose input is the softmax. ``model`` is called with ``**inputs`` in eval mode."""
    blocks = _find_blocks(model)
    captured: list[torch.Tensor] = []
    hooks = [b.attn.attn_dropout.register_forward_hook(lambda m, args, out: captured.append(args[0][0].mean(0)))
             for b in blocks]
    was_training = model.training
    try:
        model.eval()
        model(**inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if len(captured) != len(blocks):
        raise RuntimeError(f"recorded {len(captured)} attention maps for {len(blocks)} blocks; call the model once.")
    return captured


def draw_attention_patterns(patterns: dict[str, tuple[Sequence[torch.Tensor], int, bool]], layers=(0, -1),
                            colors: Optional[dict[str, str]] = None):
    """One column per way of prompting, one row per layer: which keys (columns) each query (rows) reads.

    ``patterns`` maps a title to (the :func:`attention_pattern` of a run, P = the number of virtual tokens,
    ``as_queries``: True when the P virtual tokens are positions in the sequence, hence queries too, as with
    a prompt in front of the input; False for a prefix of keys and values only). Cells with weight 0 are white;
    the virtual tokens' keys are drawn in the column's colour, the real tokens' in gray.
    """
    from matplotlib.colors import LinearSegmentedColormap

    colors = colors or {}
    fig, axes = plt.subplots(len(layers), len(patterns), figsize=(3.2 * len(patterns), 3.0 * len(layers)),
                             squeeze=False)
    for col, (title, (maps, P, as_queries)) in enumerate(patterns.items()):
        color = colors.get(title, "tab:purple")
        for row, layer in enumerate(layers):
            ax, weights = axes[row][col], maps[layer]
            seen = (weights > 0).float().numpy()
            n_q, n_k = seen.shape
            image = seen.copy()
            image[:, :P] *= 2  # 2: a virtual token's key, 1: a real token's key, 0: masked
            cmap = LinearSegmentedColormap.from_list("keys", ["white", "0.6", color])
            ax.imshow(image, cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
            ax.set_xticks(range(n_k))
            ax.set_xticklabels([str(i) for i in range(n_k)], fontsize=6)  # the keys' positions
            q_offset = 0 if as_queries else P  # a prefix has no query rows: queries start at position P
            ax.set_yticks(range(n_q))
            ax.set_yticklabels([str(i + q_offset) for i in range(n_q)], fontsize=6)
            if P:
                ax.axvline(P - 0.5, color="black", lw=0.8)
                if as_queries:
                    ax.axhline(P - 0.5, color="black", lw=0.8)
            depth = len(maps) + layer if layer < 0 else layer
            ax.set_title(f"{title}\nlayer {depth}", fontsize=9)
            if col == 0:
                ax.set_ylabel("query position")
            if row == len(layers) - 1:
                ax.set_xlabel("key position")
    fig.tight_layout()
    return fig
