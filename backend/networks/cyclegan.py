"""CycleGAN ResNet generator (Zhu et al. 2017), keys and shapes equal to the released files.

`state_dict` keys: model.1 / model.4 / model.7 (convs), model.10..(10+n-1).conv_block.{1,5} (or
{1,6} when the blocks have dropout), then the two transposed convs and the final 7x7 conv.
InstanceNorm has affine=False and no running statistics, so it holds no keys.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NGF = 64


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + [pad, conv, IN, ReLU, (dropout), pad, conv, IN](x)."""

    def __init__(self, channels: int, dropout: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _instance_norm(channels),
            nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                   _instance_norm(channels)]
        self.conv_block = nn.Sequential(*layers)

    def walk_shapes(self, walker: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Its layers' shapes for backend.perf.shapes (x + block(x): the block's shape)."""
        return walker.run(self.conv_block, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        if torch.is_grad_enabled() or y is x:
            return x + y
        # inference: add into the block's fresh output (the same sum; no new 4-byte-per-value
        # tensor, whose first touch costs more than the addition on the CPU)
        return y.add_(x)


class ResnetGenerator(nn.Module):
    """RGB in [-1, 1] -> RGB in [-1, 1]; sides must be multiples of 4."""

    multiple = 4

    def __init__(self, n_blocks: int = 9, dropout: bool = False, ngf: int = NGF) -> None:
        super().__init__()
        self.n_blocks = n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _instance_norm(ngf), nn.ReLU()]
        for factor in (1, 2):  # two stride-2 downsamplings: 64->128->256
            c_in, c_out = ngf * factor, ngf * factor * 2
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _instance_norm(c_out),
                       nn.ReLU()]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for factor in (4, 2):  # two stride-2 upsamplings: 256->128->64
            c_in, c_out = ngf * factor, ngf * factor // 2
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                       _instance_norm(c_out), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def walk_shapes(self, walker: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        return walker.run(self.model, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# The layouts the CycleGAN card names (stclient/cards/cyclegan.py), by architecture name.
BUILDERS = {
    "resnet_9blocks": lambda: ResnetGenerator(9),
    "resnet_6blocks": lambda: ResnetGenerator(6),
    "resnet_9blocks_dropout": lambda: ResnetGenerator(9, dropout=True),
    "resnet_6blocks_dropout": lambda: ResnetGenerator(6, dropout=True),
}
