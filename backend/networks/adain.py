"""AdaIN networks (Huang & Belongie 2017) laid out exactly as the released vgg_normalised.pth and
decoder.pth, plus the feature-statistics arithmetic that the engine builds on.

Both networks are `nn.Sequential`s whose child indices equal the released files' keys, so the
official files load with `strict=True`. The layer lists below are written as data (what each index
holds) so the key layout can be read off and checked against the release at a glance.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5            # added to the unbiased variance before the square root, as the reference
RELU4_1 = 30          # index of relu4_1 in the encoder: inference needs modules 0..30 only
STYLE_LAYERS = {"relu1_1": 3, "relu2_1": 10, "relu3_1": 17, "relu4_1": 30}

# Encoder stages: ("conv", in, out) = ReflectionPad2d(1) + Conv2d 3x3 + ReLU (3 modules);
# ("pool",) = MaxPool2d(2, 2, ceil_mode=True). Module 0 (the 1x1 colour conv) precedes them.
_VGG_STAGES: tuple[tuple, ...] = (
    ("conv", 3, 64), ("conv", 64, 64), ("pool",),
    ("conv", 64, 128), ("conv", 128, 128), ("pool",),
    ("conv", 128, 256), ("conv", 256, 256), ("conv", 256, 256), ("conv", 256, 256), ("pool",),
    ("conv", 256, 512), ("conv", 512, 512), ("conv", 512, 512), ("conv", 512, 512), ("pool",),
    ("conv", 512, 512), ("conv", 512, 512), ("conv", 512, 512), ("conv", 512, 512),
)

# Decoder stages: ("conv", in, out, relu?) = ReflectionPad2d(1) + Conv2d 3x3 (+ ReLU);
# ("up",) = nearest-neighbour x2 upsampling.
_DECODER_STAGES: tuple[tuple, ...] = (
    ("conv", 512, 256, True), ("up",),
    ("conv", 256, 256, True), ("conv", 256, 256, True), ("conv", 256, 256, True),
    ("conv", 256, 128, True), ("up",),
    ("conv", 128, 128, True), ("conv", 128, 64, True), ("up",),
    ("conv", 64, 64, True), ("conv", 64, 3, False),
)


def _conv3x3_stage(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    if relu:
        layers.append(nn.ReLU())
    return layers


class VggEncoder(nn.Sequential):
    """The 53-module normalised VGG-19 of the AdaIN release (RGB 0..1 in, features out)."""

    def __init__(self, *layers: Any) -> None:
        # Without arguments: the full released layout. With arguments (as nn.Sequential's slicing
        # passes them): those modules, so `vgg[:RELU4_1 + 1]` is an encoder up to relu4_1.
        if not layers:
            built: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
            for stage in _VGG_STAGES:
                if stage[0] == "pool":
                    built.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                else:
                    built.extend(_conv3x3_stage(stage[1], stage[2]))
            layers = tuple(built)
        super().__init__(*layers)

    def encode(self, image: torch.Tensor, upto: int = RELU4_1) -> torch.Tensor:
        """Features at module `upto` (default relu4_1), running only the modules needed. An
        optimised forward that can run the first N modules (`run_first`, the fused blocks of
        backend.perf) runs them."""
        run_first = getattr(self.__dict__.get("forward"), "run_first", None)
        if callable(run_first):
            return run_first(image, upto + 1)
        x = image
        for index in range(upto + 1):
            x = self[index](x)
        return x

    def encode_levels(self, image: torch.Tensor,
                      levels: Sequence[int] = tuple(STYLE_LAYERS.values())) -> list[torch.Tensor]:
        """Features at several module indices (used by the training loss)."""
        wanted = sorted(levels)
        results: dict[int, torch.Tensor] = {}
        x = image
        for index in range(wanted[-1] + 1):
            x = self[index](x)
            if index in wanted:
                results[index] = x
        return [results[i] for i in levels]


class AdaINDecoder(nn.Sequential):
    """The 29-module decoder of the AdaIN release (relu4_1 features in, RGB ~0..1 out)."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        for stage in _DECODER_STAGES:
            if stage[0] == "up":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers.extend(_conv3x3_stage(stage[1], stage[2], stage[3]))
        super().__init__(*layers)


# ---------------------------------------------------------------- feature statistics

def mean_std(features: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over H x W (unbiased variance + eps), shapes N x C x 1 x 1."""
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    if flat.shape[2] < 2:
        raise ValueError("feature maps need at least two positions for a standard deviation")
    mean = flat.mean(dim=2).reshape(n, c, 1, 1)
    std = (flat.var(dim=2, unbiased=True) + eps).sqrt().reshape(n, c, 1, 1)
    return mean, std


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Give `content` features the style's per-channel mean and std."""
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content)
    return (content - c_mean) / c_std * style_std + style_mean


def blend_styles(content: torch.Tensor,
                 style_stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 weights: Sequence[float]) -> torch.Tensor:
    """Σ wᵢ·AdaIN(content, styleᵢ) with the weights normalised to sum 1."""
    if len(style_stats) != len(weights):
        raise ValueError("one weight per style is needed")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must not all be zero")
    stats = mean_std(content)
    result = torch.zeros_like(content)
    for (s_mean, s_std), weight in zip(style_stats, weights):
        if weight == 0:
            continue
        result = result + (float(weight) / total) * adain(content, s_mean, s_std, stats)
    return result


def masked_styles(content: torch.Tensor,
                  inside: tuple[torch.Tensor, torch.Tensor],
                  outside: tuple[torch.Tensor, torch.Tensor] | None,
                  mask: torch.Tensor) -> torch.Tensor:
    """Style `inside` where mask is 1, `outside` (or the content itself if None) where it is 0.

    Content statistics come from the whole content image; in-between mask values blend the two
    targets linearly. `mask` is 1 x 1 x h x w on the feature grid.
    """
    stats = mean_std(content)
    first = adain(content, inside[0], inside[1], stats)
    second = content if outside is None else adain(content, outside[0], outside[1], stats)
    return mask * first + (1.0 - mask) * second


def mix_with_content(target: torch.Tensor, content: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·target + (1−α)·content: the style-strength control of the paper."""
    if alpha >= 1.0:
        return target
    return alpha * target + (1.0 - alpha) * content


# ---------------------------------------------------------------- colour preservation

def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive definite 3x3 matrix by SVD (as the reference)."""
    u, s, vh = torch.linalg.svd(matrix)
    return u @ torch.diag(s.sqrt()) @ vh


def _channel_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = image.reshape(3, -1).double()
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, keepdim=True, unbiased=True).clamp_min(1e-12)
    return flat, mean, std


def transfer_colour_statistics(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour `source` (3 x H x W) to the colour statistics of `target` (3 x h x w).

    The reference method: standardise each channel (unbiased std), C = XXᵀ + I per image (not
    divided by the pixel count), x' = √C_target · (√C_source)⁻¹ · x, then rescale by the target's
    std and shift by its mean. Not clamped, as the reference.
    """
    device = source.device  # the 3x3 algebra runs in float64 on the CPU (MPS has no float64)
    src, src_mean, src_std = _channel_stats(source.cpu())
    tgt, tgt_mean, tgt_std = _channel_stats(target.cpu())
    src_norm = (src - src_mean) / src_std
    tgt_norm = (tgt - tgt_mean) / tgt_std
    eye = torch.eye(3, dtype=torch.float64)
    cov_src = src_norm @ src_norm.T + eye
    cov_tgt = tgt_norm @ tgt_norm.T + eye
    mapped = _sqrtm_psd(cov_tgt) @ torch.linalg.inv(_sqrtm_psd(cov_src)) @ src_norm
    result = mapped * tgt_std + tgt_mean
    return result.to(device=device, dtype=source.dtype).reshape(source.shape)


# YIQ (NTSC) transform: luminance Y plus two chroma channels, used by luminance-only transfer.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float32)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W RGB -> YIQ."""
    matrix = _RGB_TO_YIQ.to(image.device, image.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    matrix = torch.linalg.inv(_RGB_TO_YIQ.double()).to(image.device, image.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, image)


def luminance_input(content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminance-only transfer, step 1: what the network sees (Y as three grey channels) and
    the content's chroma (I, Q) to put back with `with_chroma`."""
    yiq = rgb_to_yiq(content)
    return yiq[:, :1].expand(-1, 3, -1, -1), yiq[:, 1:]


def with_chroma(result: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Step 2: the result's luminance with the content's chroma (Gatys et al. 2017's colour
    control)."""
    return yiq_to_rgb(torch.cat([rgb_to_yiq(result)[:, :1], chroma], 1))


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and std (Gatys et al. 2017)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    c_mean, c_std = content_y.mean(), content_y.std()
    return (style_y - s_mean) / s_std * c_std + c_mean


def resize_mask_to(mask: torch.Tensor, size: tuple[int, int], hard: bool) -> torch.Tensor:
    """Mask (1 x 1 x H x W, 0..1) onto the feature grid: nearest + threshold (the original's
    binary behaviour) or area-averaged for a soft blend."""
    if hard:
        return (F.interpolate(mask, size=size, mode="nearest") >= 0.5).to(mask.dtype)
    return F.interpolate(mask, size=size, mode="area" if _shrinks(mask, size) else "bilinear",
                         **({} if _shrinks(mask, size) else {"align_corners": False})).clamp(0, 1)


def _shrinks(mask: torch.Tensor, size: tuple[int, int]) -> bool:
    return mask.shape[2] >= size[0] and mask.shape[3] >= size[1]


# The layouts the AdaIN card's roles name (stclient/cards/adain.py), by architecture name.
BUILDERS = {"vgg_normalised": VggEncoder, "adain_decoder": AdaINDecoder}
