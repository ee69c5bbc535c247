"""Seeded procedural colour textures: MIXGAN's style domain for the starter model.

Each patch has a random palette of saturated colours laid out by one of several patterns (cells,
stripes, blobs, dots, checks) plus fine grain. Patterns have sharp edges between colour regions,
so a small patch discriminator accepts "one colour here, another there" — exactly what a glyph
recoloured in this style looks like locally.

Patch ``i`` of a set with seed ``s`` depends only on (s, i, size).
"""

from __future__ import annotations

import colorsys
from typing import Callable

import numpy as np
from PIL import Image

Pattern = Callable[[np.random.Generator, int], np.ndarray]  # -> H x W float "colour index" map


def random_palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` distinct, saturated colours (count x 3, 0..1) spread around the hue circle."""
    base = rng.uniform(0.0, 1.0)
    hues = (base + np.arange(count) / count + rng.uniform(-0.08, 0.08, count)) % 1.0
    rng.shuffle(hues)
    colours = [colorsys.hsv_to_rgb(h, rng.uniform(0.65, 1.0), rng.uniform(0.55, 1.0))
               for h in hues]
    return np.asarray(colours, dtype=np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.arange(size, dtype=np.float32) / size
    return np.meshgrid(axis, axis, indexing="xy")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in 0..1: a random cells x cells grid scaled up bicubically."""
    small = Image.fromarray(rng.uniform(0, 255, (cells, cells)).astype(np.uint8))
    big = small.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32) / 255.0


def _cells(rng: np.random.Generator, size: int) -> np.ndarray:
    count = int(rng.integers(4, 24))
    points = rng.uniform(0, 1, (count, 2)).astype(np.float32)
    x, y = _grid(size)
    distance = (x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2
    return np.argmin(distance, axis=-1).astype(np.float32)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(2.0, 9.0)
    wobble = rng.uniform(0.0, 0.25) * _smooth_noise(rng, size, 4)
    phase = (np.cos(angle) * x + np.sin(angle) * y + wobble) * frequency
    return np.floor(phase % 3.0)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = _smooth_noise(rng, size, int(rng.integers(3, 8)))
    levels = np.quantile(noise, [1 / 3, 2 / 3])
    return np.digitize(noise, levels).astype(np.float32)


def _dots(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    spacing = rng.uniform(0.12, 0.3)
    radius = spacing * rng.uniform(0.2, 0.45)
    shift = rng.uniform(0, spacing, 2)
    row = np.floor((y + shift[1]) / spacing)
    fx = (x + shift[0] + 0.5 * spacing * (row % 2)) % spacing - spacing / 2
    fy = (y + shift[1]) % spacing - spacing / 2
    inside = fx ** 2 + fy ** 2 < radius ** 2
    return np.where(inside, 1 + (row % 2), 0).astype(np.float32)


def _checks(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    angle = rng.uniform(0, np.pi / 2)
    u = np.cos(angle) * x + np.sin(angle) * y
    v = -np.sin(angle) * x + np.cos(angle) * y
    squares = rng.uniform(2.5, 8.0)
    return ((np.floor(u * squares) + np.floor(v * squares)) % 2).astype(np.float32)


PATTERNS: dict[str, Pattern] = {
    "cells": _cells, "stripes": _stripes, "blobs": _blobs, "dots": _dots, "checks": _checks,
}


def render_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """One texture patch: size x size x 3 uint8."""
    name = sorted(PATTERNS)[int(rng.integers(len(PATTERNS)))]
    index_map = PATTERNS[name](rng, size).astype(np.int64)
    palette = random_palette(rng, int(rng.integers(2, 5)))
    image = palette[index_map % len(palette)]
    shading = 0.85 + 0.3 * _smooth_noise(rng, size, int(rng.integers(2, 6)))[..., None]
    grain = rng.normal(0.0, rng.uniform(0.0, 0.06), (size, size, 1)).astype(np.float32)
    image = np.clip(image * shading + grain, 0.0, 1.0)
    return np.round(image * 255.0).astype(np.uint8)


def render_textures(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """`count` texture patches: N x size x size x 3 uint8."""
    patches = np.empty((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        patches[index] = render_texture(np.random.default_rng([seed, index]), size)
    return patches
