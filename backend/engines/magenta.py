"""Magenta engine: any style image -> a 100-d embedding (the style predictor, on the image's
centre square at 256x256; cached per style image and model), which sets every style norm of the
transformer. Several styles blend their embeddings by weight (normalised to sum 1); alpha is the
paper's interpolation with the content's own embedding (s * style + (1 - s) * own); a mask gives
style 1 inside and style 2 (or the unchanged content) outside, blended per pixel at every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from backend.engines.adain import style_rgb, tensor_digest
from backend.engines.base import Engine, EngineContext, mask_tensor, resize, to_numpy, \
    to_tensor, working_shape
from backend.engines.job import StylizeJob
from backend.engines.progress import Plan
from backend.networks import adain as colour
from backend.networks.checkpoints import load_network
from backend.networks.magenta import MagentaStylePredictor, MagentaTransformer, style_input
from backend.networks.padding import crop, pad_to_multiple, reflect_pad
from stclient.registry import style_weights

MIN_SIDE = 8


@dataclass
class MagentaModel:
    predictor: MagentaStylePredictor
    transformer: MagentaTransformer
    device: torch.device


class MagentaEngine(Engine):
    def load(self, paths: Mapping[str, Path], device: torch.device,
             archs: Mapping[str, Optional[str]]) -> MagentaModel:
        _, predictor = load_network(self.name, "predictor", paths["predictor"],
                                    archs.get("predictor"))
        _, transformer = load_network(self.name, "transformer", paths["transformer"],
                                      archs.get("transformer"))
        return MagentaModel(predictor.to(device).eval(), transformer.to(device).eval(), device)

    def stylize(self, model: MagentaModel, rgb: np.ndarray, job: StylizeJob,
                options: dict[str, Any], ctx: EngineContext) -> np.ndarray:
        height, width = rgb.shape[:2]
        content = resize(to_tensor(rgb, model.device),
                         working_shape(height, width, int(options["working_size"])))
        alpha = float(options["alpha"])
        styles_in = [style_input(to_tensor(style_rgb(style), model.device))
                     for style in job.styles]
        own_in = style_input(content) if alpha < 1 else None
        luminance = bool(options["preserve_color"])
        network_in, chroma = colour.luminance_input(content) if luminance else (content, None)
        padded, padding = pad_to_multiple(network_in, model.transformer.multiple, MIN_SIDE)
        # the bar, by each pass's measured cost: the predictor on every style (and the content,
        # for alpha) not in the style cache, then the transformer
        plan = Plan(ctx, 0.02, 0.98)
        inputs = styles_in + ([own_in] if own_in is not None else [])
        keys = [self._key(ctx, image) for image in inputs]
        for index, (image, key) in enumerate(zip(inputs, keys)):
            if self._cached(ctx, key) is None:
                plan.add(f"predict {index}", model.predictor, tuple(image.shape))
        plan.add("transform", model.transformer, tuple(padded.shape))
        embeddings = [self._embedding(model, image, key, plan, f"predict {index}", ctx)
                      for index, (image, key) in enumerate(zip(inputs, keys))]
        own = embeddings.pop() if own_in is not None else None

        def strength(embedding: torch.Tensor) -> torch.Tensor:
            return embedding if own is None else alpha * embedding + (1 - alpha) * own

        mask = None if job.mask is None else \
            mask_tensor(job.mask, tuple(content.shape[-2:]), model.device)
        if mask is not None and len(embeddings) == 2:
            styles = torch.cat([strength(e) for e in embeddings])           # [2, 100]
            weights = torch.cat([mask, 1 - mask], 1)                         # [1, 2, H, W]
        else:
            shares = style_weights(options, len(embeddings))
            total = sum(shares)
            mixed = sum(w / total * e for w, e in zip(shares, embeddings))
            styles, weights = strength(mixed), None
        if weights is not None and not padding.is_zero:
            weights = reflect_pad(weights, padding)
        with plan.run("transform", "running the transformer"):
            result = crop(model.transformer(padded, styles, weights), padding)
        if luminance:
            result = colour.with_chroma(result, chroma)
        if mask is not None and len(embeddings) == 1:     # outside: the unchanged content
            result = mask * result + (1 - mask) * content
        return to_numpy(resize(result.clamp(0, 1), (height, width)))

    @staticmethod
    def _key(ctx: EngineContext, image: torch.Tensor) -> Optional[str]:
        """The style cache's key of a predictor input (None without a cache)."""
        if ctx.style_cache is None:
            return None
        return f"{ctx.model_key}|magenta|{tensor_digest(image)}"

    @staticmethod
    def _cached(ctx: EngineContext, key: Optional[str]) -> Optional[torch.Tensor]:
        return None if key is None else ctx.style_cache.get(key)

    def _embedding(self, model: MagentaModel, image: torch.Tensor, key: Optional[str],
                   plan: Plan, name: str, ctx: EngineContext) -> torch.Tensor:
        """[1, 100] for a predictor input (a style, or the content for alpha), from the style
        cache when the same pixels were seen with this model."""
        hit = self._cached(ctx, key)
        if hit is not None:
            ctx.stats["style_cache_hits"] = ctx.stats.get("style_cache_hits", 0) + 1
            return hit
        with plan.run(name, "predicting the style"):
            embedding = model.predictor(image)
        ctx.stats["style_encodes"] = ctx.stats.get("style_encodes", 0) + 1
        if key is not None:
            ctx.style_cache.put(key, embedding)
        return embedding


ENGINE = MagentaEngine
