"""What every front end (CLI, daemon, batch runner) hands to the Runtime, and what it gets back.

Pixels are numpy arrays H x W x C with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) and
dtype uint8, uint16 or float32 (0..1). The Runtime converts to the network's RGB float input,
carries alpha through untouched and returns the same shape, channel count and dtype; only with
the `color_output` option does a grey content come back as RGB (+ alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

ProgressFn = Callable[[float, str], None]   # (fraction 0..1, short text)
CancelledFn = Callable[[], bool]            # True once the job should stop (raise Cancelled)
IntermediateFn = Callable[[np.ndarray, str], None]   # (the image so far, short text)


@dataclass
class StylizeJob:
    engine: str                                   # adain | cyclegan | pix2pix | mixgan
    content: np.ndarray                           # H x W x C
    model: Optional[str] = None                   # registry name; None = engine's default
    styles: list[np.ndarray] = field(default_factory=list)    # AdaIN style images
    mask: Optional[np.ndarray] = None             # H x W float32 0..1: where style 1 goes
    options: dict[str, Any] = field(default_factory=dict)     # see stclient.options
    checkpoints: dict[str, str] = field(default_factory=dict)  # explicit files, e.g. {"vgg": p}


@dataclass
class CheckedJob(StylizeJob):
    """A StylizeJob that has passed the checks, made only by the boundary that checked it
    (`backend.engines.checks.checked_job`, or the daemon after validating a request): pixels in
    a supported layout, the mask H x W float32 0..1 of the content's size, the options resolved
    with the card's defaults and ranges, the card's input rules met. The Runtime runs it as it
    is, so a job is validated once, where it enters."""


def no_progress(fraction: float, text: str) -> None:
    """Default progress callback."""


def never_cancelled() -> bool:
    return False
