"""AdaIN engine: arbitrary style transfer with one or several styles, style strength, colour
preservation and a spatial mask.

Order of work, as the reference test: (optional) colour handling of the style, encode content and
styles to relu4_1, AdaIN (weighted blend of styles or a mask blend), mix with the content features
by α, decode. Content is padded by reflection to a multiple of 8 (no padding when the sides already
are, so those results equal the reference's) and cropped back. Style statistics (mean/std at
relu4_1) are cached per style image, model and style size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import nn

from backend.engines.base import Engine, EngineContext, mask_tensor, resize, to_numpy, \
    to_tensor, working_shape
from backend.engines.job import StylizeJob
from backend.engines.progress import Plan, convolutions
from backend.networks.padding import crop, pad_to_multiple, reflect_pad
from backend.networks import adain as net
from backend.networks.checkpoints import load_network
from backend.pixels import to_float_rgb
from stclient.registry import style_weights

MULTIPLE = 8          # three 2x poolings in the encoder, three 2x upsamplings in the decoder
MIN_SIDE = 16         # relu4_1 needs >= 2 positions per side (reflection padding, std)


@dataclass
class AdaINModel:
    encoder: net.VggEncoder      # modules 0..30 only (the rest is never used at inference)
    decoder: net.AdaINDecoder
    device: torch.device


class AdaINEngine(Engine):
    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> AdaINModel:
        _, vgg = load_network("adain", "vgg", paths["vgg"], archs.get("vgg"))
        _, decoder = load_network("adain", "decoder", paths["decoder"], archs.get("decoder"))
        encoder = vgg[:net.RELU4_1 + 1]  # relu4_1 is all inference needs: drop the rest
        return AdaINModel(encoder.to(device).eval(), decoder.to(device).eval(), device)

    def stylize(self, model: AdaINModel, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        height, width = rgb.shape[:2]
        content = to_tensor(rgb, model.device)
        work_h, work_w = working_shape(height, width, int(options["working_size"]))
        content = resize(content, (work_h, work_w))
        preserve = bool(options["preserve_color"])
        method = options["color_method"]
        luminance = preserve and method == "luminance"
        content_in, chroma = net.luminance_input(content) if luminance else (content, None)
        style_size = int(options["style_size"])
        keys = [self._style_key(ctx, style, content, options) for style in job.styles]
        padded, padding = pad_to_multiple(content_in, MULTIPLE, MIN_SIDE)
        plan = Plan(ctx, 0.0, 0.98)
        for index, (style, key) in enumerate(zip(job.styles, keys)):
            if self._cached(ctx, key) is None:
                plan.add(f"style {index}", model.encoder,
                         (1, 3) + style_shape(style.shape[0], style.shape[1], style_size))
        plan.add("content", model.encoder, tuple(padded.shape))
        depth = convolutions(model.encoder)[-1].out_channels
        plan.add("decode", model.decoder,
                 (1, depth, padded.shape[2] // MULTIPLE, padded.shape[3] // MULTIPLE))
        stats = [self._style_stats(model, style, content, options, ctx, key, plan, index,
                                   len(job.styles))
                 for index, (style, key) in enumerate(zip(job.styles, keys))]
        with plan.run("content", "encoding content"):
            features = _run(model.encoder, padded, ctx)
        ctx.step(plan.span("content")[1], "transferring style")
        if job.mask is not None:
            mask = mask_tensor(job.mask, (work_h, work_w), model.device)
            mask = reflect_pad(mask, padding) if not padding.is_zero else mask
            grid = net.resize_mask_to(mask, tuple(features.shape[-2:]),
                                      hard=options.get("mask_mode", "soft") == "hard")
            target = net.masked_styles(features, stats[0], stats[1] if len(stats) > 1 else None,
                                       grid)
        else:
            target = net.blend_styles(features, stats, style_weights(options, len(stats)))
        target = net.mix_with_content(target, features, float(options["alpha"]))
        with plan.run("decode", "decoding"):
            decoded = _run(model.decoder, target, ctx)
        result = crop(decoded, padding)
        if luminance:
            result = net.with_chroma(result, chroma)
        result = resize(result.clamp(0, 1), (height, width))
        return to_numpy(result)

    # ------------------------------------------------------------------ styles
    @staticmethod
    def _style_key(ctx: EngineContext, style: np.ndarray, content: torch.Tensor,
                   options: dict[str, Any]) -> Optional[str]:
        """The style cache's key for one style under these options (None: no cache)."""
        if ctx.style_cache is None:
            return None
        parts = [ctx.model_key, str(int(options["style_size"])), pixels_digest(style)]
        if bool(options["preserve_color"]):  # recolouring depends on the content as well
            parts += [options["color_method"], tensor_digest(content)]
        return "|".join(parts)

    @staticmethod
    def _cached(ctx: EngineContext, key: Optional[str]) -> Any:
        return None if key is None else ctx.style_cache.get(key)

    def _style_stats(self, model: AdaINModel, style: np.ndarray, content: torch.Tensor,
                     options: dict[str, Any], ctx: EngineContext, key: Optional[str],
                     plan: Plan, index: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """relu4_1 mean/std of one style, from the cache when this style was seen before."""
        preserve = bool(options["preserve_color"])
        style_size = int(options["style_size"])
        hit = self._cached(ctx, key)
        if hit is not None:
            ctx.stats["style_cache_hits"] = ctx.stats.get("style_cache_hits", 0) + 1
            return hit
        tensor = to_tensor(style_rgb(style), model.device)
        tensor = resize(tensor, working_shape(*tensor.shape[-2:], style_size))
        if preserve and options["color_method"] == "reference":
            tensor = net.transfer_colour_statistics(tensor[0], content[0])[None]
        elif preserve:
            style_y = net.rgb_to_yiq(tensor)[:, :1]
            content_y = net.rgb_to_yiq(content)[:, :1]
            tensor = net.match_luminance(style_y, content_y).expand(-1, 3, -1, -1)
        tensor = ensure_min_side(tensor, MIN_SIDE)
        with plan.run(f"style {index}", f"encoding style {index + 1} of {count}"):
            features = model.encoder.encode(tensor)
        stats = net.mean_std(features)
        ctx.stats["style_encodes"] = ctx.stats.get("style_encodes", 0) + 1
        if key is not None:
            ctx.style_cache.put(key, stats)
        return stats


def _run(network: nn.Sequential, x: torch.Tensor, ctx: EngineContext) -> torch.Tensor:
    """Run a Sequential module (tiled by backend.perf when memory is short); progress comes from
    the plan's hooks on its convolutions, cancellation is polled between stages."""
    guarded = getattr(network, "run_guarded", None)
    if guarded is not None:
        return guarded(x, lambda fraction: ctx.check_cancelled())
    for layer in network:
        x = layer(x)
    return x


def style_shape(height: int, width: int, style_size: int) -> tuple[int, int]:
    """The size a style image is encoded at (style_size, then at least MIN_SIDE a side)."""
    return _at_least(*working_shape(height, width, style_size), MIN_SIDE)


def _at_least(height: int, width: int, minimum: int) -> tuple[int, int]:
    if min(height, width) >= minimum:
        return height, width
    scale = minimum / min(height, width)
    return max(minimum, round(height * scale)), max(minimum, round(width * scale))


def style_rgb(style: np.ndarray) -> np.ndarray:
    """A style image (any channel count/dtype) as H x W x 3 float32 RGB; alpha is ignored."""
    return to_float_rgb(style)[0]


def ensure_min_side(image: torch.Tensor, minimum: int) -> torch.Tensor:
    """Enlarge tiny style images so the encoder can compute statistics at relu4_1."""
    size = _at_least(*image.shape[-2:], minimum)
    return image if size == tuple(image.shape[-2:]) else resize(image, size)


def pixels_digest(pixels: np.ndarray) -> str:
    data = np.ascontiguousarray(pixels)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.shape}{data.dtype}".encode())
    digest.update(data.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def tensor_digest(tensor: torch.Tensor) -> str:
    return pixels_digest(tensor.detach().float().cpu().numpy())


ENGINE = AdaINEngine
