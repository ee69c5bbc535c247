"""Photorealistic smoothing after the network, shared by every engine whose card has the
`photo_radius` option (stclient.options.photo_smoothing): He et al.'s guided filter
(backend/optim/guided_filter.py) fits, in every window, the stylized result as an affine function
of the content's colours, so the result keeps the content's edges and loses the network's
texture noise and halos (Li et al. 2018's fast alternative to Deep Photo's matting Laplacian).

Radii of 8 and more use He & Sun's fast guided filter with subsampling s = radius // 4 (the
ratio they recommend): the coefficients are fitted at 1/s of the size, which is s² times less
work. Measured on the example photos (a photo guiding a style image's texture, the hardest
input) against the exact filter at 1024²: a mean difference of 1.3 levels (of 255) at radius 8
for 3.6x less time, 1.9 levels at radius 16 for 17x (2 busy CPU cores; bench/bench_photo.py
and bench/results/photo-cpu-2026-12-03.md for the step in a job). Radii below 8 are exact.

The guide is the content in colour (He et al. 2013 describe grey and colour guides): a colour
guide keeps edges between colours of equal brightness (red on green) that a grey guide would
smooth across, at about twice the cost. Each of the result's channels is filtered with it. The
Runtime calls `smooth` after the engine, so no engine has code for it, and with the radius at 0
nothing is computed (the result is bit-identical to the engine's).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch

from backend.engines.base import to_numpy, to_tensor
from backend.optim.guided_filter import guided_filter
from stclient.options import PHOTO_RADIUS

PHOTO_EPS = "photo_eps"


def wanted(options: dict[str, Any]) -> bool:
    """The job's options ask for smoothing (the card has the option and the radius is > 0)."""
    return int(options.get(PHOTO_RADIUS) or 0) > 0


def smooth(content: np.ndarray, stylized: np.ndarray, options: dict[str, Any],
           device: torch.device,
           progress: Optional[Callable[[float], None]] = None) -> np.ndarray:
    """`stylized` (H x W x 3 float 0..1) smoothed with `content` (the same size) as the guide,
    clipped to 0..1; unchanged when the radius is 0. `progress(fraction)` after each strip (it
    may raise Cancelled)."""
    if not wanted(options):
        return stylized
    radius = int(options[PHOTO_RADIUS])
    result = guided_filter(to_tensor(content, device), to_tensor(stylized, device), radius,
                           float(options[PHOTO_EPS]), progress=progress,
                           subsample=subsampling(radius))
    return to_numpy(result)


def subsampling(radius: int) -> int:
    """The fast guided filter's factor for `radius` (1: exact): He & Sun's s = r / 4."""
    return max(1, radius // 4)
