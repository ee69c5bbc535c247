"""The Engine interface: what one model family provides to the Runtime.

The engine's card (stclient/cards/<name>.py) declares everything that is not maths: options,
checkpoint roles and architectures, style inputs, perf policy, GIMP arguments. The Runtime owns
what is the same for every engine (validating the job against the card, finding the checkpoint
files, the model cache, grey/alpha/dtype conversion, progress and cancellation) and calls an
engine for what differs:

    class MyEngine(Engine):
        def load(self, paths, device, archs) -> object:
            # paths: role -> checkpoint file; archs: role -> declared architecture or None.
            # Return the loaded model (any object; nn.Modules found on it are sized for the cache).
        def stylize(self, model, rgb, job, options, ctx) -> np.ndarray:
            # rgb: H x W x 3 float32 in 0..1 (content; grey already expanded, alpha removed).
            # options: resolved against the card's options.
            # Return H x W x 3 float32 in 0..1, same H and W. Call ctx.step(frac, text) between
            # network stages (it reports progress and raises Cancelled when asked to stop).
        # engines whose card has `sample`: def sample(self, model, count, seed, options, ctx)
        # cards with `estimates`: def estimate(self, model, shape, styles, mask, options, ctx)
        #     -> stclient.estimate.Estimate (seconds the stylize call would take)
        # cards with an `intermediate_option`: call ctx.intermediate(rgb, text) with the image
        #     so far (H x W x 3 float32, the content's size) when ctx.intermediate is set

    ENGINE = MyEngine          # in backend/engines/<card name>.py
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.engines.job import StylizeJob
from backend.perf import shapes
from stclient import registry
from stclient.card import EngineCard
from stclient.errors import Cancelled


@dataclass
class EngineContext:
    """What an engine may use while it runs: device, progress/cancellation, the style cache."""

    device: torch.device
    progress: Callable[[float, str], None]
    cancelled: Callable[[], bool]
    style_cache: Any = None          # backend.runtime.StyleCache (AdaIN style statistics)
    model_key: str = ""              # identifies the loaded model (for cache keys)
    stats: dict[str, int] = field(default_factory=dict)
    budget: Any = None               # backend.perf.MemoryBudget for engines that tile themselves
    # the image so far (H x W x 3 float32 0..1, the content's size) for a caller that wants it
    intermediate: Optional[Callable[[np.ndarray, str], None]] = None

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def step(self, fraction: float, text: str) -> None:
        """Between stages: stop if cancelled, else report progress (0..1 of the engine's work)."""
        self.check_cancelled()
        self.progress(min(max(float(fraction), 0.0), 1.0), text)


class Engine(ABC):
    """One model family. Instances are stateless; loaded models are returned by `load`."""

    def __init__(self, card: EngineCard) -> None:
        self.card = card

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def roles(self) -> tuple[str, ...]:
        return self.card.role_names

    @abstractmethod
    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> Any:
        """Load the checkpoint files of one model onto `device` (eval mode)."""

    @abstractmethod
    def stylize(self, model: Any, rgb: np.ndarray, job: StylizeJob, options: dict[str, Any],
                ctx: EngineContext) -> np.ndarray:
        """H x W x 3 float32 0..1 in, same size out."""

    def estimate(self, model: Any, shape: tuple[int, int], styles: int, mask: bool,
                 options: dict[str, Any], ctx: EngineContext) -> Any:
        """Seconds `stylize` would take for a content of this (H, W) (cards with `estimates`
        override this and return a stclient.estimate.Estimate)."""
        from stclient.errors import BAD_REQUEST, StyleTransferError
        raise StyleTransferError(BAD_REQUEST, f"The {self.card.title} engine cannot estimate "
                                              "its run time.")

    def validate(self, job: StylizeJob, options: dict[str, Any]) -> None:
        """Refuse a job this engine cannot run (before any model is loaded): the card's input
        rules, the same check the daemon, the CLI and the batch runner make."""
        registry.check_inputs(self.name, len(job.styles), job.mask is not None, options)

    def shape_passes(self, model: Any) -> bool:
        """Whether this model's jobs size and weigh their passes on meta tensors (progress,
        memory): then the Runtime pays PyTorch's one-off cost of the first meta pass (its shape
        machinery's imports, ~1 s) while loading. An engine that knows its pass's shapes
        without one says False, and a cold process skips that cost. By default: whether some
        network of the model is one that backend.perf.shapes cannot describe."""
        return not all(shapes.covers(module) for module in _modules_of(model))

    def model_bytes(self, model: Any) -> int:
        """Memory a loaded model holds (parameters and buffers of its nn.Modules)."""
        return sum(_module_bytes(module) for module in _modules_of(model))


def _modules_of(model: Any) -> list[nn.Module]:
    if isinstance(model, nn.Module):
        return [model]
    values = model.values() if isinstance(model, Mapping) else vars(model).values() \
        if hasattr(model, "__dict__") else []
    return [value for value in values if isinstance(value, nn.Module)]


def _module_bytes(module: nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------- tensors and sizes

def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """H x W x 3 float32 numpy -> 1 x 3 x H x W tensor on device."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None] \
        .to(device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W tensor -> H x W x 3 float32 numpy clipped to 0..1."""
    return tensor[0].clamp(0.0, 1.0).permute(1, 2, 0).float().cpu().numpy()


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """(h, w) with the longest side equal to `working_size` (0 = unchanged), aspect kept."""
    longest = max(height, width)
    if working_size <= 0 or working_size == longest:
        return height, width
    scale = working_size / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample N x C x H x W to `size`: antialiased bilinear when shrinking, bicubic when
    enlarging (then clamped back into the input's range)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] <= image.shape[-2] and size[1] <= image.shape[-1]
    if shrinking:
        return F.interpolate(image, size=size, mode="bilinear", antialias=True,
                             align_corners=False)
    low, high = image.amin(), image.amax()
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(low, high)


def mask_tensor(mask: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A job's H x W float mask as 1 x 1 x h x w on `device`, resized to the working size."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return resize(tensor[None, None].to(device), size).clamp(0, 1)
