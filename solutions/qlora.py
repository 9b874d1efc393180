"""Generated from notebooks/12_qlora.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitransformer.peft import add_to_class, replace_module


def create_normal_map(offset: float = 0.9677083, use_extra_value: bool = True) -> torch.Tensor:
    """The NF4 code: 16 levels from the quantiles of N(0, 1), sorted, scaled to [-1, 1], with an exact 0.

    bitsandbytes' create_normal_map(offset=0.9677083, use_extra_value=True): the quantiles at probabilities evenly
    spaced from `offset` down to 1/2 (1/2 itself left out), 8 on the positive side and 7 on the negative side, plus 0.
    use_extra_value=False: 7 on each side (15 levels, symmetric). Returns float32, shape (16,) or (15,).
    """
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    probabilities = lambda k: torch.linspace(offset, 0.5, k + 1)[:-1].double()  # noqa: E731  k of them, 1/2 left out
    positive = normal.icdf(probabilities(8 if use_extra_value else 7))  # q_i > 0, the largest first
    negative = -normal.icdf(probabilities(7))  # one fewer below zero: 0 takes the 16th code
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).float().sort().values
    return values / values.max()  # the largest level is exactly 1: absmax maps to it


def quantize_blockwise(A: torch.Tensor, code: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise absmax quantisation of A (any shape, read in row-major order) to the nearest level of `code`.

    Cuts the flattened A into blocks of `blocksize` consecutive values (the last may be shorter), divides each block by
    its absmax, the largest |value| in it, and stores for each value the index of the nearest level of `code` (a
    sorted tensor in [-1, 1]; a tie goes to the lower level). Returns (indices: uint8, shape (A.numel(),); absmax:
    float32, shape (number of blocks,)). bitsandbytes' quantize_blockwise / the first half of quantize_4bit.
    """
    flat = A.detach().reshape(-1).float()
    n = flat.numel()
    blocks = -(-n // blocksize)  # ceil(n / blocksize)
    padded = F.pad(flat, (0, blocks * blocksize - n)).view(blocks, blocksize)  # zeros change no absmax
    midpoints = (code[:-1] + code[1:]) / 2  # the decision boundaries between neighbouring levels
    absmax = padded.abs().amax(dim=1)  # (blocks,): one scale per block of consecutive values
    scaled = (padded * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1)  # each block into [-1, 1]
    indices = torch.bucketize(scaled.reshape(-1)[:n], midpoints)  # nearest level; on a midpoint, the lower one
    return indices.to(torch.uint8), absmax


def pack_4bit(indices: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices (0..15) per byte, as bitsandbytes stores them: element 2i in the high nibble (bits 7-4) of
    byte i, element 2i + 1 in the low nibble. `indices`: uint8 of even length. Returns uint8, half the length."""
    if indices.numel() % 2:
        raise ValueError(f"pack_4bit needs an even number of indices, got {indices.numel()}; pad first.")
    pairs = indices.reshape(-1, 2).to(torch.uint8)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_4bit(packed: torch.Tensor, n: Optional[int] = None) -> torch.Tensor:
    """The inverse of pack_4bit: uint8 bytes -> uint8 indices (high nibble first), the first n of them."""
    flat = packed.reshape(-1)
    indices = torch.stack([flat >> 4, flat & 0x0F], dim=1).reshape(-1)
    return indices if n is None else indices[:n]


def dequantize_blockwise(indices: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    """code[index] * absmax of its block, for flattened indices: float32, shape (indices.numel(),)."""
    values = code[indices.reshape(-1).long()]
    n = values.numel()
    blocks = absmax.numel()
    scales = absmax.float().repeat_interleave(blocksize)[:n]
    if scales.numel() != n:
        raise ValueError(f"{n} values need {-(-n // blocksize)} absmax values at blocksize {blocksize}, got {blocks}.")
    return values * scales


def create_dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """bitsandbytes' 8-bit dynamic code (Dettmers 2016): 256 sorted levels in [-1, 1], dense near 0 and sparse near 1
    (a decimal exponent, then a fraction). The double quantisation codes the scales with it."""
    if not signed or total_bits != 8 or max_exponent_bits != 7:
        raise ValueError("only bitsandbytes' default dynamic map is built here: signed, 7 exponent bits, 8 bits")
    data = []
    for i in range(max_exponent_bits):  # one decade per i: 10^-6 ... 10^0, with 2^i + 1 boundaries in [0.1, 1]
        boundaries = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data += [0.0, 1.0]  # 254 + 2 = 256 levels
    return torch.tensor(sorted(data), dtype=torch.float32)


@dataclass
class QuantState:
    """What dequantising needs besides the packed bytes, with bitsandbytes' field names."""

    absmax: torch.Tensor  # (blocks,): float32 scales, or uint8 codes of them when nested (double quantisation)
    shape: torch.Size  # the weight's shape
    code: torch.Tensor  # the levels the indices point into (NF4: 16)
    blocksize: int
    dtype: torch.dtype  # the weight's dtype before quantisation
    quant_type: str = "nf4"
    offset: Optional[torch.Tensor] = None  # double quantisation: the mean scale, subtracted before coding them
    state2: Optional["QuantState"] = None  # double quantisation: the scales' own state (8-bit code, blocksize 256)

    @property
    def nested(self) -> bool:
        return self.state2 is not None


QUANT_TYPES = ("nf4", "int4")  # int4: 15 evenly spaced levels k/7, the uniform baseline (not bitsandbytes' fp4)
NESTED_BLOCKSIZE = 256  # bitsandbytes' blocksize for the second quantisation, of the scales


_CODES: dict = {}  # quant_type -> its code, built once and shared by every layer (bitsandbytes shares its 8-bit map)


def get_4bit_type(quant_type: str = "nf4") -> torch.Tensor:
    """The 4-bit code of `quant_type`: NF4's 16 normal quantiles, or int4's 15 evenly spaced levels k/7."""
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type must be one of {QUANT_TYPES}, got {quant_type!r}.")
    if quant_type not in _CODES:
        _CODES[quant_type] = create_normal_map() if quant_type == "nf4" else torch.arange(-7, 8, dtype=torch.float32) / 7
    return _CODES[quant_type]


def quantize_4bit(A: torch.Tensor, blocksize: int = 64, compress_statistics: bool = True,
                  quant_type: str = "nf4") -> tuple[torch.Tensor, QuantState]:
    """bitsandbytes' quantize_4bit: block-wise absmax quantisation to a 4-bit code, two indices per byte; with
    compress_statistics (double quantisation) the float32 scales are quantised again, less their mean, to the 8-bit
    dynamic code in blocks of 256. Returns (packed uint8 of (A.numel() + 1) // 2 bytes, QuantState)."""
    if not A.is_floating_point():
        raise TypeError(f"quantize_4bit quantises a float tensor, got {A.dtype}.")
    if not isinstance(blocksize, int) or blocksize < 2 or blocksize % 2:
        raise ValueError(f"blocksize must be an even integer >= 2 (bitsandbytes: 64), got {blocksize!r}.")
    code = get_4bit_type(quant_type)
    indices, absmax = quantize_blockwise(A, code, blocksize)
    if indices.numel() % 2:  # an odd count: one more value, 0, as bitsandbytes pads
        zero = torch.argmin(code.abs()).to(torch.uint8).reshape(1)
        indices = torch.cat([indices, zero])
    state = QuantState(absmax, A.shape, code, blocksize, A.dtype, quant_type)
    if compress_statistics:
        offset = absmax.mean()  # the scales are all positive: centring them uses the 8-bit code's sign
        if "dynamic" not in _CODES:
            _CODES["dynamic"] = create_dynamic_map()
        nested_code = _CODES["dynamic"]
        qabsmax, nested_absmax = quantize_blockwise(absmax - offset, nested_code, NESTED_BLOCKSIZE)
        state.absmax, state.offset = qabsmax, offset
        state.state2 = QuantState(nested_absmax, absmax.shape, nested_code, NESTED_BLOCKSIZE, torch.float32, "dynamic")
    return pack_4bit(indices), state


def dequantize_4bit(packed: torch.Tensor, quant_state: QuantState) -> torch.Tensor:
    """The inverse of quantize_4bit, to the 4-bit code's precision: a tensor of quant_state.shape and .dtype.

    With double quantisation (quant_state.nested) the scales come back first: their 8-bit codes dequantised with
    quant_state.state2, plus quant_state.offset. Then each value is its level of quant_state.code times its block's
    scale."""
    n = math.prod(quant_state.shape)
    absmax = quant_state.absmax
    if quant_state.nested:
        state2 = quant_state.state2
        absmax = dequantize_blockwise(absmax, state2.absmax, state2.code, state2.blocksize) + quant_state.offset
    values = dequantize_blockwise(unpack_4bit(packed, n), absmax, quant_state.code, quant_state.blocksize)
    return values.reshape(quant_state.shape).to(quant_state.dtype)


class Linear4bit(nn.Linear):
    """A frozen linear layer whose weight is stored in 4 bits (bitsandbytes' Linear4bit): the packed indices in the
    buffer `weight`, the quantisation state in buffers beside it (`absmax`, `quant_map`, `offset`, `nested_absmax`,
    `nested_quant_map`, as bitsandbytes serialises them), the bias in float. forward dequantises the weight to
    compute_dtype and multiplies. It subclasses nn.Linear, as bitsandbytes' does, so that code looking for linear
    layers (LoRA's target matching) finds it; it has no float weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, compute_dtype: Optional[torch.dtype] = None,
                 compress_statistics: bool = True, quant_type: str = "nf4", blocksize: int = 64):
        nn.Module.__init__(self)  # not nn.Linear.__init__: no float weight to allocate
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype, self.compress_statistics = compute_dtype, compress_statistics
        self.quant_type, self.blocksize = quant_type, blocksize
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self.load_weight(torch.zeros(out_features, in_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> "Linear4bit":
        """A Linear4bit holding `linear`'s weight quantised and its bias as it is (what load_in_4bit does per layer)."""
        if not isinstance(linear, nn.Linear) or isinstance(linear, Linear4bit):
            raise TypeError(f"Linear4bit.from_linear quantises an nn.Linear, got {type(linear).__name__}.")
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, **kwargs)
        layer.load_weight(linear.weight)
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach().clone()
        return layer.to(linear.weight.device)

    @torch.no_grad()
    def load_weight(self, weight: torch.Tensor) -> None:
        """Quantise `weight` (out_features, in_features) into this layer's buffers."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight must have shape ({self.out_features}, {self.in_features}), got {tuple(weight.shape)}.")
        packed, state = quantize_4bit(weight.detach(), self.blocksize, self.compress_statistics, self.quant_type)
        self.weight_dtype = weight.dtype
        for name, tensor in (("weight", packed), ("absmax", state.absmax), ("quant_map", state.code),
                             ("offset", state.offset), ("nested_absmax", state.state2 and state.state2.absmax),
                             ("nested_quant_map", state.state2 and state.state2.code)):
            self._buffers.pop(name, None)
            self.register_buffer(name, tensor)

    @property
    def quant_state(self) -> QuantState:
        """bitsandbytes' weight.quant_state, read from this layer's buffers (so it follows .to(device))."""
        nested = None if self.nested_absmax is None else QuantState(
            self.nested_absmax, self.absmax.shape, self.nested_quant_map, NESTED_BLOCKSIZE, torch.float32, "dynamic")
        return QuantState(self.absmax, torch.Size((self.out_features, self.in_features)), self.quant_map,
                          self.blocksize, self.weight_dtype, self.quant_type, self.offset, nested)

    def dequantize(self) -> torch.Tensor:
        """The weight the layer computes with, (out_features, in_features), in the original dtype."""
        return dequantize_4bit(self.weight, self.quant_state)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"quant_type={self.quant_type}, blocksize={self.blocksize}, compress_statistics={self.compress_statistics}")


@add_to_class(Linear4bit)
def forward(self, x: torch.Tensor) -> torch.Tensor:
    """x (..., in_features) -> (..., out_features) in x's dtype, computed in compute_dtype (x's dtype when None)."""
    dtype = self.compute_dtype or x.dtype
    weight = dequantize_4bit(self.weight, self.quant_state).to(dtype)  # (out, in), rebuilt at every call
    bias = None if self.bias is None else self.bias.to(dtype)
    return F.linear(x.to(dtype), weight, bias).to(x.dtype)


@dataclass
class BitsAndBytesConfig:
    """The 4-bit fields of transformers' BitsAndBytesConfig (what from_pretrained(quantization_config=...) takes)."""

    load_in_4bit: bool = True
    bnb_4bit_quant_type: str = "nf4"  # "nf4", or "int4": our uniform baseline
    bnb_4bit_use_double_quant: bool = False  # transformers' default; QLoRA uses True
    bnb_4bit_compute_dtype: Optional[torch.dtype] = None  # None: the input's dtype (float32 here)
    bnb_4bit_blocksize: int = 64  # fixed at 64 in transformers; a field here, for experiments
    llm_int8_skip_modules: Optional[list] = None  # module names kept in float (default: the task head)

    def __post_init__(self):
        if not self.load_in_4bit:
            raise ValueError("this BitsAndBytesConfig only loads in 4 bits: load_in_4bit must be True.")
        if self.bnb_4bit_quant_type not in QUANT_TYPES:
            raise ValueError(f"bnb_4bit_quant_type must be one of {QUANT_TYPES}, got {self.bnb_4bit_quant_type!r}.")


def replace_with_bnb_linear(model: nn.Module, quantization_config: BitsAndBytesConfig) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by a Linear4bit holding its weight in 4 bits, except the modules
    named in quantization_config.llm_int8_skip_modules (default ["head"]: a classifier's new head stays in float, as
    transformers keeps lm_head). Embeddings are not linear layers and stay as they are, as in bitsandbytes."""
    skip = quantization_config.llm_int8_skip_modules
    skip = ["head"] if skip is None else list(skip)
    c = quantization_config
    names = [name for name, module in model.named_modules()
             if type(module) is nn.Linear and not any(name == s or name.endswith("." + s) for s in skip)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear to quantise outside {skip}.")
    for name in names:
        replace_module(model, name, Linear4bit.from_linear(
            model.get_submodule(name), compute_dtype=c.bnb_4bit_compute_dtype, quant_type=c.bnb_4bit_quant_type,
            compress_statistics=c.bnb_4bit_use_double_quant, blocksize=c.bnb_4bit_blocksize))
    return model


def prepare_model_for_kbit_training(model: nn.Module) -> nn.Module:
    """HF PEFT's first step on a quantised model, the part that applies here: freeze every parameter (the 4-bit
    weights are buffers and cannot train anyway) and keep the float ones (LayerNorms, biases) in float32."""
    for param in model.parameters():
        param.requires_grad_(False)
        if param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    return model


def storage_bytes(module: nn.Module) -> int:
    """Bytes of memory that `module`'s parameters and buffers occupy, each storage counted once (the code tables
    that every layer shares are one tensor)."""
    storages = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())
