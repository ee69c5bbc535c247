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
        height, width = height * step.upsample, width * step.upsample
        if kh // 2 >= min(height, width):
            return False
        height = (height + 2 * (kh // 2) - kh) // step.stride + 1
        width = (width + 2 * (kh // 2) - kw) // step.stride + 1
        channels = k_out
    return True


def _conv(ops: Any, value: Lazy, step: ConvStep) -> Lazy:
    if value.activation == "sigmoid":            # rows are prepared with ReLU or nothing
        value = Lazy(_materialise(ops, value))
    norm = step.gamma is not None
    raw, scale, shift = ops.fused_conv(
        value.raw, value.scale, value.shift, value.activation == "relu", value.residual,
        step.weight.detach(), step.stride, step.upsample,
        step.gamma.detach().float().contiguous() if norm else _EMPTY,
        step.beta.detach().float().contiguous() if norm else _EMPTY,
        step.bias.detach().float().contiguous() if step.bias is not None else _EMPTY,
        float(step.eps))
    return Lazy(raw, scale, shift, step.activation)


def _materialise(ops: Any, value: Lazy) -> torch.Tensor:
    if not value.scale.numel() and value.activation == "none" and not value.residual.numel():
        return value.raw
    return ops.fused_apply(value.raw, value.scale, value.shift, _ACT[value.activation],
                           value.residual)


def run_steps(ops: Any, steps: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
    """The steps on x (N x C x H x W float32, CPU) with the native kernel; NCHW result."""
    value = Lazy(x.contiguous() if not x.is_contiguous(memory_format=torch.channels_last)
                 else x)
    for step in steps:
        if isinstance(step, ResidualSteps):
            keep = _materialise(ops, value)
            inner = Lazy(keep)
            for part in step.steps:
                inner = _conv(ops, inner, part)
            if inner.activation != "none":
                inner = Lazy(_materialise(ops, inner))
            value = Lazy(inner.raw, inner.scale, inner.shift, "none", keep)
        else:
            value = _conv(ops, value, step)
    return _materialise(ops, value).contiguous()


class FusedForward:
    """The network's forward through `run_steps` where it can, else the network's own."""

    def __init__(self, network: nn.Module, eager: Callable[..., torch.Tensor]) -> None:
        self.network = network
        self.eager = eager
        self.calls = {"fused": 0, "eager": 0}

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
        return run_steps(native.cpu_ops_for(x), steps, x)


def applies(network: nn.Module) -> bool:
    return callable(getattr(network, "conv_steps", None))


def install(network: nn.Module) -> int:
    """Put a FusedForward on `network` (once); returns 1 when installed. Float32 in every
    precision: the fused kernel is faster than the runtimes' bf16 on these networks (bench/
    results/peers-cpu-*.md), so "fast" has nothing to trade here."""
    if not applies(network) or isinstance(network.__dict__.get("forward"), FusedForward):
        return 0
    network.forward = FusedForward(network, network.forward)  # type: ignore[method-assign]
    native.kernel(native.CPU_LIBRARY)              # loads it, or starts its one-off build
    return 1
