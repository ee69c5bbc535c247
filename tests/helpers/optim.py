"""A small VGG-layout encoder for the optimisation tests: AdaIN's normalised VGG-19 module layout
(same indices for relu1_1 ... relu5_1 and relu4_2 in modules [:44]) with few channels, random
weights rescaled like Gatys' normalised VGG (mean activation 1 per filter)."""

from __future__ import annotations

import torch
from torch import nn

from backend.optim.features import normalise_like_gatys

# channels per VGG block (64, 128, 256, 512, 512 in the real network)
SMALL_WIDTHS = (8, 12, 16, 24, 24)
_BLOCKS = (2, 2, 4, 4, 4)   # convs per block; the last block is cut after relu5_1 in use


def small_vgg(widths: tuple[int, ...] = SMALL_WIDTHS, seed: int = 0) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    channels = 3
    for block, (width, convs) in enumerate(zip(widths, _BLOCKS)):
        if block:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        for _ in range(convs):
            conv = nn.Conv2d(channels, width, 3)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen)
                                  * (2.0 / (9 * channels)) ** 0.5)
                conv.bias.copy_(torch.randn(width, generator=gen) * 0.05)
            layers += [nn.ReflectionPad2d(1), conv, nn.ReLU()]
            channels = width
    encoder = nn.Sequential(*layers).eval()
    # normalised on the kind of images the tests use, as Gatys normalised on natural images
    normalise_like_gatys(encoder, [pattern(kind, 48, seed=s) for kind in PATTERNS
                                   for s in range(3)])
    return encoder


PATTERNS = ("photo", "stripes", "dots")


def pattern(kind: str, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Test images: 'photo' (smooth shapes), 'stripes' (red/yellow diagonal stripes), 'dots'
    (blue/white blobs), 1 x 3 x size x size RGB 0..1."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    if kind == "photo":
        coarse = torch.rand(1, 3, 4, 4, generator=gen)
        smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                           align_corners=False)
        return (smooth * 0.7 + 0.15).clamp(0, 1)
    if kind == "stripes":
        wave = (torch.sin((xs + ys) * 0.9) > 0).float()
        return torch.stack([0.9 + 0 * wave, 0.2 + 0.7 * wave, 0.1 + 0 * wave])[None]
    if kind == "dots":
        wave = ((torch.sin(xs * 0.6) * torch.sin(ys * 0.6)) > 0.3).float()
        return torch.stack([0.1 + 0.8 * wave, 0.2 + 0.7 * wave, 0.9 + 0 * wave])[None]
    raise ValueError(kind)
