"""Speed and scale: fast inference transforms (fast.py), memory budgets (budget.py), tiled
execution that keeps whole-image statistics (tiling.py), the out-of-memory guard (guard.py) and
a FLOP counter (flops.py).

`prepare(model, engine, device)` is what the Runtime calls once per loaded model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .budget import MemoryBudget
from .fast import FastOptions, optimize, plain_requested
from .guard import guard, guard_of
from .tiling import TileStats

__all__ = ["FastOptions", "MemoryBudget", "TileStats", "guard", "guard_of", "optimize",
           "plain_requested", "prepare", "networks_of"]


def networks_of(model: Any) -> dict[str, nn.Module]:
    """The nn.Modules a loaded model is made of (a network itself, or attributes of a holder
    such as AdaIN's encoder + decoder)."""
    if isinstance(model, nn.Module):
        return {"": model}
    return {name: value for name, value in vars(model).items() if isinstance(value, nn.Module)}


# Engines whose networks the transforms and the tiler were written and tested for. MIXGAN gets
# the transforms only (identical pixels; 1.0x at 512-1024² on the CPU, where the 16-channel
# starter is memory-bound: bench/results/perf-cpu-*.md); its generator returns two images and is
# not memory-guarded.
PREPARED_ENGINES = ("adain", "cyclegan", "pix2pix")
OPTIMIZED_ONLY_ENGINES = ("mixgan",)


def prepare(model: Any, engine: str, device: torch.device | str, fast: bool = True,
            budget: MemoryBudget | None = None, compile: bool | None = None) -> Any:
    """Optimize (unless `fast` is False or $STYLE_TRANSFER_PLAIN=1; `compile`: torch.compile,
    None = $STYLE_TRANSFER_COMPILE) and memory-guard every network of a loaded model, in place;
    returns the model."""
    if engine not in PREPARED_ENGINES + OPTIMIZED_ONLY_ENGINES:
        return model
    device = torch.device(device)
    plain = (not fast) or plain_requested()
    budget = budget or MemoryBudget.for_device(device)
    for network in networks_of(model).values():
        optimize(network, engine, device, plain=plain, compile=compile)
        if engine in PREPARED_ENGINES:
            guard(network, engine, device, budget)
    return model
