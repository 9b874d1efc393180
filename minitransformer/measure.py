"""What a method costs, measured on the real tensors: memory, FLOPs and operations, latency, bytes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_state_memory(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes held by the real parameter, gradient and optimizer-state tensors (call after a step).

    On CUDA the peak allocated memory is added, which also counts activations.
    """
    params = {id(p): p for p in model.parameters()}.values()
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    memory = {
        "parameters": tensor_bytes(params),
        "gradients": tensor_bytes(p.grad for p in params if p.grad is not None),
        "optimizer_state": tensor_bytes(state),
    }
    memory["total"] = sum(memory.values())
    if torch.cuda.is_available() and any(p.is_cuda for p in params):
        memory["cuda_peak_allocated"] = torch.cuda.max_memory_allocated()
    return memory


def activation_memory(model: nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of the activations one training forward pass keeps for the backward pass, on any device.

    autograd keeps, for each operation whose output needs a gradient, the tensors its backward will read; a
    saved-tensors hook (`torch.autograd.graph.saved_tensors_hooks`) sees each of them as it is saved. We count
    every distinct storage once, and leave out the model's own parameters (they are counted as parameters, not
    activations). A frozen layer that no trainable tensor sits below or inside saves nothing, which is where
    PEFT methods save activation memory; a layer the gradient must pass through to reach a trainable tensor
    below it saves its inputs even if its own weights are frozen.
    """
    import weakref

    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: list[weakref.ref] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(weakref.ref(t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
        # What the graph still holds when the forward pass ends: a tensor saved by a branch the loss does not use is
        # freed already, and its address may have been reused, so count only the live ones, each storage once.
        live = {}
        for ref in saved:
            t = ref()
            if t is not None and t.untyped_storage().data_ptr() not in own:
                live[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    del out
    return sum(live.values())


class CountOps(TorchFunctionMode):
    """Count the tensor operations a forward pass dispatches (reads like .shape are not operations)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += getattr(func, "__name__", "") != "__get__"
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def forward_cost(fn: Callable[[], object]) -> tuple[int, int]:
    """(FLOPs, tensor operations) of one call of `fn`: exact counts, unlike a clock, so two models that
    run the same computation give equal costs on any machine, and one that does more work gives more."""
    with FlopCounterMode(display=False) as flops, CountOps() as ops:
        fn()
    return flops.get_total_flops(), ops.n


def measure_latency(fn: Callable[[], object], min_run_time: float = 0.5, num_threads: Optional[int] = None) -> float:
    """Median seconds per call of `fn`, measured with torch.utils.benchmark (warm-up and sync included)."""
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


@dataclass
class LatencyComparison:
    seconds: dict[str, float]  # median seconds per call, over the rounds
    ratio: dict[str, float]  # median over the rounds of (this call's time / the first call's time in that round)


def compare_latency(calls: dict[str, Callable[[], object]], rounds: int = 20, min_run_time: float = 0.03,
                    num_threads: int = 1) -> LatencyComparison:
    """Time several calls against the first one (the baseline), in `rounds` interleaved rounds.

    A shared machine's speed drifts over seconds. Timing one model after the other lets a slow
    spell land on one of them only; in interleaved rounds every model of a round meets the same
    machine, so the ratio within a round cancels the drift, and the median over rounds drops the
    rounds a hiccup hit. One thread: on a 2-core laptop, 2 threads are the noisiest.
    Include a second copy of the baseline as a control: its ratio shows how far from 1.00 the
    noise alone goes.
    """
    if not calls or rounds < 1:
        raise ValueError(f"compare_latency needs at least one call and one round, got {len(calls)} call(s) and "
                         f"rounds={rounds}; pass {{'base': lambda: base(x), 'other': lambda: other(x)}} and rounds >= 1.")
    for fn in calls.values():  # warm up: the first calls of a model or of a new shape are slower
        measure_latency(fn, min_run_time=min_run_time, num_threads=num_threads)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            times[name].append(measure_latency(fn, min_run_time=min_run_time, num_threads=num_threads))
    baseline = times[next(iter(calls))]
    return LatencyComparison(
        seconds={name: statistics.median(ts) for name, ts in times.items()},
        ratio={name: statistics.median(t / b for t, b in zip(ts, baseline)) for name, ts in times.items()})


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
