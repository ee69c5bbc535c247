"""Colour Transfer engine: the content's colour mean and covariance become the style image's
(backend/optim/color.py: an affine map in lαβ or RGB), in a mask's region if one is given (GIMP:
the selection), blended by `alpha`; `keep_luminance` then puts the content's luminance back so
only the chroma changes. No network and no model: `load` has nothing to read."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from backend.engines.base import Engine, EngineContext
from backend.engines.job import StylizeJob
from backend.optim.color import color_transfer, combine_luminance, luminance
from backend.pixels import to_float_rgb


def _nchw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


class ColorTransferEngine(Engine):
    def load(self, paths, device, archs) -> None:
        return None                       # maths only (the card has no roles)

    def stylize(self, model: Any, rgb: np.ndarray, job: StylizeJob, options: dict[str, Any],
                ctx: EngineContext) -> np.ndarray:
        ctx.step(0.0, "matching colours")
        content = _nchw(rgb)
        style = _nchw(to_float_rgb(job.styles[0])[0])
        regions = () if job.mask is None else ((torch.from_numpy(
            np.ascontiguousarray(job.mask, dtype=np.float32))[None, None], None),)
        out = color_transfer(content, style, method=options["histogram_method"],
                             space=options["color_space"], regions=regions,
                             strength=float(options["alpha"]),
                             progress=lambda done: ctx.step(0.8 * done, "matching colours"))
        if options["keep_luminance"]:
            ctx.step(0.8, "keeping the luminance")
            out = combine_luminance(luminance(content), out)
        return out[0].permute(1, 2, 0).numpy()


ENGINE = ColorTransferEngine
