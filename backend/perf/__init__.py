"""Speed and scale: fast inference transforms (fast.py), memory budgets (budget.py), tiled
execution that keeps whole-image statistics (tiling.py), the out-of-memory guard (guard.py) and
a FLOP counter (flops.py).

`prepare(model, engine, device)` is what the Runtime calls once per loaded model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from stclient import registry

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


def prepare(model: Any, engine: str, device: torch.device | str, fast: bool = True,
            budget: MemoryBudget | None = None, compile: bool | None = None) -> Any:
    """Optimize (unless `fast` is False or $STYLE_TRANSFER_PLAIN=1; `compile`: torch.compile,
    None = $STYLE_TRANSFER_COMPILE) and memory-guard every network of a loaded model, in place,
    as the engine card's perf policy says; returns the model."""
    policy = registry.card(engine).perf
    if not policy.optimize and not policy.guard:
        return model
    device = torch.device(device)
    plain = (not fast) or plain_requested()
    budget = budget or MemoryBudget.for_device(device)
    for network in networks_of(model).values():
        if policy.optimize:
            optimize(network, engine, device, plain=plain, compile=compile)
        if policy.guard:
            guard(network, engine, device, budget)
    return model
