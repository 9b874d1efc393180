"""Generated from notebooks/11_lora_variants.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import math
from dataclasses import dataclass, field
from typing import ClassVar, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from minitransformer.peft import (PeftConfig, add_to_class, find_targets, mark_modules_to_save,
                                  print_trainable_parameters, replace_module, unload)


class LoraVariantLinear(nn.Module):
    """Chapter 3's LoraLinear with the options of its descendants, named as in HF PEFT.

    h = W0 x + b + s B A x with s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (rsLoRA); use_dora
    gives each output feature a trained magnitude (DoRA); init_lora_weights="pissa" starts A and B from W0's top-r
    singular vectors and leaves the rest of W0 in base_layer (PiSSA).
    """

    def __init__(self, base_layer: nn.Linear, r: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.0, *,
                 use_rslora: bool = False, use_dora: bool = False, init_lora_weights: Union[bool, str] = True):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoraVariantLinear wraps an nn.Linear, got {type(base_layer).__name__}.")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}. Typical values are 4 to 16.")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}.")
        if init_lora_weights is not True and init_lora_weights != "pissa":
            raise ValueError(f"init_lora_weights must be True (chapter 3's start) or 'pissa', got {init_lora_weights!r}.")
        self.base_layer = base_layer.requires_grad_(False)
        self.r, self.lora_alpha, self.merged = r, lora_alpha, False
        self.use_rslora, self.use_dora, self.init_lora_weights = use_rslora, use_dora, init_lora_weights
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r  # rsLoRA (section 2): 1/sqrt(r)
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)  # weight (r, in), Kaiming-uniform
        self.lora_B = nn.utils.skip_init(nn.Linear, r, base_layer.out_features, bias=False)  # weight (out, r)
        nn.init.zeros_(self.lora_B.weight)  # B A = 0: the layer starts as its base layer
        self.lora_dropout = nn.Dropout(lora_dropout)
        if init_lora_weights == "pissa":
            self.pissa_init()  # section 4: A and B from W0's top-r SVD, base_layer keeps the residual
        if use_dora:  # section 3: one magnitude per output feature, the norm of the weight the layer starts with
            self.lora_magnitude_vector = nn.Parameter(self.get_weight_norm().detach())  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        result = self.base_layer(x)
        if self.merged:
            return result
        if self.use_dora:
            return result + self.dora_forward(x, result)  # section 3
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def extra_repr(self) -> str:
        return (f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, use_dora={self.use_dora}, "
                f"init_lora_weights={self.init_lora_weights!r}, merged={self.merged}")


@add_to_class(LoraVariantLinear)
def get_delta_weight(self) -> torch.Tensor:
    """s B A, shaped like base_layer.weight: (out_features, in_features)."""
    return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


@dataclass
class LoraVariantConfig(PeftConfig, register=False):
    """Chapter 3's LoRA settings plus HF PEFT's switches for the descendants: use_rslora, use_dora,
    init_lora_weights (True or "pissa"). Saved as peft_type "LORA"; load it with config_class=LoraVariantConfig."""

    peft_type: ClassVar[str] = "LORA"
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: Union[list[str], str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: Union[bool, str] = True

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"LoraVariantConfig.r must be a positive integer, got {self.r!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraVariantConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if not self.target_modules:
            raise ValueError("LoraVariantConfig.target_modules is empty; name at least one layer, e.g. ['q_proj'].")
        if self.init_lora_weights is not True and self.init_lora_weights != "pissa":
            raise ValueError(f"LoraVariantConfig.init_lora_weights must be True or 'pissa', got "
                             f"{self.init_lora_weights!r}.")

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        return inject_lora_variant(model, self, verbose)


def inject_lora_variant(model: nn.Module, config: LoraVariantConfig, verbose: bool = True) -> nn.Module:
    """Wrap every nn.Linear matched by config.target_modules in a LoraVariantLinear (in place). Everything else is
    frozen, except the modules named in config.modules_to_save."""
    model.requires_grad_(False)
    for name in find_targets(model, config.target_modules, nn.Linear):
        layer = LoraVariantLinear(model.get_submodule(name), config.r, config.lora_alpha, config.lora_dropout,
                                  use_rslora=config.use_rslora, use_dora=config.use_dora,
                                  init_lora_weights=config.init_lora_weights)
        replace_module(model, name, layer)
    mark_modules_to_save(model, config.modules_to_save)
    if verbose:
        print_trainable_parameters(model)
    return model


@add_to_class(LoraVariantLinear)
def get_weight_norm(self) -> torch.Tensor:
    """||W0 + s B A||, one norm per output feature: shape (out_features,), as HF PEFT's get_weight_norm."""
    weight = self.base_layer.weight + self.get_delta_weight()  # (out_features, in_features): the weight it computes with
    return torch.linalg.norm(weight, dim=1)  # over each row: the weights into one output feature


@add_to_class(LoraVariantLinear)
def dora_forward(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """What DoRA adds to result = base_layer(x), as HF PEFT computes it: (m/n - 1) * W0 x + (m/n) * s B A x,
    with n = get_weight_norm() treated as a constant (no gradient through it) and the bias never rescaled."""
    # With lora_dropout active (training and p > 0), both terms use the dropped input: W0 x is computed again on it
    # (F.linear with base_layer.weight, no bias). Otherwise W0 x is result without the bias.
    scale = self.lora_magnitude_vector / self.get_weight_norm().detach()  # (out,): m / n, n a constant
    if self.training and self.lora_dropout.p > 0:
        x = self.lora_dropout(x)
        base = F.linear(x, self.base_layer.weight)  # W0 x on the dropped input
    else:
        base = result if self.base_layer.bias is None else result - self.base_layer.bias  # W0 x
    return (scale - 1) * base + scale * self.lora_B(self.lora_A(x)) * self.scaling


@add_to_class(LoraVariantLinear)
@torch.no_grad()
def merge(self) -> None:
    """Fold the update into base_layer.weight: W0 + s B A, or with DoRA m / n * (W0 + s B A), row by row."""
    if self.merged:
        return
    delta = self.get_delta_weight()
    if self.use_dora:
        self._weight_norm = self.get_weight_norm()  # n of the unmerged weight: unmerge() needs it again
        factor = (self.lora_magnitude_vector / self._weight_norm).view(-1, 1)  # (out, 1): one per output row
        self.base_layer.weight.copy_(factor * (self.base_layer.weight + delta))
    else:
        self.base_layer.weight += delta
    self.merged = True


@add_to_class(LoraVariantLinear)
@torch.no_grad()
def unmerge(self) -> None:
    """Undo merge(), to float rounding."""
    if not self.merged:
        return
    delta = self.get_delta_weight()
    if self.use_dora:
        factor = (self.lora_magnitude_vector / self._weight_norm).view(-1, 1)
        self.base_layer.weight.copy_(self.base_layer.weight / factor - delta)
    else:
        self.base_layer.weight -= delta
    self.merged = False


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoraVariantLinear of `model`, then put plain nn.Linear layers back (in place)."""
    for layer in model.modules():
        if isinstance(layer, LoraVariantLinear):
            layer.merge()
    return unload(model)


@add_to_class(LoraVariantLinear)
@torch.no_grad()
def pissa_init(self) -> None:
    """A and B from the top-r singular values and vectors of W0 (so that s B A is W0's best rank-r part), the rest
    of W0 left in base_layer.weight, frozen: HF PEFT's init_lora_weights="pissa"."""
    weight = self.base_layer.weight.float()  # (out, in): W0, in float32 as HF PEFT computes it
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)  # W0 = U diag(S) Vh, S in decreasing order
    root = (S[: self.r] / self.scaling).sqrt()  # (r,): sqrt(sigma_i / s), half to B, half to A
    self.lora_A.weight.copy_(root[:, None] * Vh[: self.r])  # (r, in) = diag(root) V_r^T
    self.lora_B.weight.copy_(U[:, : self.r] * root)  # (out, r) = U_r diag(root)
    residual = weight - self.scaling * self.lora_B.weight.float() @ self.lora_A.weight.float()  # W0 - s B A
    self.base_layer.weight.copy_(residual)


def create_loraplus_optimizer(model: nn.Module, optimizer_cls: type, *, lr: float, loraplus_lr_ratio: float,
                              **kwargs) -> torch.optim.Optimizer:
    """optimizer_cls over the trainable tensors of `model` in LoRA+'s parameter groups (HF PEFT's function): the B
    matrices at lr * loraplus_lr_ratio, the A matrices at lr. kwargs go to optimizer_cls, except
    loraplus_weight_decay (default 0), the groups' weight decay; biases and LayerNorm parameters get none."""
    weight_decay = kwargs.pop("loraplus_weight_decay", 0.0)
    layer_norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)}
    groups: dict[tuple[float, float], list] = {}  # (learning rate, weight decay) -> tensors
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Which learning rate does this tensor train at, lr or lr * loraplus_lr_ratio? Set `rate`.
        fast = "lora_B" in name or param.ndim == 1  # B, and every 1-D tensor (biases, DoRA's m), as HF PEFT does
        rate = lr * loraplus_lr_ratio if fast else lr
        decay = 0.0 if "bias" in name or id(param) in layer_norms else weight_decay
        groups.setdefault((rate, decay), []).append(param)
    return optimizer_cls([{"params": params, "lr": rate, "weight_decay": decay}
                          for (rate, decay), params in groups.items()], lr=lr, **kwargs)


class _RateScale(nn.Module):
    """A parametrization that multiplies a tensor's learning rate by `ratio`: the module computes with ratio * p, and
    p gets the gradient of that product unscaled, so that an optimizer moves ratio * p as it would at ratio x lr."""

    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.ratio * p.detach() + (p - p.detach())  # value ratio * p, derivative 1

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value / self.ratio


def loraplus_by_parametrization(model: nn.Module, loraplus_lr_ratio: float) -> nn.Module:
    """LoRA+ for a trainer with one learning rate (the protocol's runner): every tensor that create_loraplus_optimizer
    puts at lr * ratio gets the parametrization _RateScale(ratio). Trained at lr by an optimizer whose step depends only
    on the gradients (SGD, Adam; no weight decay), it then moves exactly as it would at lr * ratio."""
    probe = create_loraplus_optimizer(model, torch.optim.SGD, lr=1.0, loraplus_lr_ratio=loraplus_lr_ratio)
    fast = {id(p) for group in probe.param_groups if group["lr"] != 1.0 for p in group["params"]}
    for module in list(model.modules()):
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) in fast:
                parametrize.register_parametrization(module, name, _RateScale(loraplus_lr_ratio))
    return model
