"""Networks with the released layouts and the test checkpoints' weights, plus a smooth test image
and the comparison measures the performance tests use."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from backend.networks.adain import RELU4_1
from backend.networks.checkpoints import load_network
from tests.helpers.checkpoints import make_adain_files, make_cyclegan_file, make_pix2pix_file


def adain_networks(directory: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    vgg_path, decoder_path = make_adain_files(directory)
    _, vgg = load_network("adain", "vgg", vgg_path)
    _, decoder = load_network("adain", "decoder", decoder_path)
    return vgg[:RELU4_1 + 1].eval(), decoder.eval()


def cyclegan_network(directory: Path, n_blocks: int = 9) -> torch.nn.Module:
    path = make_cyclegan_file(directory / "cyclegan.pth", n_blocks=n_blocks)
    return load_network("cyclegan", "generator", path)[1].eval()


def pix2pix_network(directory: Path, arch: str = "unet_256") -> torch.nn.Module:
    path = make_pix2pix_file(directory / f"{arch}.pth", arch=arch)
    return load_network("pix2pix", "generator", path)[1].eval()


def smooth_image(size: int, seed: int = 0, width: int | None = None) -> torch.Tensor:
    """1 x 3 x H x W in 0..1: gradients, waves and a few edges (photo-like statistics)."""
    width = width or size
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, width),
                            indexing="ij")
    phases = torch.rand(3, generator=gen) * 6
    channels = [0.5 + 0.35 * torch.sin(5 * xx + 3 * yy + phases[0]),
                0.5 + 0.35 * torch.cos(7 * xx * yy + phases[1]),
                ((xx > 0.4) ^ (yy > 0.6)).float() * 0.5 + 0.25 * torch.sin(20 * xx + phases[2])]
    image = torch.stack(channels)[None].clamp(0, 1)
    return image + 0.02 * torch.randn(image.shape, generator=gen)


def levels(a: torch.Tensor, b: torch.Tensor, span: float = 1.0) -> float:
    """Largest difference in 8-bit levels for images whose value range is `span`."""
    return float((a.float() - b.float()).abs().max()) * 255.0 / span


def psnr(a: torch.Tensor, b: torch.Tensor, span: float = 1.0) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(span * span / mse)
