"""Optimisation engine (Gatys et al. 2016/2017; with `photo`, Luan et al. 2017): the work is
backend.optim.run_gatys on AdaIN's normalised VGG. Styles: several blended by weight; with a mask
style 1 goes inside it and style 2 (or, with one style, the content's own look) outside, through
region-guided Gram matrices. Progress reports the iteration, the current loss and the time left;
cancellation is honoured at every iteration.

Run-time estimate (card `estimates`): a speed profile measured on this device with the job's
optimiser and photo setting (backend/optim/estimate.py, a few seconds, once: kept in memory and
in the cache folder), corrected by every finished run. A stylize call measures first unless the
job is shorter than the measurement, and says the estimate as its first progress text.
Intermediates (card `intermediate_option`): every `update_every` iterations the image so far,
at the content's size, goes to ctx.intermediate when the caller asked for it.

The Runtime runs engines in inference mode; this one needs gradients with respect to the image,
so it computes inside `torch.inference_mode(False)` with gradients enabled.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from backend.engines.adain import style_rgb
from backend.engines.base import Engine, EngineContext, mask_tensor, resize, to_numpy, to_tensor
from backend.engines.job import StylizeJob
from backend.networks.checkpoints import load_network
from backend.optim import OptimizeOptions, StyleSpec, run_gatys
from backend.optim.estimate import ProfileStore, estimate_seconds, measure_speed
from backend.optim.gatys import Progress, plan_scales
from stclient.estimate import Estimate, duration
from stclient.registry import style_weights

ENCODER_MODULES = 44          # through relu5_1 (module 43): all the layers the losses read
MEASURE_SIDES = (48, 96)      # the speed profile's two square sides ...
MEASURE_ITERATIONS = 3        # ... and iterations at each (4-25 s in all, the loaded 2-core CPU)
# a job with less work than this (pixel-iterations) is not worth a measurement before it runs
SHORT_JOB = 2 * MEASURE_ITERATIONS * sum(side * side for side in MEASURE_SIDES)
_STORES: dict[str, ProfileStore] = {}


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
            work = sum(step.iterations * step.shape[0] * step.shape[1]
                       for step in plan_scales((height, width), settings))
            key = _profile_key(model, ctx, settings)
            expected = _known_estimate(key, (height, width), settings, len(specs))
            if expected is None and work > SHORT_JOB:
                expected = self.estimate(model, (height, width), len(specs), False, options,
                                         ctx)
            if expected is not None:
                ctx.step(0.0, f"estimated time: {expected.text}")
            started = time.monotonic()

            def progress(step: Progress) -> None:
                elapsed = time.monotonic() - started
                left = ""
                if step.iteration >= 2 and 0 < step.fraction < 1:
                    left = f", {duration(elapsed / step.fraction * (1 - step.fraction))} left"
                ctx.step(step.fraction, f"iteration {step.iteration} of {step.total}, loss "
                                        f"{step.loss:.4g}{left}")

            every = int(options.get("update_every") or 0)
            on_intermediate = None
            if ctx.intermediate is not None and every > 0:
                settings = settings.replace(intermediate_every=every)

                def on_intermediate(image: torch.Tensor, step: Progress) -> None:
                    if step.iteration < step.total:        # the last one is the result itself
                        ctx.intermediate(to_numpy(resize(image.clamp(0, 1), (height, width))),
                                         f"iteration {step.iteration} of {step.total}")

            result = run_gatys(content, specs, settings, model, progress=progress,
                               cancelled=ctx.cancelled, on_intermediate=on_intermediate)
            result = resize(result.detach().clamp(0, 1), (height, width))
            if expected is not None:
                _store().record(key, expected.seconds, time.monotonic() - started)
        return to_numpy(result)

    def estimate(self, model: torch.nn.Sequential, shape: tuple[int, int], styles: int,
                 mask: bool, options: dict[str, Any], ctx: EngineContext) -> Estimate:
        """Seconds stylize will take for a content of `shape` with `styles` styles (a mask
        makes two targets: inside and outside); the first call per device and options
        measures."""
        styles = 2 if mask else max(1, styles)
        settings = optimize_options(options)
        settings.validate()
        key = _profile_key(model, ctx, settings)
        known = _known_estimate(key, shape, settings, styles)
        if known is not None:
            return known
        ctx.step(0.0, "measuring this computer's speed for the time estimate (once)")
        with torch.inference_mode(False), torch.enable_grad():
            profile = measure_speed(model, settings, MEASURE_SIDES, MEASURE_ITERATIONS,
                                    cancelled=ctx.cancelled)
        _store().put(key, profile)
        known = _known_estimate(key, shape, settings, styles)
        assert known is not None
        return known

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


def _store() -> ProfileStore:
    """The profiles of this cache folder (one store per folder: tests and flags move it)."""
    from backend.perf.native import cache_dir
    path = cache_dir().parent / "speed" / "optimize.json"
    return _STORES.setdefault(str(path), ProfileStore(path))


def _profile_key(model: torch.nn.Sequential, ctx: EngineContext,
                 settings: OptimizeOptions) -> str:
    """What an iteration's time depends on: the model file, device and its model, torch and
    its threads, the optimiser, the photo term."""
    device = next(model.parameters()).device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.machine()} {platform.processor()} x{os.cpu_count()}"
    photo = settings.photo and settings.photo_weight > 0
    return "|".join((ctx.model_key, str(device), name, f"torch {torch.__version__}",
                     f"threads {torch.get_num_threads()}", settings.optimizer,
                     f"history {settings.lbfgs_history}" if settings.optimizer == "lbfgs" else "",
                     "photo" if photo else "no photo"))


def _known_estimate(key: str, shape: tuple[int, int], settings: OptimizeOptions,
                    styles: int) -> Optional[Estimate]:
    found = _store().get(key)
    if found is None:
        return None
    profile, correction = found
    steps = plan_scales(shape, settings)
    seconds = correction * estimate_seconds(profile, shape, settings, styles)
    words = [f"{max(steps[-1].shape)} px", f"{len(steps)} scale" + "s" * (len(steps) > 1),
             f"{sum(step.iterations for step in steps)} iterations"]
    if styles > 1:
        words.append(f"{styles} style targets")
    if settings.photo and settings.photo_weight > 0:
        words.append("photorealistic")
    return Estimate(seconds, ", ".join(words))


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
