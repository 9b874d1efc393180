"""Generated from notebooks/04_bitfit.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Union

import torch
import torch.nn as nn

from minitransformer.peft import PeftConfig, is_target, mark_modules_to_save, print_trainable_parameters


# BitFit's bias subsets (the paper's names for BERT's layers) -> parameter-name suffixes.
BITFIT_SUBSETS: dict[str, tuple[str, ...]] = {
    "query": ("q_proj.bias",),
    "key": ("k_proj.bias",),
    "value": ("v_proj.bias",),
    "attention_output": ("out_proj.bias",),
    "intermediate": ("fc1.bias",),  # d -> 4d
    "output": ("fc2.bias",),  # 4d -> d
    "layernorm": ("ln_1.bias", "ln_2.bias", "ln_f.bias"),
    "all": ("bias",),
}
BIAS_TYPES = tuple(s for s in BITFIT_SUBSETS if s != "all")  # the disjoint subsets


def _as_tuple(names: Union[str, Iterable[str]]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def bias_names(model: nn.Module, subsets: Union[str, Iterable[str]] = ("all",)) -> list[str]:
    """Names of the parameters in the given BitFit subsets (keys of BITFIT_SUBSETS), in model order."""
    subsets = _as_tuple(subsets)
    if not subsets:
        raise ValueError(f"No BitFit subset given; choose from {list(BITFIT_SUBSETS)}.")
    unknown = [s for s in subsets if s not in BITFIT_SUBSETS]
    if unknown:
        raise ValueError(f"Unknown BitFit subset(s) {unknown}; valid subsets are {list(BITFIT_SUBSETS)}.")
    names = [name for name, _ in model.named_parameters()]
    selected = set()
    for subset in subsets:
        found = [n for n in names if is_target(n, BITFIT_SUBSETS[subset])]
        if not found:
            raise ValueError(f"BitFit subset {subset!r} (names ending in {BITFIT_SUBSETS[subset]}) matches no "
                             f"parameter of this {type(model).__name__}. Do its layers have biases?")
        selected.update(found)
    return [n for n in names if n in selected]


def apply_bitfit(model: nn.Module, subsets: Union[str, Iterable[str]] = ("all",),
                 modules_to_save: Union[str, Iterable[str]] = ("head",), verbose: bool = True) -> nn.Module:
    """BitFit in place: train only the biases in `subsets` and the modules in `modules_to_save`."""
    names = bias_names(model, subsets)  # check the subsets before changing anything
    model.requires_grad_(False)
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(True)
    mark_modules_to_save(model, _as_tuple(modules_to_save))
    if verbose:
        print_trainable_parameters(model)
    return model


@dataclass
class BitFitConfig(PeftConfig):
    """BitFit settings: the bias subsets that train (keys of BITFIT_SUBSETS); modules_to_save comes from PeftConfig."""

    peft_type: ClassVar[str] = "BITFIT"
    subsets: list[str] = field(default_factory=lambda: ["all"])

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        return apply_bitfit(model, self.subsets, self.modules_to_save, verbose)


def bias_changes(model: nn.Module, reference: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Mean absolute change (1/n)·|b - b0|_1 of each bias subset, per block: {subset: [block 0, block 1, ...]}.

    `reference` maps parameter names to their values before training (e.g. a fresh model's state_dict()).
    The "layernorm" entry pools a block's ln_1 and ln_2 biases; the final ln_f is left out.
    """
    diffs = defaultdict(list)  # (subset, block) -> |b - b0| of its biases
    for name, p in model.named_parameters():
        block = re.search(r"blocks\.(\d+)\.", name)
        subset = next((s for s in BIAS_TYPES if is_target(name, BITFIT_SUBSETS[s])), None)
        if block and subset:
            diffs[subset, int(block[1])].append((p.detach().cpu() - reference[name].cpu()).abs().flatten())
    n_blocks = 1 + max(i for _, i in diffs)
    return {s: [torch.cat(diffs[s, i]).mean().item() for i in range(n_blocks)] for s in BIAS_TYPES}
