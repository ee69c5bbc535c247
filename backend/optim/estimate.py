"""How long a run will take, said before it starts: measured on this device at small sizes and
scaled by pixels.

An iteration costs a + b·pixels seconds (a: Python and optimiser overhead; b: the VGG forward and
backward passes, linear in the pixels); each scale adds a set-up proportional to its pixels
(content and style features, the matting Laplacian in photo mode). `measure_speed` fits a and b
from timed runs at two small sides with the same options (a few seconds in all). `ProfileStore`
keeps the profiles per key (device, torch, threads, optimiser, photo mode, model file), in memory
and in a JSON file under the cache folder, with a correction factor that each finished run moves
towards actual / predicted (the machine's load, a size's cache effects).
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

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
                  sides: Sequence[int] = (64, 128), iterations: int = 4,
                  cancelled: Optional[Callable[[], bool]] = None) -> SpeedProfile:
    """Time `iterations` iterations of run_gatys at each of two square `sides` (one style, one
    scale, the given optimiser and photo setting) and fit the profile."""
    if len(sides) != 2 or iterations < 2:
        raise ValueError("measure at two sides with at least two iterations")
    device = next(encoder.parameters()).device
    per_iteration, setup = [], []
    # untimed first: a process's first passes (kernel selection, allocator growth) took twice
    # as long as later ones and made the profile predict 3x the real run
    warm = torch.rand(1, 3, sides[0], sides[0], generator=torch.Generator().manual_seed(0))
    run_gatys(warm.to(device), [warm.flip(-1).to(device)],
              options.replace(size=sides[0], scales=1, iterations=2, intermediate_every=0),
              encoder, cancelled=cancelled)
    for side in sides:
        gen = torch.Generator().manual_seed(side)
        content = torch.rand(1, 3, side, side, generator=gen).to(device)
        style = torch.rand(1, 3, side, side, generator=gen).to(device)
        trial = options.replace(size=side, scales=1, iterations=iterations, intermediate_every=0)
        stamps: list[float] = []
        start = time.perf_counter()
        run_gatys(content, [style], trial, encoder,
                  progress=lambda _: stamps.append(time.perf_counter()), cancelled=cancelled)
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


MAX_AGE_S = 7 * 24 * 3600        # a profile older than this is measured again
CORRECTION_RANGE = (0.2, 5.0)    # how far finished runs may move an estimate from the profile


class ProfileStore:
    """Profiles by key, in memory and (when `path` is set) in a JSON file shared by processes:
    measured once per device and options, corrected by every finished run."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = path
        self._items: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[tuple[SpeedProfile, float]]:
        """(profile, correction factor), or None when there is none that is recent enough."""
        with self._lock:
            item = self._items.get(key) or self._read().get(key)
            if not item or time.time() - float(item.get("measured_at", 0)) > MAX_AGE_S:
                return None
            self._items[key] = item
            profile = item["profile"]
            return (SpeedProfile(float(profile["per_iteration"]),
                                 float(profile["per_pixel_iteration"]),
                                 float(profile["setup_per_pixel"]),
                                 tuple(int(s) for s in profile["sides"])),
                    float(item.get("correction", 1.0)))

    def put(self, key: str, profile: SpeedProfile) -> None:
        with self._lock:
            self._items[key] = {"profile": asdict(profile), "correction": 1.0,
                                "measured_at": time.time()}
            self._write(key)

    def record(self, key: str, predicted: float, actual: float) -> None:
        """A finished run: the correction moves halfway (geometrically) towards actual /
        predicted, so one unusual run does not take over."""
        if predicted <= 0 or actual <= 0:
            return
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return
            low, high = CORRECTION_RANGE
            old = float(item.get("correction", 1.0))
            item["correction"] = min(high, max(low, math.sqrt(old * old * actual / predicted)))
            self._write(key)

    def _read(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, key: str) -> None:
        """Merge this key into the file (temp file + rename: readers never see half of it); a
        cache that cannot be written only costs a measurement next time."""
        if self.path is None:
            return
        from backend.atomicfile import atomic_write
        now = time.time()
        data = {name: item for name, item in self._read().items()    # old ones go
                if isinstance(item, dict) and now - float(item.get("measured_at", 0)) < MAX_AGE_S}
        data[key] = self._items[key]
        try:
            atomic_write(self.path, lambda part: part.write_text(json.dumps(data, indent=1),
                                                                 encoding="utf-8"))
        except OSError:
            pass
