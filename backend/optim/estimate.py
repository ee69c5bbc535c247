"""How long a run will take, said before it starts: measured on this device at small sizes and
scaled by pixels.

An iteration costs a + b·pixels seconds (a: Python and optimiser overhead; b: the VGG forward and
backward passes, linear in the pixels); each scale adds a set-up proportional to its pixels
(content and style features, the matting Laplacian in photo mode). `measure_speed` fits a and b
from timed runs at two small sides with the same options (a few seconds in all); the engine can
keep the profile per device and options and call `estimate_seconds` for every request.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from backend.optim.gatys import plan_scales, run_gatys
from backend.optim.options import OptimizeOptions


@dataclass(frozen=True)
class SpeedProfile:
    per_iteration: float            # a: seconds per iteration, whatever the size
    per_pixel_iteration: float      # b: seconds per pixel and iteration
    setup_per_pixel: float          # seconds per pixel for each scale's set-up (one style)
    sides: tuple[int, ...]          # the square sides it was measured at

    def iteration_seconds(self, pixels: int) -> float:
        return self.per_iteration + self.per_pixel_iteration * pixels


def measure_speed(encoder: nn.Sequential, options: OptimizeOptions,
                  sides: Sequence[int] = (64, 128), iterations: int = 4) -> SpeedProfile:
    """Time `iterations` iterations of run_gatys at each of two square `sides` (one style, one
    scale, the given optimiser and photo setting) and fit the profile."""
    if len(sides) != 2 or iterations < 2:
        raise ValueError("measure at two sides with at least two iterations")
    device = next(encoder.parameters()).device
    per_iteration, setup = [], []
    for side in sides:
        gen = torch.Generator().manual_seed(side)
        content = torch.rand(1, 3, side, side, generator=gen).to(device)
        style = torch.rand(1, 3, side, side, generator=gen).to(device)
        trial = options.replace(size=side, scales=1, iterations=iterations, intermediate_every=0)
        stamps: list[float] = []
        start = time.perf_counter()
        run_gatys(content, [style], trial, encoder,
                  progress=lambda _: stamps.append(time.perf_counter()))
        # the median interval: a busy machine's stalls do not move it
        step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
        per_iteration.append(step)
        setup.append(max(0.0, stamps[0] - start - step) / (side * side))
    return fit_profile(tuple(sides), (per_iteration[0], per_iteration[1]), setup[1])


def fit_profile(sides: tuple[int, ...], per_iteration: tuple[float, float],
                setup_per_pixel: float) -> SpeedProfile:
    """The line a + b·pixels through the larger (less noisy) measurement with the two-point
    slope; when noise makes that slope meaningless (<= 0, or steeper than all-of-it-scales) the
    whole time is taken to scale with the pixels, which errs on the long side."""
    small, large = (side * side for side in sides)
    slope = (per_iteration[1] - per_iteration[0]) / (large - small)
    proportional = per_iteration[1] / large
    if not 0 < slope < proportional:
        slope = proportional
    return SpeedProfile(per_iteration[1] - slope * large, slope, setup_per_pixel, sides)


def estimate_seconds(profile: SpeedProfile, content_shape: tuple[int, int],
                     options: OptimizeOptions, styles: int = 1) -> float:
    """Seconds a run_gatys call with these options will take for a content of this (H, W), over
    all scales. The set-up grows with the number of styles (their features are computed too)."""
    total = 0.0
    for step in plan_scales(content_shape, options):
        pixels = step.shape[0] * step.shape[1]
        total += step.iterations * profile.iteration_seconds(pixels)
        total += profile.setup_per_pixel * pixels * (1 + max(1, styles)) / 2
    return total
