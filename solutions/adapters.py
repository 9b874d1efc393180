"""Generated from notebooks/05_adapters.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from minitransformer.peft import PeftConfig, add_to_class, mark_modules_to_save, print_trainable_parameters


# The non-linearities by the names the `adapters` library uses.
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU, "silu": nn.SiLU}


class BottleneckAdapter(nn.Module):
    """Houlsby's bottleneck with a skip connection: h -> h + up(act(down(h))), the identity at init."""

    def __init__(self, d_model: int, bottleneck_size: int, non_linearity: str = "gelu"):
        super().__init__()
        for name, value in (("d_model", d_model), ("bottleneck_size", bottleneck_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BottleneckAdapter {name} must be a positive integer, got {value!r}.")
        if non_linearity not in ACTIVATIONS:
            raise ValueError(f"Unknown non_linearity {non_linearity!r}; choose one of {sorted(ACTIVATIONS)}.")
        self.d_model, self.bottleneck_size, self.non_linearity = d_model, bottleneck_size, non_linearity
        self.down = nn.Linear(d_model, bottleneck_size)  # d -> m, default Kaiming-uniform init
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(bottleneck_size, d_model)  # m -> d
        nn.init.zeros_(self.up.weight)  # zero up-projection: the adapter starts as the identity
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., d)
        return h + self.up(self.act(self.down(h)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, bottleneck_size={self.bottleneck_size}, non_linearity={self.non_linearity!r}"


class AdapterLinear(nn.Module):
    """A frozen output projection followed by its adapter: adapter(base_layer(x))."""

    def __init__(self, base_layer: nn.Linear, adapter: BottleneckAdapter):
        super().__init__()
        self.base_layer, self.adapter = base_layer, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_features) -> (..., out_features)
        return self.adapter(self.base_layer(x))


@dataclass
class AdapterConfig(PeftConfig):
    """Bottleneck-adapter settings, with the field names of the `adapters` library (modules_to_save: PeftConfig)."""

    peft_type: ClassVar[str] = "BOTTLENECK"
    bottleneck_size: Optional[int] = None  # m; None: d_model // reduction_factor
    reduction_factor: float = 16
    non_linearity: str = "gelu"
    mh_adapter: bool = True  # after each block's attention output projection
    output_adapter: bool = True  # after each block's FFN output projection
    train_layer_norms: bool = True

    def __post_init__(self):
        m = self.bottleneck_size
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m <= 0):
            raise ValueError(f"AdapterConfig.bottleneck_size must be a positive integer, got {m!r}. "
                             "Pass e.g. bottleneck_size=8, or None to use d_model // reduction_factor.")
        rf = self.reduction_factor
        if not isinstance(rf, (int, float)) or isinstance(rf, bool) or not rf > 0:
            raise ValueError(f"AdapterConfig.reduction_factor must be a positive number, got {rf!r}. "
                             "It sets bottleneck_size = d_model // reduction_factor; 16 is the usual choice.")
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(f"AdapterConfig.non_linearity={self.non_linearity!r} is unknown; "
                             f"choose one of {sorted(ACTIVATIONS)}.")
        if not (self.mh_adapter or self.output_adapter):
            raise ValueError("AdapterConfig has mh_adapter=False and output_adapter=False, so no adapter would be "
                             "added. Set mh_adapter=True (after attention) and/or output_adapter=True (after the FFN).")

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        return inject_adapters(model, self, verbose)


@add_to_class(AdapterConfig)
def bottleneck_dim(self, d_model: int) -> int:
    """The bottleneck size m for a model of width d_model.

    m = bottleneck_size if it is given, else int(d_model // reduction_factor). A bottleneck
    must have 1 <= m <= d_model; otherwise raise a ValueError that names the field to change.
    """
    if self.bottleneck_size is not None:
        if self.bottleneck_size > d_model:
            raise ValueError(f"AdapterConfig.bottleneck_size={self.bottleneck_size} is larger than "
                             f"d_model={d_model}: that is no bottleneck. Use at most {d_model}, "
                             f"typically d_model // 16 = {max(d_model // 16, 1)}.")
        return self.bottleneck_size
    m = int(d_model // self.reduction_factor)
    if m < 1:
        raise ValueError(f"AdapterConfig.reduction_factor={self.reduction_factor} gives bottleneck_size "
                         f"{d_model} // {self.reduction_factor} = {m} for d_model={d_model}. "
                         f"Use reduction_factor <= {d_model}, or set bottleneck_size.")
    if m > d_model:
        raise ValueError(f"AdapterConfig.reduction_factor={self.reduction_factor} < 1 gives bottleneck_size "
                         f"{m} > d_model={d_model}: that is no bottleneck. Use reduction_factor >= 1.")
    return m


def adapter_layers(model: nn.Module) -> list[BottleneckAdapter]:
    return [m for m in model.modules() if isinstance(m, BottleneckAdapter)]


def inject_adapters(model: nn.Module, config: AdapterConfig, verbose: bool = True) -> nn.Module:
    """Insert a BottleneckAdapter after every block's attention output (mh_adapter) and FFN output
    (output_adapter), in place. The adapters, the LayerNorms (train_layer_norms) and the modules in
    modules_to_save train; everything else is frozen."""
    backbone = getattr(model, "backbone", model)  # a classifier or a bare MiniTransformer
    if adapter_layers(model):
        raise ValueError("This model already has adapters; start from a fresh base model (fresh_classifier()).")
    m = config.bottleneck_dim(backbone.config.d_model)  # checks the size before the model is touched
    model.requires_grad_(False)
    slots = [(block.attn, "out_proj") for block in backbone.blocks if config.mh_adapter]
    slots += [(block.mlp, "fc2") for block in backbone.blocks if config.output_adapter]
    for parent, name in slots:
        base_layer = getattr(parent, name)
        adapter = BottleneckAdapter(base_layer.out_features, m, config.non_linearity)
        adapter.to(base_layer.weight.device, base_layer.weight.dtype)
        setattr(parent, name, AdapterLinear(base_layer, adapter))  # new parameters: requires_grad=True
    if config.train_layer_norms:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
    mark_modules_to_save(model, config.modules_to_save)
    if verbose:
        print_trainable_parameters(model)
    return model
