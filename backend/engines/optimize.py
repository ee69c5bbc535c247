"""Optimisation engine (Gatys et al. 2016/2017; with `photo`, Luan et al. 2017): the work is
backend.optim.run_gatys on AdaIN's normalised VGG. Styles: several blended by weight; with a mask
style 1 goes inside it and style 2 (or, with one style, the content's own look) outside, through
region-guided Gram matrices. Progress reports the iteration and the current loss; cancellation
is honoured at every iteration.

The Runtime runs engines in inference mode; this one needs gradients with respect to the image,
so it computes inside `torch.inference_mode(False)` with gradients enabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from backend.engines.adain import style_rgb
from backend.engines.base import Engine, EngineContext, mask_tensor, resize, to_numpy, to_tensor
from backend.engines.job import StylizeJob
from backend.networks.checkpoints import load_network
from backend.optim import OptimizeOptions, StyleSpec, run_gatys
from backend.optim.gatys import Progress
from stclient.registry import style_weights

ENCODER_MODULES = 44          # through relu5_1 (module 43): all the layers the losses read


class OptimizeEngine(Engine):
    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> torch.nn.Sequential:
        _, vgg = load_network(self.name, "vgg", paths["vgg"], archs.get("vgg"))
        encoder = vgg[:ENCODER_MODULES].to(device).eval()
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
        return encoder

    def stylize(self, model: torch.nn.Sequential, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        height, width = rgb.shape[:2]
        device = next(model.parameters()).device
        with torch.inference_mode(False), torch.enable_grad():
            content = to_tensor(rgb, device)
            styles = [to_tensor(style_rgb(style), device) for style in job.styles]
            specs = self._specs(styles, job, options, content)
            settings = optimize_options(options)
            settings.validate()

            def progress(step: Progress) -> None:
                ctx.step(step.fraction, f"iteration {step.iteration} of {step.total}, loss "
                                        f"{step.loss:.4g}")

            result = run_gatys(content, specs, settings, model, progress=progress,
                               cancelled=ctx.cancelled)
            result = resize(result.detach().clamp(0, 1), (height, width))
        return to_numpy(result)

    @staticmethod
    def _specs(styles: list[torch.Tensor], job: StylizeJob, options: dict[str, Any],
               content: torch.Tensor) -> list[StyleSpec]:
        if job.mask is None:
            weights = style_weights(options, len(styles))
            total = sum(weights)
            return [StyleSpec(style, weight=w / total) for style, w in zip(styles, weights)]
        mask = mask_tensor(job.mask, tuple(content.shape[-2:]), content.device)
        outside = styles[1] if len(styles) > 1 else content   # one style: the content's own look
        return [StyleSpec(styles[0], region=mask), StyleSpec(outside, region=1 - mask)]


def optimize_options(options: dict[str, Any]) -> OptimizeOptions:
    """The card's options as backend.optim's OptimizeOptions."""
    color = "none"
    if options["preserve_color"]:
        color = options["color_method"]
    return OptimizeOptions(
        size=int(options["size"]), iterations=int(options["iterations"]),
        scales=int(options["scales"]), coarse_iterations=int(options["coarse_iterations"]),
        optimizer=options["optimizer"], content_weight=float(options["content_weight"]),
        style_weight=float(options["style_weight"]), tv_weight=float(options["tv_weight"]),
        color=color, histogram_method=options["histogram_method"],
        photo=bool(options["photo"]), photo_weight=float(options["photo_weight"]))


ENGINE = OptimizeEngine
