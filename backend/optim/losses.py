"""The loss terms of Gatys et al. (2016, 2017) and Luan et al. (2017) on VGG activations.

Style is a Gram matrix divided by the number of positions (H·W), compared by mean squared
difference; a guided Gram (Gatys et al. 2017) weights the positions by a region mask first and
divides by the mask's energy Σm² instead, so the plain Gram is the guided one with m = 1 and a
region's statistics do not depend on its area. Content is the mean squared difference of
activations. All terms are means, so their balance does not change with the image size.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

_MASK_FLOOR = 1e-8    # Σm² below this: the region is empty on this grid


def gram(features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """C x C Gram matrix of 1 x C x H x W features, divided by H·W (or by Σm² for a 1 x 1 x H x W
    mask on the same grid)."""
    channels = features.shape[1]
    flat = features.reshape(channels, -1)
    if mask is None:
        return flat @ flat.T / flat.shape[1]
    weights = mask.reshape(1, -1).to(flat.dtype)
    weighted = flat * weights
    energy = (weights * weights).sum().clamp_min(_MASK_FLOOR)
    return weighted @ weighted.T / energy


def style_loss(features: torch.Tensor, target: torch.Tensor,
               mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared difference between the (guided) Gram matrix of `features` and `target`."""
    return F.mse_loss(gram(features, mask), target)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features, target)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels (smooth, so L-BFGS handles it well)."""
    down = image[..., 1:, :] - image[..., :-1, :]
    right = image[..., :, 1:] - image[..., :, :-1]
    return down.pow(2).mean() + right.pow(2).mean()


def mask_to_grid(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 1 x 1 x H x W mask (0..1) on another grid: area averages when shrinking (a feature
    position is as much inside a region as its pixels are), bilinear when enlarging."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(mask, size).clamp(0, 1)
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
