"""Pixel conversions between what front ends hand over (numpy H x W x C; uint8, uint16 or float32;
grey, grey+alpha, RGB, RGBA) and what engines compute on (H x W x 3 float32 RGB in 0..1), in one
low module: the Runtime, the engines and the front ends all use these.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from backend.imageio import check_pixels, to_uint16, to_uint8
from stclient.errors import BAD_IMAGE, BAD_REQUEST, StyleTransferError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601 (what Pillow's "L" uses)


def to_float_rgb(pixels: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """H x W x C (C 1..4; uint8/uint16/float) -> (H x W x 3 float32 0..1, alpha H x W x 1 or None).

    Grey is repeated into three channels; alpha is split off untouched."""
    pixels = check_pixels(pixels)
    channels = pixels.shape[2]
    colour_count = 1 if channels in (1, 2) else 3
    alpha = pixels[:, :, colour_count:] if channels in (2, 4) else None
    colour = pixels[:, :, :colour_count]
    if pixels.dtype == np.uint8:
        rgb = colour.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        rgb = colour.astype(np.float32) / 65535.0
    else:
        rgb = np.clip(np.nan_to_num(colour.astype(np.float32), nan=0.0), 0.0, 1.0)
    if colour_count == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb), (None if alpha is None else alpha.copy())


def from_float_rgb(rgb: np.ndarray, like: np.ndarray,
                   alpha: Optional[np.ndarray], color_output: bool = False) -> np.ndarray:
    """Back to `like`'s channel count and dtype (grey via Rec. 601 luma), rounding to nearest,
    with the original alpha appended unchanged. `color_output`: a grey `like` gets RGB (+ its
    alpha) instead, so the colour a style brings is not thrown away."""
    like = check_pixels(like)
    grey = like.shape[2] in (1, 2) and not color_output
    colour = (rgb @ LUMA)[:, :, None] if grey else rgb
    colour = np.clip(colour, 0.0, 1.0).astype(np.float32)
    if like.dtype == np.uint8:
        colour = to_uint8(colour)
    elif like.dtype == np.uint16:
        colour = to_uint16(colour)
    else:
        colour = colour.astype(like.dtype)
    if alpha is not None:
        colour = np.concatenate([colour, alpha.astype(colour.dtype)], axis=2)
    return np.ascontiguousarray(colour)


def mask_to_float(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A mask (H x W or H x W x 1; bool, uint8, uint16 or float 0..1) as H x W float32 0..1."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] in (1, 2):  # grey (+ alpha: ignored)
        mask = mask[:, :, 0]
    elif mask.ndim == 3 and mask.shape[2] in (3, 4):
        mask = mask[:, :, :3].astype(np.float32) @ LUMA
    if mask.ndim != 2:
        raise StyleTransferError(BAD_REQUEST, f"The mask must be H x W, not shape {mask.shape}.")
    if mask.shape != (height, width):
        raise StyleTransferError(
            BAD_REQUEST, f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{width}x{height}; they must have the same size.")
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    if mask.dtype == np.uint16:
        return mask.astype(np.float32) / 65535.0
    return np.clip(np.nan_to_num(mask.astype(np.float32), nan=0.0), 0.0, 1.0)


def checked_pixels(pixels: Any, what: str = "The image") -> np.ndarray:
    if not isinstance(pixels, np.ndarray):
        raise StyleTransferError(BAD_IMAGE, f"{what} must be a numpy array of pixels.")
    pixels = check_pixels(pixels)
    if pixels.dtype.kind == "f" and pixels.dtype != np.float32:
        pixels = pixels.astype(np.float32)
    return pixels
