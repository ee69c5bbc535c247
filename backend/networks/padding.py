"""Padding images to the side multiples a network needs, and cropping the result back.

Networks with stride-2 stages need sides that are multiples of 4 (CycleGAN), 8 (AdaIN) or
128/256 (pix2pix U-Nets). We pad by reflection, split evenly between the two sides so the image
stays centred, and crop back, so outputs always have the input's size. When the padding is wider
than the image (a 100 px image going to 256), reflection is applied repeatedly, which mirror-tiles
the image; a 1 px side is replicated. Small images therefore never fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Padding:
    """How much was added on each side (so the same can be applied to a mask and undone)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def is_zero(self) -> bool:
        return not (self.top or self.bottom or self.left or self.right)


def padded_side(side: int, multiple: int, minimum: int = 0) -> int:
    """Smallest multiple of `multiple` that is >= side and >= minimum."""
    target = max(side, minimum, 1)
    return -(-target // multiple) * multiple


def padding_for(height: int, width: int, multiple: int, minimum: int = 0) -> Padding:
    extra_h = padded_side(height, multiple, minimum) - height
    extra_w = padded_side(width, multiple, minimum) - width
    return Padding(extra_h // 2, extra_h - extra_h // 2, extra_w // 2, extra_w - extra_w // 2)


def reflect_pad(image: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Pad N x C x H x W by reflection, repeating the reflection when the pad is wider than the
    image (mirror tiling); a side of 1 pixel is replicated."""
    top, bottom, left, right = padding.top, padding.bottom, padding.left, padding.right
    x = image
    while top or bottom or left or right:
        height, width = x.shape[-2], x.shape[-1]
        if (height == 1 and (top or bottom)) or (width == 1 and (left or right)):
            step_h = (top, bottom) if height == 1 else (0, 0)
            step_w = (left, right) if width == 1 else (0, 0)
            x = F.pad(x, (*step_w, *step_h), mode="replicate")
            top, bottom = (0, 0) if height == 1 else (top, bottom)
            left, right = (0, 0) if width == 1 else (left, right)
            continue
        t, b = min(top, height - 1), min(bottom, height - 1)
        l, r = min(left, width - 1), min(right, width - 1)
        x = F.pad(x, (l, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


def pad_to_multiple(image: torch.Tensor, multiple: int,
                    minimum: int = 0) -> tuple[torch.Tensor, Padding]:
    padding = padding_for(image.shape[-2], image.shape[-1], multiple, minimum)
    return (image if padding.is_zero else reflect_pad(image, padding)), padding


def crop(image: torch.Tensor, padding: Padding, scale: int = 1) -> torch.Tensor:
    """Undo `padding` (optionally on a grid `scale` times finer than the one it was made for)."""
    if padding.is_zero:
        return image
    height, width = image.shape[-2], image.shape[-1]
    return image[..., padding.top * scale:height - padding.bottom * scale,
                 padding.left * scale:width - padding.right * scale]
