"""The 70x70 PatchGAN discriminator, the two GAN objectives and the N(0, 0.02) initialisation
of the CycleGAN/pix2pix recipes.

The discriminator's `state_dict` uses the reference's key layout (`model.<index>.*`), so its
checkpoints are interchangeable with reference-trained ones too.
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """'instance' (CycleGAN: no affine, no running stats) or 'batch' (pix2pix)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}")


class PatchDiscriminator(nn.Module):
    """n_layers=3 gives the 70x70 receptive field: C64 - C128 - C256 - C512(stride 1) - 1 logit
    map. The first layer has no norm; convs followed by a norm have a bias only for instance norm
    (batch norm's shift makes it redundant), as in the reference."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3,
                 norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=use_bias),
                       norm_layer(norm, out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(n_layers: int = 3) -> int:
    """Input pixels seen by one output logit (70 for n_layers=3): walk from the output back."""
    strides = [2] * n_layers + [1, 1]     # the convs from input to output, all 4x4
    field = 1
    for stride in reversed(strides):
        field = (field - 1) * stride + 4
    return field


def init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """The reference's 'normal' init: conv/linear weights N(0, gain), biases 0; batch-norm
    weights N(1, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, gain)
                nn.init.zeros_(m.bias)


class GANLoss(nn.Module):
    """'lsgan' (mean squared error to 1/0, CycleGAN) or 'vanilla' (BCE with logits, pix2pix),
    averaged over every patch logit."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode == "lsgan":
            self.loss = nn.MSELoss()
        elif mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        else:
            raise ValueError(f"unknown GAN mode {mode!r}")
        self.mode = mode

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)


def set_requires_grad(networks: list[nn.Module], flag: bool) -> None:
    """Freeze the discriminators while the generators step (saves their gradient work)."""
    for net in networks:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)
