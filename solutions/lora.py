"""Generated from notebooks/03_lora.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: h = W0 x + b + (lora_alpha / r) B A x."""

    def __init__(self, base: nn.Linear, r: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        if not 0.0 <= lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}.")
        self.base = base
        self.r, self.lora_alpha = r, lora_alpha
        self.merged = False
        # 1. Reject a rank r that is not a positive integer (ValueError that names r).
        # 2. Freeze `base`. 3. Create the trainable lora_A (r, in_features; Kaiming-uniform)
        #    and lora_B (out_features, r; zeros), self.lora_dropout and self.scaling.
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}. Typical values are 4 to 16.")
        self.base.requires_grad_(False)
        self.scaling = lora_alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))  # (r, k)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))  # (d, r): zero, so B A = 0 at init
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(lora_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., k) -> (..., d)
        # base(x), plus the scaled low-rank branch on dropout(x) unless the update is merged.
        out = self.base(x)
        if not self.merged:
            out = out + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling
        return out

    def delta_weight(self) -> torch.Tensor:
        """(lora_alpha / r) B A, shaped like base.weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into base.weight, so inference costs what the base layer costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again, restoring the base weight (to float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, merged={self.merged}"


@dataclass
class LoraConfig:
    """LoRA settings, with the names Hugging Face PEFT uses."""

    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: Union[list[str], str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    modules_to_save: list[str] = field(default_factory=lambda: ["head"])

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"LoraConfig.r must be a positive integer, got {self.r!r}. Typical values are 4 to 16.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if not self.target_modules:
            raise ValueError("LoraConfig.target_modules is empty; name at least one layer, e.g. ['q_proj', 'v_proj'].")


def _matches(name: str, target_modules: Union[list[str], str]) -> bool:
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def inject_lora(model: nn.Module, config: LoraConfig, verbose: bool = True) -> nn.Module:
    """Wrap every nn.Linear matched by config.target_modules in a LoRALinear (in place).

    Everything else is frozen, except the modules named in config.modules_to_save.
    """
    model.requires_grad_(False)
    # Find the nn.Linear modules whose names match (use _matches); raise a ValueError naming
    # config.target_modules if there are none; replace each one, in its parent module, by a
    # LoRALinear wrapping it (model.get_submodule and setattr help).
    targets = [name for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and _matches(name, config.target_modules)]
    if not targets:
        linear_names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"target_modules={config.target_modules!r} matched no nn.Linear in the model. "
                         f"Linear layers are named: {linear_names}.")
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, LoRALinear(getattr(parent, child_name), config.r, config.lora_alpha, config.lora_dropout))
    for name, module in model.named_modules():
        if any(name == m or name.endswith("." + m) for m in config.modules_to_save):
            module.requires_grad_(True)
    if verbose:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a LoRA checkpoint stores: every trainable parameter, by name, detached, on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_lora(model: nn.Module, config: LoraConfig, directory: Union[str, Path]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(layer.merged for layer in lora_layers(model)):
        raise ValueError("Unmerge the LoRA layers (unmerge_lora(model)) before saving; merged weights are not LoRA weights.")
    save_file(lora_state_dict(model), str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **asdict(config)}, indent=2))
    return directory


def load_lora(model: nn.Module, directory: Union[str, Path], verbose: bool = False) -> nn.Module:
    """Inject LoRA into a fresh base `model` as the saved config says, then load the saved tensors."""
    directory = Path(directory)
    config_path, weights_path = directory / "adapter_config.json", directory / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} needs adapter_config.json and adapter_model.safetensors (see save_lora).")
    settings = json.loads(config_path.read_text())
    if settings.pop("peft_type", None) != "LORA":
        raise ValueError(f"{config_path} is not a LoRA config (peft_type must be 'LORA').")
    config = LoraConfig(**settings)
    inject_lora(model, config, verbose=verbose)
    saved = load_file(str(weights_path))
    expected = lora_state_dict(model)
    if set(saved) != set(expected) or any(saved[k].shape != expected[k].shape for k in saved):
        raise ValueError(f"{weights_path} does not fit this model: was it saved from the same base model and config?")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return model
