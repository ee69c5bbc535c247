"""The loss at one scale: content + style (Gram or guided Gram per region) + TV + photorealism.

Built once per scale with the targets precomputed (no gradients); evaluating it on the image
being optimised costs one VGG pass to relu5_1 plus the Gram matrices.

Regions: the specs sharing a region mask (or none) form one region; its loss is weighted by the
region's share of the image, so a style is as strong inside a small region as over the whole
image, and pixels outside every region only feel the content, TV and photo terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from backend.optim import losses
from backend.optim.features import FeatureExtractor
from backend.optim.matting import MattingLaplacian
from backend.optim.options import OptimizeOptions, StyleSpec


@dataclass
class _Region:
    mask: Optional[torch.Tensor]                 # on the output grid, or None: everywhere
    share: float                                 # mean of the mask
    targets: dict[str, torch.Tensor]             # layer -> blended target Gram
    grids: dict[str, Optional[torch.Tensor]]     # layer -> mask on that layer's grid


class Objective:
    """Callable: (image the network reads, optimised variable) -> (total loss, float terms)."""

    def __init__(self, extractor: FeatureExtractor, content: torch.Tensor,
                 styles: Sequence[tuple[torch.Tensor, StyleSpec]], options: OptimizeOptions,
                 laplacian: Optional[MattingLaplacian] = None) -> None:
        """content: 1 x 3 x H x W network input at this scale; styles: (network input of the
        style at this scale, its spec) with masks already on the output / style grids."""
        self.extractor = extractor
        self.options = options
        self.laplacian = laplacian
        self.layer_weights = {layer: 1.0 / extractor.channels(layer) ** 2
                              for layer in options.style_layers}
        with torch.no_grad():
            own = extractor(content, [options.content_layer, *options.style_layers])
            self.content_target = own[options.content_layer]
            self.regions = _build_regions(
                extractor, styles, options, tuple(content.shape[-2:]),
                {layer: tuple(own[layer].shape[-2:]) for layer in options.style_layers})
        self.layers = {options.content_layer, *self.style_layers()}

    def style_layers(self) -> set[str]:
        return {layer for region in self.regions for layer in region.targets}

    def __call__(self, network_input: torch.Tensor, variable: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        options = self.options
        features = self.extractor(network_input, self.layers)
        content = losses.content_loss(features[options.content_layer], self.content_target)
        style = network_input.new_zeros(())
        for region in self.regions:
            for layer, target in region.targets.items():
                style = style + region.share * self.layer_weights[layer] * \
                    losses.style_loss(features[layer], target, region.grids[layer])
        total = options.content_weight * content + options.style_weight * style
        terms = {"content": float(content.detach()), "style": float(style.detach())}
        if options.tv_weight > 0:
            tv = losses.tv_loss(variable)
            total = total + options.tv_weight * tv
            terms["tv"] = float(tv.detach())
        if self.laplacian is not None and options.photo_weight > 0:
            pixels = variable.shape[-2] * variable.shape[-1]
            photo = self.laplacian.quadratic(variable) / pixels
            total = total + options.photo_weight * photo
            terms["photo"] = float(photo.detach())
        terms["total"] = float(total.detach())
        return total, terms


def _build_regions(extractor: FeatureExtractor, styles: Sequence[tuple[torch.Tensor, StyleSpec]],
                   options: OptimizeOptions, content_grid: tuple[int, int],
                   layer_grids: dict[str, tuple[int, int]]) -> list[_Region]:
    """Group the specs by region mask and blend their target Grams per layer."""
    groups: list[tuple[Optional[torch.Tensor], list[tuple[torch.Tensor, StyleSpec]]]] = []
    for image, spec in styles:
        for mask, members in groups:
            if _same_mask(mask, spec.region):
                members.append((image, spec))
                break
        else:
            groups.append((spec.region, [(image, spec)]))
    regions = []
    for mask, members in groups:
        sums: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}
        for image, spec in members:
            layers = spec.layers or options.style_layers
            unknown = set(layers) - set(options.style_layers)
            if unknown:
                raise ValueError(f"style layers {sorted(unknown)} are not in the options' "
                                 f"style layers {options.style_layers}")
            features = extractor(image, layers)
            for layer in layers:
                grid = None if spec.style_region is None else \
                    losses.mask_to_grid(spec.style_region, tuple(features[layer].shape[-2:]))
                target = losses.gram(features[layer], grid) * spec.weight
                sums[layer] = sums[layer] + target if layer in sums else target
                weights[layer] = weights.get(layer, 0.0) + spec.weight
        targets = {layer: sums[layer] / weights[layer] for layer in sums if weights[layer] > 0}
        grids = {layer: None if mask is None else losses.mask_to_grid(mask, layer_grids[layer])
                 for layer in targets}
        share = 1.0 if mask is None else float(losses.mask_to_grid(mask, content_grid).mean())
        if share > 0 and targets:
            regions.append(_Region(mask, share, targets, grids))
    return regions


def _same_mask(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.shape == b.shape and torch.equal(a, b))
