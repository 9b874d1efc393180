"""Controls the papers run beside their methods: what a method's result is compared with to show it is not luck.

BitFit's random subset (Ben Zaken et al. 2021, section 4, "random parameters"): train as many numbers as BitFit does,
drawn uniformly from every tensor of the backbone instead of the biases. If the biases are special, BitFit beats it.

The subset trains through a sparse update, W = W0 + scatter(delta), registered as a parametrization
(``torch.nn.utils.parametrize``): W0 stays bit-for-bit frozen (``parametrizations.weight.original``), and the
trainable count is exactly the subset's size.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch.nn.utils import parametrize


class SparseDelta(nn.Module):
    """W = W0 + scatter(delta, indices): ``delta`` (k numbers, zero at the start) added at fixed flat positions."""

    def __init__(self, indices: torch.Tensor):
        super().__init__()
        self.register_buffer("indices", indices)  # (k,) flat positions in W0, sorted
        self.delta = nn.Parameter(torch.zeros(len(indices)))  # (k,) the trained numbers

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original.reshape(-1).index_add(0, self.indices, self.delta.to(original.dtype)).view_as(original)


def bias_count(model: nn.Module, exclude: tuple = ("head.",)) -> int:
    """The numbers BitFit trains in the backbone: every bias (a parameter named ``*.bias``), the head left out."""
    return sum(p.numel() for name, p in model.named_parameters() if name.endswith("bias") and not name.startswith(exclude))


def random_subset(model: nn.Module, count: Optional[int] = None, seed: Optional[int] = None,
                  exclude: tuple = ("head.",), train: tuple = ("head.",)) -> nn.Module:
    """Train ``count`` numbers of the backbone drawn uniformly from all of its parameters (BitFit's control), in place.

    count: how many (default: as many as the backbone's biases, BitFit's count). seed: the draw (default: the
    seed the run set with ``torch.manual_seed``, so each training seed draws its own subset). Parameters whose
    name starts with ``exclude`` are not drawn from; those starting with ``train`` (the new task head) train in
    full, as they do for BitFit.
    """
    count = bias_count(model, exclude) if count is None else count
    pool = [(name, p) for name, p in model.named_parameters() if not name.startswith(exclude)]
    total = sum(p.numel() for _, p in pool)
    if not 0 < count <= total:
        raise ValueError(f"random_subset: count must be between 1 and the {total:,} numbers of the backbone, got "
                         f"{count!r}; leave it out to draw as many as the backbone has biases")
    generator = torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)
    chosen = torch.randperm(total, generator=generator)[:count].sort().values  # flat positions over the whole pool
    model.requires_grad_(False)
    start = 0
    modules = dict(model.named_modules())
    for name, p in pool:
        mine = chosen[(chosen >= start) & (chosen < start + p.numel())] - start
        start += p.numel()
        if len(mine):
            owner, _, attr = name.rpartition(".")
            parametrize.register_parametrization(modules[owner], attr, SparseDelta(mine), unsafe=True)
    for name, p in model.named_parameters():
        if name.startswith(train):
            p.requires_grad_(True)
    return model
