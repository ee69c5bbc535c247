"""MIXGAN engine: "this content in that style" for any image, and new images from the prior.

Stylize: the layer's luminance goes through the encoder E, the content decoder Gc and the
mixture decoder Gm; the result is Gm's RGB image at the layer's size. The `conv` architecture runs
at the image's own size (padded by reflection to a multiple of 16, at least 32, then cropped back);
the `paper` architecture only knows 64x64, so the layer is scaled to it and the result scaled
back. `working_size` scales the longest side first (a model trained on 32 px glyphs wants content
at about that scale).

Sample: `count` latent codes drawn from the prior (code i from numpy's generator seeded with
(seed, i): the same seed gives the same images on every device and for every count), decoded by
Gc and Gm. For the `conv` architecture `working_size` is the
side of the images (0 = the training size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from backend.engines.base import Engine, EngineContext
from backend.engines.job import CancelledFn, ProgressFn, StylizeJob, never_cancelled, no_progress
from backend.engines.progress import tracked
from backend.networks.mixgan import DOWNSCALE, MIN_SIDE, MixGAN, load_model
from stclient.errors import BAD_CHECKPOINT, BAD_REQUEST, Cancelled, StyleTransferError

SAMPLE_CHUNK = 16
TEXT = "encoding the content, mixing in the style"
LUMA = (0.299, 0.587, 0.114)   # Rec. 601, what Pillow's convert("L") uses


class MixganModel:
    """A loaded MIXGAN generator (E, Gc, Gm) on one device."""

    engine = "mixgan"

    def __init__(self, network: MixGAN, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.config = network.config
        self.arch = network.config.arch

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "MixganModel":
        try:
            network = load_model(path)
        except ValueError as error:
            raise StyleTransferError(BAD_CHECKPOINT, str(error)) from None
        for tensor in network.state_dict().values():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise StyleTransferError(BAD_CHECKPOINT,
                                         f"{Path(path).name} contains NaN or infinite weights.")
        return cls(network, device)

    # -- stylize -------------------------------------------------------------------------------

    def stylize(self, rgb: np.ndarray, options: dict[str, Any] | None = None,
                progress: ProgressFn = no_progress,
                cancelled: CancelledFn = never_cancelled) -> np.ndarray:
        """H x W x 3 float32 RGB in 0..1 -> the mixture, H x W x 3 float32 in 0..1."""
        options = options or {}
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise StyleTransferError(BAD_REQUEST, "MIXGAN needs an H x W x 3 RGB image.")
        height, width = rgb.shape[:2]
        grey = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)) @ torch.tensor(LUMA)
        x = (grey * 2.0 - 1.0)[None, None].to(self.device)
        x = self._to_network_size(x, int(options.get("working_size") or 0))
        network_size = x.shape[-2:]
        x, crop = self._pad(x)
        _check(cancelled)
        steps = _Steps(progress, cancelled)
        steps.step(0.02, TEXT)
        # E, Gc and Gm as one pass, the bar moved by each convolution's measured cost
        with torch.inference_mode(), tracked(self.network, steps, 0.02, 0.98, TEXT,
                                             tuple(x.shape)):
            _, mixture = self.network(x)
        mixture = mixture[..., crop[0]:crop[0] + network_size[0], crop[1]:crop[1] + network_size[1]]
        if tuple(mixture.shape[-2:]) != (height, width):
            mixture = F.interpolate(mixture, size=(height, width), mode="bicubic",
                                    align_corners=False)
        progress(1.0, "done")
        out = ((mixture[0].clamp(-1, 1) + 1.0) * 0.5).permute(1, 2, 0)
        return out.float().cpu().numpy()

    def _to_network_size(self, x: torch.Tensor, working_size: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.config.arch == "paper":
            size = (self.config.size, self.config.size)
        elif working_size and max(height, width) != working_size:
            scale = working_size / max(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
        else:
            return x
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False,
                             antialias=True).clamp(-1, 1)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad to sides the conv net takes; returns the padded image and where the input starts."""
        if self.config.arch == "paper":
            return x, (0, 0)
        height, width = x.shape[-2:]
        target_h = max(MIN_SIDE, -(-height // DOWNSCALE) * DOWNSCALE)
        target_w = max(MIN_SIDE, -(-width // DOWNSCALE) * DOWNSCALE)
        top, left = (target_h - height) // 2, (target_w - width) // 2
        bottom, right = target_h - height - top, target_w - width - left
        while (top, bottom, left, right) != (0, 0, 0, 0):
            # reflection cannot reach further than the image itself: repeat it for tiny images
            step = [min(p, s - 1) for p, s in ((left, x.shape[-1]), (right, x.shape[-1]),
                                               (top, x.shape[-2]), (bottom, x.shape[-2]))]
            if max(step) == 0:
                x = F.pad(x, (left, right, top, bottom), mode="replicate")
                break
            x = F.pad(x, tuple(step), mode="reflect")
            left, right, top, bottom = (p - s for p, s in zip((left, right, top, bottom), step))
        return x, ((target_h - height) // 2, (target_w - width) // 2)

    # -- sample --------------------------------------------------------------------------------

    def sample_size(self, working_size: int = 0) -> int:
        if self.config.arch == "paper" or not working_size:
            return self.config.size
        return max(MIN_SIDE, round(working_size / DOWNSCALE) * DOWNSCALE)

    def sample(self, count: int, seed: int = 0, options: dict[str, Any] | None = None,
               progress: ProgressFn = no_progress,
               cancelled: CancelledFn = never_cancelled) -> list[np.ndarray]:
        """`count` new images (H x W x 3 uint8) from the prior; the same seed gives the same
        images, and image i does not depend on `count`."""
        if count < 1:
            raise StyleTransferError(BAD_REQUEST, "Ask for at least one sample.")
        side = self.sample_size(int((options or {}).get("working_size") or 0))
        shape = self.config.latent_shape(side, side)
        z_all = torch.from_numpy(np.stack([
            np.random.default_rng([int(seed), index]).standard_normal(shape, dtype=np.float32)
            for index in range(count)]))
        images: list[np.ndarray] = []
        for start in range(0, count, SAMPLE_CHUNK):
            _check(cancelled)
            progress(start / count, f"sampling {start + 1}-{min(count, start + SAMPLE_CHUNK)} "
                                    f"of {count}")
            with torch.inference_mode():
                _, mixture = self.network.decode(z_all[start:start + SAMPLE_CHUNK].to(self.device))
            pixels = ((mixture.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
            images.extend(pixels.permute(0, 2, 3, 1).cpu().numpy())
        progress(1.0, "done")
        return images


def _check(cancelled: CancelledFn) -> None:
    if cancelled():
        raise Cancelled()


@dataclass(frozen=True)
class _Steps:
    """The progress and cancel callbacks as the `step` that backend.engines.progress calls."""

    progress: ProgressFn
    cancelled: CancelledFn

    def step(self, fraction: float, text: str) -> None:
        _check(self.cancelled)
        self.progress(fraction, text)


class MixganEngine(Engine):
    """The Runtime's view of MIXGAN: one generator file holding E, Gc and Gm."""

    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> MixganModel:
        path = Path(paths["generator"])
        if not path.is_file():
            from stclient.errors import MODEL_MISSING
            raise StyleTransferError(MODEL_MISSING, f"MIXGAN checkpoint not found: {path}")
        model = MixganModel.load(path, device)
        declared = archs.get("generator")
        if declared and declared != model.arch:
            raise StyleTransferError(
                BAD_CHECKPOINT, f"{path.name} is a MIXGAN '{model.arch}' checkpoint, but "
                                f"'{declared}' was declared for it.")
        return model

    def stylize(self, model: MixganModel, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        return model.stylize(rgb, options, progress=ctx.progress, cancelled=ctx.cancelled)

    def sample(self, model: MixganModel, count: int, seed: int, options: dict[str, Any],
               ctx: EngineContext) -> list[np.ndarray]:
        """New images from the prior (H x W x 3 uint8 each); see MixganModel.sample."""
        return model.sample(count, seed, options, progress=ctx.progress,
                            cancelled=ctx.cancelled)


ENGINE = MixganEngine
