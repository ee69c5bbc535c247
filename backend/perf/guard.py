"""Memory guard: a network call that would not fit the budget, or that runs out of memory, is
computed tiled instead (tiling.py) and gives the same image. Never a crash for size alone.

`guard(network, engine, device)` installs the guard on the network object itself (instance-level
`forward`, and `encode` for AdaIN's VGG), so engines keep calling their networks as before.
"""

from __future__ import annotations

import inspect
import logging
from typing import Callable, Optional

import torch
from torch import nn

from .budget import MemoryBudget, estimate_activations, is_out_of_memory, release_cached
from .tiling import NotLocal, TileStats, chain_geometry, run_chain_tiled, run_layerwise

log = logging.getLogger(__name__)


class MemoryGuard:
    """Decides per call: untiled, or tiled because of the budget, or tiled after an OOM."""

    def __init__(self, network: nn.Module, device: torch.device, budget: MemoryBudget,
                 max_side: int | None = None) -> None:
        self.network = network
        self.device = torch.device(device)
        self.budget = budget
        self.stats = TileStats()
        self.max_side = max_side          # cap on tile sides (tests force tiling with it)
        self.calls = {"untiled": 0, "tiled": 0, "oom_fallbacks": 0}
        self._estimates: dict[tuple, int] = {}

    def needs(self, key_module: nn.Module, shape: tuple[int, ...]) -> int:
        key = (id(key_module), tuple(shape))
        if key not in self._estimates:
            estimate = estimate_activations(key_module, shape)
            self._estimates[key] = estimate.with_workspace(self.device)
        return self._estimates[key]

    def call(self, x: torch.Tensor, need: int, untiled: Callable[[], torch.Tensor],
             tiled: Callable[[int, TileStats], torch.Tensor]) -> torch.Tensor:
        limit = self.budget.bytes()
        if self.max_side is not None or need > limit:
            self.stats.reset("", "forced" if self.max_side is not None else "budget")
            self.calls["tiled"] += 1
            return tiled(limit, self.stats)
        try:
            out = untiled()
            self.stats.reset("untiled", "")
            self.calls["untiled"] += 1
            return out
        except Exception as error:  # noqa: BLE001 - only OOM is handled; others re-raised
            if not is_out_of_memory(error):
                raise
        log.warning("out of memory for a %s input; retrying in tiles", tuple(x.shape))
        release_cached(self.device)
        self.calls["oom_fallbacks"] += 1
        self.calls["tiled"] += 1
        self.stats.reset("", "out_of_memory")
        # what did not fit untiled gets at most half of what is free now
        return tiled(max(1, self.budget.bytes() // 2), self.stats)


def guard(network: nn.Module, engine: str, device: torch.device | str,
          budget: MemoryBudget | None = None, max_side: int | None = None) -> nn.Module:
    """Install the memory guard on `network` (in place) and return it.

    - AdaIN's encoder (`encode(image, upto)`) and decoder are local chains: tiled with halos.
    - Everything else (CycleGAN, pix2pix, MIXGAN generators) runs layer by layer when needed.
    """
    device = torch.device(device)
    budget = budget or MemoryBudget.for_device(device)
    keeper = MemoryGuard(network, device, budget, max_side)
    network._perf_guard = keeper  # type: ignore[attr-defined]
    plain_forward = network.forward

    if hasattr(network, "encode") and isinstance(network, nn.Sequential):
        plain_encode = network.encode

        def encode(image: torch.Tensor, upto: Optional[int] = None, **kwargs) -> torch.Tensor:
            args = {} if upto is None else {"upto": upto}
            stop = upto if upto is not None else _default_upto(plain_encode)
            layers = list(network)[:stop + 1]
            sub = nn.Sequential(*layers)
            return keeper.call(image, keeper.needs(sub, tuple(image.shape)),
                               lambda: plain_encode(image, **args, **kwargs),
                               lambda limit, stats: _tiled_chain(layers, image, limit, stats,
                                                                 keeper.max_side))

        network.encode = encode  # type: ignore[method-assign]

    if isinstance(network, nn.Sequential) and _is_local(list(network)):
        layers = list(network)

        def run_guarded(x: torch.Tensor, step: Optional[Callable[[float], None]] = None
                        ) -> torch.Tensor:
            def untiled() -> torch.Tensor:
                out = x
                for index, layer in enumerate(layers):
                    out = layer(out)
                    if step is not None and isinstance(layer, nn.Conv2d):
                        step((index + 1) / len(layers))
                return out
            return keeper.call(x, keeper.needs(network, tuple(x.shape)), untiled,
                               lambda limit, stats: _tiled_chain(layers, x, limit, stats,
                                                                 keeper.max_side, step))
    else:
        def run_guarded(x: torch.Tensor, step: Optional[Callable[[float], None]] = None
                        ) -> torch.Tensor:
            def tiled(limit: int, stats: TileStats) -> torch.Tensor:
                stats.mode = "layerwise"
                return run_layerwise(network, x, limit, stats, keeper.max_side)
            return keeper.call(x, keeper.needs(network, tuple(x.shape)),
                               lambda: plain_forward(x), tiled)

    def forward(*args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) \
                and args[0].dim() == 4:
            return run_guarded(args[0])
        return plain_forward(*args, **kwargs)

    network.run_guarded = run_guarded  # type: ignore[attr-defined]
    network.forward = forward  # type: ignore[method-assign]
    return network


def _tiled_chain(layers: list[nn.Module], x: torch.Tensor, limit: int, stats: TileStats,
                 max_side: int | None, step: Optional[Callable[[float], None]] = None
                 ) -> torch.Tensor:
    stats.mode = "chain"
    return run_chain_tiled(layers, x, limit, stats, max_side=max_side, step=step)


def _is_local(layers: list[nn.Module]) -> bool:
    try:
        chain_geometry(layers)
        return True
    except NotLocal:
        return False


def _default_upto(encode: Callable) -> int:
    parameter = inspect.signature(encode).parameters.get("upto")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise TypeError("encode() needs an explicit upto")
    return int(parameter.default)


def guard_of(network: nn.Module) -> Optional[MemoryGuard]:
    return getattr(network, "_perf_guard", None)
