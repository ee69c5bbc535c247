"""pix2pix U-Net generator (Isola et al. 2017), keys and shapes equal to the released files.

The generator nests skip blocks: `model.model.{0..4}` is the outermost block, each block's
submodule sits at index 1 (outermost) or 3 (the others). Two behaviours of the reference are kept
because the released weights were trained with them:
- every non-outermost block starts with an in-place LeakyReLU, so its skip connection carries
  LeakyReLU(x), not x;
- BatchNorm normally uses the image's own statistics (the reference tests in train mode).
Dropout is only applied when a caller asks for stochastic output (`set_dropout(True)`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NGF = 64
UNET_DOWNS = {"unet_256": 8, "unet_128": 7}


class StatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose statistics source is switchable and whose stored buffers never change.

    `use_image_stats` True: normalise with this input's own batch statistics (biased variance),
    without touching running_mean/running_var. False: use the stored running statistics.
    It holds no num_batches_tracked buffer (released files may or may not have one; the loader
    strips it).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.register_buffer("num_batches_tracked", None)
        self.use_image_stats = True

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Files with and without num_batches_tracked load alike; BatchNorm's own hook would
        # re-insert the key for files saved without module versions, so bypass it.
        state_dict.pop(prefix + "num_batches_tracked", None)
        nn.Module._load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                                        missing_keys, unexpected_keys, error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_image_stats:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class UnetSkipBlock(nn.Module):
    """One level of the U-Net: down, submodule, up; non-outermost levels concatenate the skip."""

    def __init__(self, outer: int, inner: int, submodule: "UnetSkipBlock | None" = None,
                 in_channels: int | None = None, outermost: bool = False,
                 dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=False)
        if outermost:
            layers: list[nn.Module] = [
                down, submodule, nn.ReLU(),
                nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif submodule is None:  # innermost
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(),
                      nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=False),
                      StatsBatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2), down, StatsBatchNorm2d(inner), submodule, nn.ReLU(),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=False),
                      StatsBatchNorm2d(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def walk_shapes(self, walker: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Its layers' shapes for backend.perf.shapes, in forward's order."""
        if self.outermost:
            return walker.run(self.model, shape)
        skip = walker.run(self.model[0], shape)
        out = skip
        for layer in list(self.model)[1:]:
            out = walker.run(layer, out)
        return (out[0], skip[1] + out[1], *out[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        skip = self.model[0](x)  # LeakyReLU: the reference's in-place activation alters the skip
        out = skip
        for layer in list(self.model)[1:]:
            out = layer(out)
        return torch.cat([skip, out], 1)


class UnetGenerator(nn.Module):
    """RGB in [-1, 1] -> RGB in [-1, 1]; sides must be multiples of 2**num_downs."""

    def __init__(self, arch: str = "unet_256", dropout: bool = True, ngf: int = NGF) -> None:
        super().__init__()
        if arch not in UNET_DOWNS:
            raise ValueError(f"unknown U-Net architecture {arch!r}")
        downs = UNET_DOWNS[arch]
        self.arch = arch
        self.multiple = 2 ** downs
        block = UnetSkipBlock(ngf * 8, ngf * 8)
        for _ in range(downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, block, dropout=dropout)
        for outer in (4, 2, 1):
            block = UnetSkipBlock(ngf * outer, ngf * outer * 2, block)
        self.model = UnetSkipBlock(3, ngf, block, in_channels=3, outermost=True)
        self.set_dropout(False)

    def set_norm_mode(self, mode: str) -> None:
        """'image': BatchNorm uses this image's statistics; 'running': the stored ones."""
        if mode not in ("image", "running"):
            raise ValueError(f"norm mode must be 'image' or 'running', not {mode!r}")
        for module in self.modules():
            if isinstance(module, StatsBatchNorm2d):
                module.use_image_stats = mode == "image"

    def set_dropout(self, active: bool) -> None:
        """Dropout on (stochastic output, as the reference test) or off (deterministic)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.train(active)

    def walk_shapes(self, walker: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        return walker.run(self.model, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# The layouts the pix2pix card names (stclient/cards/pix2pix.py), by architecture name.
BUILDERS = {name: (lambda name=name: UnetGenerator(name)) for name in UNET_DOWNS}
