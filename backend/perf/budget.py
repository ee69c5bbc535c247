"""How much memory one network call may use on a device, and how much a call would need.

The budget defaults to a share of what is free now (CUDA: torch.cuda.mem_get_info; CPU:
MemAvailable from /proc/meminfo, psutil is not a dependency) and can be fixed with
$STYLE_TRANSFER_MEMORY_BUDGET ("1.5G", "800M", "123456789") or per Runtime. The need of a call
comes from the network's own shapes: one forward pass on the `meta` device (no memory, no
arithmetic) records every layer's output size while tracking which tensors stay alive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

from stclient import settings
from torch import nn

from . import shapes

BUDGET_ENV = settings.ENV["memory_budget"]
CPU_SHARE = 0.6        # of MemAvailable: other processes (GIMP) live on the same RAM
CUDA_SHARE = 0.8       # of free device memory: cuDNN workspaces and the allocator's slack
# Peak / (largest live input+output) measured for these networks: oneDNN reorders NCHW tensors
# to blocked copies on CPU; cuDNN workspaces on CUDA.
WORKSPACE_FACTOR = {"cpu": 2.0, "cuda": 1.5}

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    """'1.5G' -> 1610612736; plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 800M or 2G)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_cpu_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30   # no /proc: assume a modest machine


@dataclass
class MemoryBudget:
    """Bytes one network call may use on `device`; `fixed` None means derived from free memory."""

    device: torch.device
    fixed: Optional[int] = None

    @classmethod
    def for_device(cls, device: torch.device | str, fixed: int | str | None = None
                   ) -> "MemoryBudget":
        if fixed is None and settings.current().memory_budget:
            fixed = settings.current().memory_budget
        if isinstance(fixed, str):
            fixed = parse_bytes(fixed)
        return cls(torch.device(device), fixed)

    def bytes(self) -> int:
        if self.fixed is not None:
            return int(self.fixed)
        if self.device.type == "cuda" and torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info(self.device)
            return int(free * CUDA_SHARE)
        return int(available_cpu_bytes() * CPU_SHARE)


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


@dataclass
class ActivationEstimate:
    """Peak bytes of live activations for one call, and the largest single tensor."""

    peak: int
    largest: int

    def with_workspace(self, device: torch.device) -> int:
        return int(self.peak * WORKSPACE_FACTOR.get(device.type, 2.0))


def estimate_activations(network: nn.Module, input_shape: tuple[int, ...],
                         dtype: torch.dtype = torch.float32) -> ActivationEstimate:
    """The live activation bytes of network(x): from the layers' geometry (perf/shapes.py)
    where it describes the network, else from a run on meta tensors (shapes only).

    A module that is not a plain Sequential may hold its input while its children run (residual
    and skip blocks do), so its input counts as live until it returns.
    """
    calls = shapes.walk(network, input_shape)
    if calls is not None:                    # the layers' geometry: no meta pass needed
        size = torch.empty(0, dtype=dtype).element_size()
        peak = largest = 0
        for call in calls:
            out = shapes.nbytes(call.output_shape, size)
            largest = max(largest, out)
            peak = max(peak, sum(shapes.nbytes(held, size) for held in call.held)
                       + shapes.nbytes(call.input_shape, size) + out)
        return ActivationEstimate(peak, largest)
    held: list[int] = []
    state = {"peak": 0, "largest": 0}

    def pre(module, args):
        if module._perf_holds:                     # type: ignore[attr-defined]
            held.append(_nbytes(args))

    def post(module, args, output):
        if module._perf_holds:                     # type: ignore[attr-defined]
            held.pop()
        if module._perf_leaf:                      # type: ignore[attr-defined]
            size = _nbytes(output)
            state["largest"] = max(state["largest"], size)
            state["peak"] = max(state["peak"], sum(held) + _nbytes(args) + size)

    handles = []
    for module in network.modules():
        children = len(module._modules) > 0
        module._perf_leaf = not children          # type: ignore[attr-defined]
        module._perf_holds = children and not isinstance(module, nn.Sequential) \
            and module is not network             # type: ignore[attr-defined]
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    shapes.meta_pass(network, input_shape, handles, dtype)
    return ActivationEstimate(state["peak"], state["largest"])


# ----------------------------------------------------------------------------- out of memory

def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or an allocator's 'out of memory' / 'can't allocate' error."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return "out of memory" in text or "can't allocate memory" in text \
            or "failed to allocate" in text
    return False


def release_cached(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
