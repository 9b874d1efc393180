"""Chapter 12 against bitsandbytes itself, byte for byte, where bitsandbytes installs and runs on this machine's CPU
(it is not a requirement of the course; the test skips itself otherwise).

* NF4: our 16 levels are bitsandbytes' table; quantize_4bit(quant_type="nf4", blocksize=64) gives the same packed
  bytes (first element in the high nibble) and the same float32 absmax;
* double quantisation (compress_statistics=True): the same offset, the same nested absmax and the same 8-bit dynamic
  code. The 8-bit codes of the scales agree except where bitsandbytes' CPU kernel, whose search of the 256-level code
  is approximate, picks a neighbour of the nearest level: there the two differ by one index and ours is the nearer;
* bitsandbytes' dequantize_4bit of OUR bytes and state equals our dequantize_4bit, bit for bit, and ours of its
  bytes and state equals its own.
"""

import pytest
import torch

bnb_functional = pytest.importorskip("bitsandbytes.functional")

from solutions.qlora import QuantState, create_dynamic_map, create_normal_map, dequantize_4bit, quantize_4bit  # noqa: E402

SHAPES = [(128, 128), (512, 128), (37, 64), (3, 5)]


def _bnb_quantize(A, double_quant):
    try:
        return bnb_functional.quantize_4bit(A, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
    except Exception as error:  # no CPU kernels in this build, or a library it cannot load
        pytest.skip(f"bitsandbytes cannot quantise on this CPU: {type(error).__name__}: {error}")


def _as_ours(state) -> QuantState:
    nested = None if state.state2 is None else QuantState(state.state2.absmax, state.absmax.shape, state.state2.code,
                                                          state.state2.blocksize, torch.float32, "dynamic")
    return QuantState(state.absmax, state.shape, state.code, state.blocksize, state.dtype, "nf4", state.offset, nested)


def _as_bnb(state: QuantState):
    nested = None if state.state2 is None else bnb_functional.QuantState(
        absmax=state.state2.absmax, code=state.state2.code, blocksize=state.state2.blocksize, dtype=torch.float32)
    return bnb_functional.QuantState(absmax=state.absmax, shape=state.shape, dtype=state.dtype,
                                     blocksize=state.blocksize, code=state.code, quant_type="nf4",
                                     offset=state.offset, state2=nested)


def test_the_codes_are_bitsandbytes():
    assert torch.equal(create_normal_map(), bnb_functional.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(create_dynamic_map(), bnb_functional.create_dynamic_map(signed=True))


@pytest.mark.parametrize("shape", SHAPES)
def test_nf4_bytes_and_absmax_are_bitsandbytes(shape):
    A = 0.02 * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    theirs, their_state = _bnb_quantize(A, False)
    ours, our_state = quantize_4bit(A, blocksize=64, compress_statistics=False)
    assert torch.equal(theirs.reshape(-1), ours), "packed bytes differ"
    assert torch.equal(their_state.absmax, our_state.absmax), "absmax differs"
    assert torch.equal(bnb_functional.dequantize_4bit(ours.reshape(-1, 1), _as_bnb(our_state)),
                       dequantize_4bit(ours, our_state))
    assert torch.equal(dequantize_4bit(theirs, _as_ours(their_state)),
                       bnb_functional.dequantize_4bit(theirs, their_state))


@pytest.mark.parametrize("shape", SHAPES)
def test_double_quantisation_is_bitsandbytes(shape):
    A = 0.02 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    theirs, their_state = _bnb_quantize(A, True)
    ours, our_state = quantize_4bit(A, blocksize=64, compress_statistics=True)
    assert torch.equal(theirs.reshape(-1), ours), "packed bytes differ"
    assert torch.equal(their_state.offset, our_state.offset), "the offset (mean of the scales) differs"
    assert torch.equal(their_state.state2.absmax, our_state.state2.absmax), "the nested absmax differs"
    assert torch.equal(their_state.state2.code, our_state.state2.code), "the 8-bit code differs"
    nested_scale = our_state.state2.absmax.repeat_interleave(256)[: our_state.absmax.numel()]
    # Where a block of 256 scales is all equal (one scale, minus its own mean), its nested absmax is 0 and every code
    # decodes to 0: the choice of code does not matter there.
    different = (their_state.absmax != our_state.absmax) & (nested_scale > 0)
    if different.any():  # bitsandbytes' CPU search picked a neighbour of the nearest level
        assert (their_state.absmax[different].long() - our_state.absmax[different].long()).abs().max() == 1
        _, plain = bnb_functional.quantize_4bit(A, blocksize=64, compress_statistics=False, quant_type="nf4")
        target = (plain.absmax - our_state.offset)  # what the 8-bit codes stand for, before their nested scale
        nested = our_state.state2.absmax.repeat_interleave(256)[: target.numel()]
        code = our_state.state2.code
        ours_off = (code[our_state.absmax.long()] * nested - target).abs()
        theirs_off = (code[their_state.absmax.long()] * nested - target).abs()
        assert torch.all(ours_off <= theirs_off), "where the codes differ, ours must be the nearer level"
    assert different.float().mean() < 0.01 or different.sum() <= 1  # rare: a neighbour, not a habit
    assert torch.equal(bnb_functional.dequantize_4bit(ours.reshape(-1, 1), _as_bnb(our_state)),
                       dequantize_4bit(ours, our_state))
    assert torch.equal(dequantize_4bit(theirs, _as_ours(their_state)),
                       bnb_functional.dequantize_4bit(theirs, their_state))
