"""CIN engine: built-in styles by index, blended by weights (normalised to sum 1), per image or,
with a mask, per pixel (the style(s) inside the mask, the outside style(s) or the unchanged
content outside), at every layer's resolution.

Order of work: scale to the working size; with --preserve-color the network sees the luminance
only (as three grey channels) and the result's luminance replaces the content's; pad to the
network multiple (reflect, bottom/right), run (tiled layer by layer when the memory budget is
short, whole-image statistics kept), crop; alpha blends with the content; scale back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from backend.engines.base import Engine, EngineContext, mask_tensor, resize, to_numpy, \
    to_tensor, working_shape
from backend.engines.job import StylizeJob
from backend.engines.progress import fused_forward, steps_estimate, tracked
from backend.networks import adain as colour
from backend.networks.checkpoints import load_network
from backend.networks.cin import CINTransformer, padding_to_multiple
from backend.networks.padding import crop, reflect_pad
from backend.networks.style_norm import bind_styles
from backend.perf import fused
from backend.perf.budget import estimate_activations
from backend.perf.tiling import run_layerwise
from stclient.errors import BAD_REQUEST, StyleTransferError
from stclient.registry import style_weights

ROLE = "transformer"
TEXT = "running the CIN transformer"


class CINEngine(Engine):
    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> CINTransformer:
        arch, network = load_network(self.name, ROLE, paths[ROLE], archs.get(ROLE))
        network.arch = arch
        return network.to(device).eval()

    def stylize(self, model: CINTransformer, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        height, width = rgb.shape[:2]
        device = next(model.parameters()).device
        inside = weight_vector(model, options["style_index"],
                               style_weights(options, len(options["style_index"])), device)
        outside_index = options["outside_style_index"]
        outside = weight_vector(model, outside_index, style_weights(
            {"style_weights": options["outside_style_weights"]}, len(outside_index)), device) \
            if outside_index else None
        content = resize(to_tensor(rgb, device), working_shape(height, width,
                                                               int(options["working_size"])))
        luminance = bool(options["preserve_color"])
        network_in, chroma = colour.luminance_input(content) if luminance else (content, None)
        mask = None if job.mask is None else \
            mask_tensor(job.mask, tuple(content.shape[-2:]), device)
        if mask is not None and outside is not None:
            style = inside[None, :, None, None] * mask + outside[None, :, None, None] * (1 - mask)
        else:
            style = inside[None]
        ctx.step(0.05, TEXT)
        result = self._run(model, network_in, style, ctx)
        if luminance:
            result = colour.with_chroma(result, chroma)
        alpha = float(options["alpha"])
        result = alpha * result + (1.0 - alpha) * content
        if mask is not None and outside is None:       # outside: the unchanged content
            result = mask * result + (1 - mask) * content
        return to_numpy(resize(result.clamp(0, 1), (height, width)))

    def _run(self, model: CINTransformer, x: torch.Tensor, style: torch.Tensor,
             ctx: EngineContext) -> torch.Tensor:
        padding = padding_to_multiple(x.shape[-2], x.shape[-1])
        if style.dim() == 4:
            style = reflect_pad(style, padding)
        x = reflect_pad(x, padding)
        field = model.style_field(style)
        # the fused kernel's steps, when it will run this pass: their geometry gives the
        # memory and the cost without a shape pass on meta tensors
        runner = fused_forward(model)
        steps = None if runner is None or torch.is_grad_enabled() \
            else runner.steps_for(x, (field,), {})
        needs = fused.activation_bytes(steps, tuple(x.shape)).with_workspace(x.device) \
            if steps is not None else self._needs(model, style, x)
        tiled = ctx.budget is not None and needs > ctx.budget.bytes()
        chain = model.chain()
        cost = steps_estimate(steps, tuple(x.shape)) if steps is not None and not tiled \
            else None
        # progress by each convolution's measured cost: the chain's convolutions' hooks, or the
        # fused kernel's steps when backend.perf installed it and the style is per image
        with bind_styles(model, field), tracked(chain, ctx, 0.05, 0.95, TEXT, tuple(x.shape),
                                                cost, fused_on=model):
            # layer by layer when the budget is short: every norm still sees the whole layer,
            # so its statistics (whole image or per region) are the whole image's
            out = run_layerwise(chain, x, ctx.budget.bytes()) if tiled else model(x, field)
        return crop(out, padding)

    def shape_passes(self, model: CINTransformer) -> bool:
        """With the fused kernel the pass's shapes come from its steps (no meta pass)."""
        return fused_forward(model) is None

    @staticmethod
    def _needs(model: CINTransformer, style: torch.Tensor, x: torch.Tensor) -> int:
        """Activation bytes of one untiled pass (measured on meta tensors: shapes only), kept
        per model and shapes: the meta-device pass took 0.4-0.6 s of a 512² job whose network
        runs in 0.05 s."""
        key = (tuple(x.shape), tuple(style.shape), x.device.type)
        known = model.__dict__.setdefault("_activation_bytes", {})
        if key not in known:
            with bind_styles(model, model.style_field(style.to("meta"))):
                known[key] = estimate_activations(model.chain(),
                                                  tuple(x.shape)).with_workspace(x.device)
        return known[key]


def weight_vector(model: CINTransformer, indices: list[int], weights: list[float],
                  device: torch.device) -> torch.Tensor:
    """[S] weights over the model's styles: the chosen ones, normalised to sum 1."""
    last = model.num_styles - 1
    vector = torch.zeros(model.num_styles, dtype=torch.float32)
    for index, weight in zip(indices, weights):
        if not 0 <= index <= last:
            raise StyleTransferError(BAD_REQUEST, f"Style index {index} is out of range: this "
                                                  f"model has styles 0 to {last}.")
        vector[index] += weight
    return (vector / vector.sum()).to(device)


ENGINE = CINEngine
