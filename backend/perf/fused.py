"""Run a conditional-norm network's steps (backend/networks/conv_steps.py) with the fused native
layer kernel (kernels/fused_conv.cpp) on the CPU.

Why: in these 3-32-channel networks memory traffic, not arithmetic, was the cost: PyTorch's pad,
conv, var_mean, scale/shift, ReLU and upsample each stream a whole tensor (a 1024² multistyle26
pass: 5 s, 2/3 of it outside the convolutions). Here a layer's raw output is written once and
its norm + activation are applied by the next layer as it reads its input rows; only a residual
block's input is materialised (its sum needs it), and the last layer's activation at the end.

`install(network)` (called by backend.perf.optimize for a network that has `conv_steps`) puts a
`FusedForward` on the instance: calls it can run (float32 CPU input, no autograd, the library
loaded, steps the kernel supports) go through the kernel; every other call runs the network's
own forward. Results equal the plain forward within float32 rounding (other summation order;
tests/unit/test_cin_network.py holds it to 1e-4 of onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from backend.networks.conv_steps import ConvStep, ResidualSteps, Step

from . import native
from .budget import ActivationEstimate

BY_PIXEL_CHANNELS = (3, 4, 8)        # output widths of the by-pixel kernel (stride 1)
VECTOR = 16                          # the by-channel kernel's width
_ACT = {"none": 0, "relu": 1, "sigmoid": 2}
_EMPTY = torch.empty(0)


@dataclass(frozen=True)
class Lazy:
    """A layer's value as act(raw * scale + shift) + residual, not yet computed."""

    raw: torch.Tensor
    scale: torch.Tensor = _EMPTY
    shift: torch.Tensor = _EMPTY
    activation: str = "none"
    residual: torch.Tensor = _EMPTY


def _flat(steps: Sequence[Step]) -> list[ConvStep]:
    out: list[ConvStep] = []
    for step in steps:
        out.extend(step.steps if isinstance(step, ResidualSteps) else (step,))
    return out


def supports(steps: Sequence[Step], shape: tuple[int, ...]) -> bool:
    """Whether the kernel computes these steps for an input of `shape` (N, C, H, W)."""
    if len(shape) != 4:
        return False
    channels, height, width = shape[1], shape[2], shape[3]
    for step in _flat(steps):
        k_out, k_in, kh, kw = step.weight.shape
        if k_in != channels or kh != kw or kh % 2 == 0 or step.stride not in (1, 2) \
                or step.upsample not in (1, 2) or step.weight.dtype != torch.float32:
            return False
        if k_out % VECTOR and not (k_out in BY_PIXEL_CHANNELS and step.stride == 1):
            return False
        if kh // 2 >= min(height * step.upsample, width * step.upsample):
            return False
        height, width = step.output_size(height, width)
        channels = k_out
    return True


class BufferPool:
    """Intermediate tensors reused from call to call: a fresh tensor's pages are faulted in and
    zeroed by the kernel on first touch, which measured ~3x the cost of writing them (128 MB:
    +0.3 s on the loaded 2-core machine). Holds at most `limit` bytes (a 1024² multistyle26
    pass needs ~220 MB); larger sets are allocated per call as before."""

    def __init__(self, limit: int = 256 << 20) -> None:
        self.limit = limit
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.held = 0

    def take(self, shape: tuple[int, ...], channels_last: bool) -> torch.Tensor:
        key = (shape, channels_last)
        if self.free.get(key):
            tensor = self.free[key].pop()
            self.held -= tensor.numel() * 4
            return tensor
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(shape, memory_format=layout)

    def give(self, tensor: torch.Tensor) -> None:
        size = tensor.numel() * 4
        if self.held + size > self.limit:
            return
        key = (tuple(tensor.shape), not tensor.is_contiguous())
        self.free.setdefault(key, []).append(tensor)
        self.held += size


def _out_shape(value: torch.Tensor, step: ConvStep) -> tuple[tuple[int, ...], bool]:
    """The raw output's shape and whether it is channels_last (the by-channel kernel's)."""
    k_out = int(step.weight.shape[0])
    shape = (value.shape[0], k_out, *step.output_size(value.shape[2], value.shape[3]))
    return shape, k_out % VECTOR == 0


StepObserver = Callable[[ConvStep, torch.Tensor], None]


def activation_bytes(steps: Sequence[Step], shape: tuple[int, ...]) -> ActivationEstimate:
    """An upper bound of the live float32 activations of `run_steps` on an input of `shape`,
    from the steps' geometry alone (no shape pass): per step its input and raw output, and
    inside a residual block the block's input and the previous block's pending sum."""
    batch, channels, height, width = shape
    current = batch * channels * height * width
    peak = largest = current
    for step in steps:
        parts = step.steps if isinstance(step, ResidualSteps) else (step,)
        held = 2 * current if isinstance(step, ResidualSteps) else 0
        for part in parts:
            height, width = part.output_size(height, width)
            produced = batch * int(part.weight.shape[0]) * height * width
            peak = max(peak, held + current + produced)
            largest = max(largest, produced)
            current = produced
    return ActivationEstimate(4 * peak, 4 * largest)


class Runner:
    """One pass of the steps; intermediates come from and go back to `pool`. `observe` is told
    each step's raw output as soon as the kernel returns it (progress, by measured cost)."""

    def __init__(self, ops: Any, pool: BufferPool, observe: Optional[StepObserver] = None
                 ) -> None:
        self.ops = ops
        self.pool = pool
        self.observe = observe
        self.owned: set[int] = set()          # ids of tensors taken from the pool

    def _take(self, shape: tuple[int, ...], channels_last: bool) -> torch.Tensor:
        tensor = self.pool.take(shape, channels_last)
        self.owned.add(id(tensor))
        return tensor

    def _done(self, tensor: torch.Tensor) -> None:
        if id(tensor) in self.owned:
            self.owned.discard(id(tensor))
            self.pool.give(tensor)

    def conv(self, value: Lazy, step: ConvStep, keep_input: bool = False) -> Lazy:
        """`keep_input`: value.raw is still needed afterwards (a residual block's input)."""
        if value.activation == "sigmoid":        # rows are prepared with ReLU or nothing
            value = Lazy(self.materialise(value))
        norm = step.gamma is not None
        raw, scale, shift = self.ops.fused_conv(
            value.raw, value.scale, value.shift, value.activation == "relu", value.residual,
            step.weight.detach(), step.stride, step.upsample,
            step.gamma.detach().float().contiguous() if norm else _EMPTY,
            step.beta.detach().float().contiguous() if norm else _EMPTY,
            step.bias.detach().float().contiguous() if step.bias is not None else _EMPTY,
            float(step.eps), self._take(*_out_shape(value.raw, step)))
        if self.observe is not None:
            self.observe(step, raw)
        if not keep_input:
            self._done(value.raw)
        return Lazy(raw, scale, shift, step.activation)

    def materialise(self, value: Lazy, final: bool = False) -> torch.Tensor:
        """The value as a tensor (the input itself where nothing is pending); `final`: a
        fresh tensor for the caller, never a pooled one."""
        if not value.scale.numel() and value.activation == "none" \
                and not value.residual.numel():
            return value.raw
        buffer = _EMPTY if final else self._take(tuple(value.raw.shape),
                                                 not value.raw.is_contiguous())
        out = self.ops.fused_apply(value.raw, value.scale, value.shift,
                                   _ACT[value.activation], value.residual, buffer)
        self._done(value.raw)
        return out

    def run(self, steps: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
        value = Lazy(x.contiguous() if not x.is_contiguous(memory_format=torch.channels_last)
                     else x)
        for step in steps:
            if isinstance(step, ResidualSteps):
                keep = self.materialise(value)
                if value.residual.numel():
                    self._done(value.residual)    # the previous block's input, summed in
                inner = Lazy(keep)
                for index, part in enumerate(step.steps):
                    inner = self.conv(inner, part, keep_input=index == 0)
                if inner.activation != "none":
                    inner = Lazy(self.materialise(inner))
                value = Lazy(inner.raw, inner.scale, inner.shift, "none", keep)
            else:
                pending = value.residual
                value = self.conv(value, step)
                if pending.numel():
                    self._done(pending)           # a residual sum was read by that conv
        out = self.materialise(value, final=True)
        if value.residual.numel():
            self._done(value.residual)
        if id(out) in self.owned:                 # (steps ending in a plain residual sum)
            out = out.clone()
        return out.contiguous()


def run_steps(ops: Any, steps: Sequence[Step], x: torch.Tensor,
              pool: Optional[BufferPool] = None, observe: Optional[StepObserver] = None
              ) -> torch.Tensor:
    """The steps on x (N x C x H x W float32, CPU) with the native kernel; NCHW result."""
    return Runner(ops, pool or BufferPool(0), observe).run(steps, x)


class FusedForward:
    """The network's forward through `run_steps` where it can, else the network's own.

    `observers` (backend.engines.progress.Tracker, while a pass is tracked) hear of a fused
    pass's steps before it starts (`begin_steps(steps, input_shape)`) and of each step's raw
    output (`after_step(step, output)`): the fused pass calls no convolution module, so no
    forward hook would see it."""

    def __init__(self, network: nn.Module, eager: Callable[..., torch.Tensor]) -> None:
        self.network = network
        self.eager = eager
        self.pool = BufferPool()
        self.calls = {"fused": 0, "eager": 0}
        self.observers: list[Any] = []

    def steps_for(self, x: Any, args: tuple, kwargs: dict) -> Optional[list[Step]]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.dtype != torch.float32:
            return None
        if native.cpu_ops_for(x) is None:
            return None
        steps = self.network.conv_steps(*args, **kwargs)
        if steps is None or not supports(steps, tuple(x.shape)):
            return None
        return steps

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        # with autograd on, the network's own forward (the kernel has no backward)
        steps = None if torch.is_grad_enabled() else self.steps_for(x, args, kwargs)
        if steps is None:
            self.calls["eager"] += 1
            return self.eager(x, *args, **kwargs)
        self.calls["fused"] += 1
        observers = list(self.observers)
        for observer in observers:
            observer.begin_steps(steps, tuple(x.shape))

        def observe(step: ConvStep, output: torch.Tensor) -> None:
            for observer in observers:
                observer.after_step(step, output)
        return run_steps(native.cpu_ops_for(x), steps, x, self.pool,
                         observe if observers else None)


def applies(network: nn.Module) -> bool:
    return callable(getattr(network, "conv_steps", None))


def install(network: nn.Module) -> int:
    """Put a FusedForward on `network` (once); returns 1 when installed. Float32 in every
    precision: the fused kernel is faster than the runtimes' bf16 on these networks (bench/
    results/peers-cpu-*.md), so "fast" has nothing to trade here."""
    if not applies(network) or isinstance(network.__dict__.get("forward"), FusedForward):
        return 0
    network.forward = FusedForward(network, network.forward)  # type: ignore[method-assign]
    # where progress finds it once the memory guard has wrapped the forward (`observers`)
    network._perf_fused = network.forward  # type: ignore[attr-defined]
    native.kernel(native.CPU_LIBRARY)              # loads it, or starts its one-off build
    return 1
