"""Shared work of the image-to-image GAN engines (CycleGAN, pix2pix): one generator checkpoint,
RGB scaled to [-1, 1], padding to the network's side multiple, tanh output mapped back to 0..1.

The reference tests resize everything to 256x256; we run at the image's own size by default
(`working_size` scales the longest side first and the result back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import nn

from backend.engines.base import Engine, EngineContext, resize, to_numpy, to_tensor, \
    working_shape
from backend.engines.job import StylizeJob
from backend.engines.progress import tracked
from backend.networks.padding import crop, pad_to_multiple
from backend.networks.checkpoints import load_network
from backend.perf.fast import is_compiled


class GeneratorEngine(Engine):
    """An engine whose model is a single generator network (the card's role "generator")."""

    min_side = 8

    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> nn.Module:
        arch, network = load_network(self.name, "generator", paths["generator"],
                                     archs.get("generator"))
        network.arch = arch
        return network.to(device).eval()

    def multiple(self, network: nn.Module) -> int:
        return int(getattr(network, "multiple", 4))

    def prepare(self, network: nn.Module, options: dict[str, Any]) -> None:
        """Set per-job modes on the network (pix2pix: statistics, dropout)."""

    def forward(self, network: nn.Module, x: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        return network(x)

    def stylize(self, network: nn.Module, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        height, width = rgb.shape[:2]
        device = next(network.parameters()).device
        x = to_tensor(rgb, device)
        x = resize(x, working_shape(height, width, int(options["working_size"])))
        x, padding = pad_to_multiple(x * 2.0 - 1.0, self.multiple(network), self.min_side)
        self.prepare(network, options)
        ctx.step(0.0, "running the generator")
        if is_compiled(network):         # hooks would split the compiled graph at every layer
            y = self.forward(network, x, options)
        else:
            with tracked(network, ctx, 0.0, 0.98, "running the generator", tuple(x.shape)):
                y = self.forward(network, x, options)
        y = (crop(y, padding) + 1.0) / 2.0
        return to_numpy(resize(y.clamp(0, 1), (height, width)))


