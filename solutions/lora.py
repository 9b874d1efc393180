"""Generated from notebooks/03_lora.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import math
from dataclasses import dataclass, field
from typing import ClassVar, Union

import torch
import torch.nn as nn

from minitransformer.peft import (PeftConfig, add_to_class, find_targets, mark_modules_to_save,
                                  print_trainable_parameters, replace_module, unload)


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: h = W0 x + b + (lora_alpha / r) B A x."""

    def __init__(self, base_layer: nn.Linear, r: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.0):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoraLinear wraps an nn.Linear, got {type(base_layer).__name__}.")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}.")
        self.base_layer = base_layer
        self.r, self.lora_alpha = r, lora_alpha
        self.merged = False
        # 1. Reject a rank r that is not a positive integer (ValueError that names r).
        # 2. Freeze `base_layer`. 3. Create the trainable, bias-free nn.Linear layers lora_A (in_features -> r)
        #    and lora_B (r -> out_features) with the inits of the table above, then self.lora_dropout and
        #    self.scaling.
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}. Typical values are 4 to 16.")
        self.base_layer.requires_grad_(False)
        self.scaling = lora_alpha / r
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)  # weight (r, k), Kaiming-uniform
        # weight (d, r), zero so that B A = 0 at init (skip_init: no random init that we would overwrite)
        self.lora_B = nn.utils.skip_init(nn.Linear, r, base_layer.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(lora_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., k) -> (..., d)
        # base_layer(x), plus the scaled low-rank branch on lora_dropout(x) unless the update is merged.
        out = self.base_layer(x)
        if not self.merged:
            out = out + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return out

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, merged={self.merged}"


@dataclass
class LoraConfig(PeftConfig):
    """LoRA settings, with the names Hugging Face PEFT uses (modules_to_save comes from PeftConfig)."""

    peft_type: ClassVar[str] = "LORA"
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: Union[list[str], str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"LoraConfig.r must be a positive integer, got {self.r!r}. Typical values are 4 to 16.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if not self.target_modules:
            raise ValueError("LoraConfig.target_modules is empty; name at least one layer, e.g. ['q_proj', 'v_proj'].")

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        return inject_lora(model, self, verbose)


def inject_lora(model: nn.Module, config: LoraConfig, verbose: bool = True) -> nn.Module:
    """Wrap every nn.Linear matched by config.target_modules in a LoraLinear (in place).

    Everything else is frozen, except the modules named in config.modules_to_save.
    """
    model.requires_grad_(False)
    # Find the targeted layers with find_targets(model, config.target_modules, nn.Linear) (it raises for a
    # target that matches nothing) and replace each one by a LoraLinear that wraps it (replace_module).
    for name in find_targets(model, config.target_modules, nn.Linear):
        layer = model.get_submodule(name)
        replace_module(model, name, LoraLinear(layer, config.r, config.lora_alpha, config.lora_dropout))
    mark_modules_to_save(model, config.modules_to_save)
    if verbose:
        print_trainable_parameters(model)
    return model


@add_to_class(LoraLinear)
def get_delta_weight(self) -> torch.Tensor:
    """(lora_alpha / r) B A, shaped like base_layer.weight: (out_features, in_features)."""
    return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


@add_to_class(LoraLinear)
@torch.no_grad()
def merge(self) -> None:
    """Fold the update into base_layer.weight, so inference costs what the base layer costs."""
    if not self.merged:
        self.base_layer.weight += self.get_delta_weight()
        self.merged = True


@add_to_class(LoraLinear)
@torch.no_grad()
def unmerge(self) -> None:
    """Subtract the update again, restoring the base weight (to float rounding)."""
    if self.merged:
        self.base_layer.weight -= self.get_delta_weight()
        self.merged = False


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoraLinear of `model` (in place)."""
    for layer in model.modules():
        if isinstance(layer, LoraLinear):
            layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Unmerge every LoraLinear of `model` (in place)."""
    for layer in model.modules():
        if isinstance(layer, LoraLinear):
            layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRA update into its base layer, then put the plain nn.Linear layers back (in place)."""
    return unload(merge_lora(model))
