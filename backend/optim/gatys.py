"""Neural style by optimisation: Gatys et al. 2016 with the 2017 perceptual controls (colour,
space, scale) and Deep Photo Style Transfer's photo mode (Luan et al. 2017).

The image is initialised from the content and optimised (L-BFGS, lbfgs.py, or Adam) against content, style,
TV and photorealism losses (objective.py). Coarse-to-fine: the first scales run at half, quarter,
... the size; each result, upsampled, initialises the next scale. Progress is reported after every
iteration; `cancelled()` is polled before every iteration (and between set-up steps) and raises
stclient.errors.Cancelled; `on_intermediate` receives the current result every N iterations (in
the final colours, at the current scale) so a user can stop when it looks right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from backend.engines.base import resize, working_shape
from backend.optim import color
from backend.optim.features import MIN_SIDE, FeatureExtractor
from backend.optim.lbfgs import LBFGS
from backend.optim.matting import matting_laplacian
from backend.optim.objective import Objective
from backend.optim.options import OptimizeOptions, StyleSpec
from stclient.errors import BAD_REQUEST, Cancelled, StyleTransferError


@dataclass(frozen=True)
class Progress:
    """Reported after each iteration: the loss is the one evaluated in that iteration."""

    iteration: int                  # 1-based, counted over all scales
    total: int                      # iterations over all scales
    scale: int                      # 0-based, coarsest first
    scales: int
    shape: tuple[int, int]          # (H, W) being optimised
    loss: float
    terms: Mapping[str, float]      # unweighted content, style, tv, photo; weighted total
    fraction: float                 # share of the work done (iterations weighted by pixels)


@dataclass(frozen=True)
class ScaleStep:
    shape: tuple[int, int]
    iterations: int


ProgressFn = Callable[[Progress], None]
IntermediateFn = Callable[[torch.Tensor, Progress], None]


def plan_scales(content_shape: tuple[int, int], options: OptimizeOptions) -> list[ScaleStep]:
    """The (H, W) and iteration count of each scale, coarsest first. Scales whose shorter side
    would be under MIN_SIDE pixels are left out; the final one must reach it."""
    height, width = working_shape(*content_shape, options.size)
    if min(height, width) < MIN_SIDE:
        raise StyleTransferError(BAD_REQUEST, f"The result must be at least {MIN_SIDE} pixels "
                                              f"on its shorter side; {height}x{width} is not.")
    steps = [ScaleStep((height, width), options.iterations)]
    for level in range(1, options.scales):
        shape = (round(height / 2 ** level), round(width / 2 ** level))
        if min(shape) < MIN_SIDE or options.coarse_iterations == 0:
            break
        steps.insert(0, ScaleStep(shape, options.coarse_iterations))
    return steps


def run_gatys(content: torch.Tensor, styles: Sequence[Union[StyleSpec, torch.Tensor]],
              options: OptimizeOptions, encoder: nn.Sequential,
              progress: Optional[ProgressFn] = None,
              cancelled: Optional[Callable[[], bool]] = None,
              on_intermediate: Optional[IntermediateFn] = None,
              init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Stylize `content` (1 x 3 x H x W RGB 0..1). Returns 1 x 3 x h x w RGB 0..1 at the
    working size (options.size) on the encoder's device.

    styles: StyleSpecs (or bare 1 x 3 x h x w images: whole-image styles of weight 1).
    encoder: a VGG-layout nn.Sequential (AdaIN's vgg_normalised; modules [:44] are used).
    init: start from this RGB image instead of the content, e.g. to resume from the last
    intermediate result of a cancelled run (then with scales=1 and the iterations left)."""
    options.validate()
    specs = [s if isinstance(s, StyleSpec) else StyleSpec(s) for s in styles]
    if not specs:
        raise StyleTransferError(BAD_REQUEST, "The optimisation needs at least one style.")
    extractor = FeatureExtractor(encoder)
    device = extractor.device
    check = cancelled or (lambda: False)
    report = progress or (lambda p: None)
    steps = plan_scales(tuple(content.shape[-2:]), options)
    final = resize(content.to(device, extractor.dtype), steps[-1].shape)
    specs = [_prepare_colours(spec, final, options) for spec in specs]
    luminance = options.color == "luminance"
    total = sum(step.iterations for step in steps)
    work = [step.iterations * step.shape[0] * step.shape[1] for step in steps]
    done_work, iteration = 0.0, 0
    variable: Optional[torch.Tensor] = None
    for index, step in enumerate(steps):
        _stop_if(check)
        scene = resize(final, step.shape)
        guide = color.luminance(scene) if luminance else scene
        variable = _start(variable, init, guide, luminance).requires_grad_(True)
        objective = _objective(extractor, scene, guide, specs, options, step, check)
        solver = _Solver(variable, objective, options, luminance)
        for _ in range(step.iterations):
            _stop_if(check)
            terms = solver.step()
            iteration += 1
            done_work += work[index] / step.iterations
            state = Progress(iteration, total, index, len(steps), step.shape, terms["total"],
                             terms, min(1.0, done_work / sum(work)))
            report(state)
            if on_intermediate and options.intermediate_every and \
                    iteration % options.intermediate_every == 0:
                on_intermediate(_finish(variable, scene, luminance), state)
        variable = solver.best()
    assert variable is not None
    return _finish(variable, final, luminance)


def _start(previous: Optional[torch.Tensor], init: Optional[torch.Tensor], guide: torch.Tensor,
           luminance: bool) -> torch.Tensor:
    """The image a scale starts from, on guide's grid: the previous scale's result upsampled,
    else the given init image, else the content (its luminance when luminance-only)."""
    shape = tuple(guide.shape[-2:])
    if previous is not None:
        return resize(previous.detach(), shape).clone()
    if init is not None:
        start = resize(init.detach().to(guide.device, guide.dtype), shape)
        return (color.luminance(start) if luminance else start).clone()
    return guide.detach().clone()


def _stop_if(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled()


def _prepare_colours(spec: StyleSpec, content: torch.Tensor,
                     options: OptimizeOptions) -> StyleSpec:
    """Colour control applied to a style once, at its own size: recoloured to the content's
    histogram, or its luminance matched to the content's (the network then sees grey)."""
    image = spec.image.to(content.device, content.dtype)
    if options.color == "histogram":
        image = color.match_histogram(image, content, options.histogram_method)
    elif options.color == "luminance":
        image = color.match_luminance(color.luminance(image), color.luminance(content))
    return StyleSpec(image, spec.weight, spec.region, spec.style_region, spec.layers)


def _objective(extractor: FeatureExtractor, scene: torch.Tensor, guide: torch.Tensor,
               specs: Sequence[StyleSpec], options: OptimizeOptions, step: ScaleStep,
               check: Callable[[], bool]) -> Objective:
    """The loss of one scale: styles resized to style_scale x this scale's longest side, masks
    onto the output and style grids, the matting Laplacian of the content at this size."""
    device, dtype = extractor.device, extractor.dtype
    side = max(1, round(options.style_scale * max(step.shape)))
    prepared = []
    for spec in specs:
        style_shape = working_shape(*spec.image.shape[-2:], side)
        image = _network_input(resize(spec.image, style_shape))
        region = None if spec.region is None else _mask(spec.region, step.shape, device, dtype)
        style_region = None if spec.style_region is None else \
            _mask(spec.style_region, style_shape, device, dtype)
        prepared.append((image, StyleSpec(image, spec.weight, region, style_region,
                                          spec.layers)))
    _stop_if(check)
    laplacian = None
    if options.photo and options.photo_weight > 0:
        laplacian = matting_laplacian(scene, eps=options.matting_eps)
        _stop_if(check)
    return Objective(extractor, _network_input(guide), prepared, options, laplacian)


def _network_input(image: torch.Tensor) -> torch.Tensor:
    return color.grey_input(image) if image.shape[1] == 1 else image


def _mask(mask: torch.Tensor, shape: tuple[int, int], device: torch.device,
          dtype: torch.dtype) -> torch.Tensor:
    m = mask.reshape(1, 1, *mask.shape[-2:]).to(device, dtype)
    return resize(m, shape).clamp(0, 1)


class _Solver:
    """One optimiser on one scale: step() does an iteration and returns the loss terms it
    reports; best() is the image to keep. L-BFGS (lbfgs.py) reports the new image's terms and
    never goes up, so its current image is the best; Adam reports the terms of the image its step
    started from and can overshoot, so the lowest-loss image it evaluated is kept."""

    def __init__(self, variable: torch.Tensor, objective: Objective, options: OptimizeOptions,
                 luminance: bool) -> None:
        self.variable = variable
        self.objective = objective
        self.luminance = luminance
        self.lowest = float("inf")
        self.kept: Optional[torch.Tensor] = None
        if options.optimizer == "lbfgs":
            self.lbfgs: Optional[LBFGS] = LBFGS(variable, self._evaluate,
                                                history=options.lbfgs_history)
        else:
            self.lbfgs = None
            self.adam = torch.optim.Adam([variable], lr=options.learning_rate)

    def _evaluate(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        variable = self.variable
        network_input = color.grey_input(variable) if self.luminance else variable
        total, terms = self.objective(network_input, variable)
        return total.detach(), torch.autograd.grad(total, variable)[0], terms

    def step(self) -> dict[str, float]:
        if self.lbfgs is not None:
            self.lbfgs.step()
            return self.lbfgs.info
        _, self.variable.grad, terms = self._evaluate()
        if terms["total"] < self.lowest:
            self.lowest, self.kept = terms["total"], self.variable.detach().clone()
        self.adam.step()
        return terms

    def best(self) -> torch.Tensor:
        return self.variable if self.kept is None else self.kept


def _finish(variable: torch.Tensor, scene: torch.Tensor, luminance: bool) -> torch.Tensor:
    """The optimised variable as an RGB 0..1 image at `scene`'s size (with its chroma when
    luminance-only)."""
    image = variable.detach()
    if image.shape[-2:] != scene.shape[-2:]:
        image = resize(image, tuple(scene.shape[-2:]))
    if luminance:
        return color.combine_luminance(image, scene)
    return image.clamp(0.0, 1.0)
