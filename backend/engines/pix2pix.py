"""pix2pix engine: one U-Net generator (unet_256 / unet_128), paired image-to-image translation.

BatchNorm statistics: 'image' (the image's own, as the reference test, which runs in train mode)
or 'running' (the stored training statistics). The stored statistics are never modified. Dropout
stays off (deterministic output) unless `seed` >= 0 asks for the reference's stochastic variation;
a given seed always gives the same image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backend.engines.generator import GeneratorEngine
from backend.networks.pix2pix import UnetGenerator


class Pix2PixEngine(GeneratorEngine):
    def multiple(self, network: nn.Module) -> int:
        return int(network.multiple)  # 256 or 128: every level halves the sides

    def prepare(self, network: UnetGenerator, options: dict[str, Any]) -> None:
        network.set_norm_mode(options["norm"])
        network.set_dropout(int(options["seed"]) >= 0)

    def forward(self, network: UnetGenerator, x: torch.Tensor,
                options: dict[str, Any]) -> torch.Tensor:
        seed = int(options["seed"])
        if seed < 0:
            return network(x)
        device = x.device
        devices = [device.index or 0] if device.type in ("cuda", "mps") else []
        with torch.random.fork_rng(devices=devices, device_type=device.type
                                   if device.type in ("cuda", "mps") else "cuda"):
            torch.manual_seed(seed)
            return network(x)


ENGINE = Pix2PixEngine
