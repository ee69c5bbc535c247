"""What an optimisation run is asked to do: the options (with their defaults) and the styles.

Weights, for the normalised VGG's activation scale (mean activation 1 per filter): content 1 at
relu4_2, style 1e3 with per-layer weights 1/C_l², i.e. Gatys et al.'s own settings for this
network with these exact loss definitions (Gram/(H·W), mean squared); photo 1e4 (Luan et al.'s
λ; here on Σ_c V_cᵀ L V_c / pixels, so it does not change with the size); TV 0. Measured on a
random-weight VGG normalised the same way (bench/calibrate_optimize.py, results in
bench/results/optimize-cpu-2026-12-03.md): with 1/C_l² the five layers' terms stay within two
orders of magnitude, after 40 L-BFGS iterations the content and style gradients pull with
comparable norms (1.5-2.0 vs 0.9-1.4), and λ 3e4-8e4 would equal the style's pull on a lightly
changed image, so 1e4 keeps the photo term in play and lets it dominate as the result departs from
the content's local colour model. Adam's step (0.01 in 0..1 pixels = 2.5 levels, between
neural-style's and neural-style-pt's on the 0..255 scale) cannot be measured on a random network
(any step made its loss explode); L-BFGS needs none. Run the script with --vgg on the real file
to re-check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from backend.optim.color import HISTOGRAM_METHODS
from backend.optim.features import CONTENT_LAYER, LAYER_INDEX, STYLE_LAYERS
from stclient.errors import BAD_REQUEST, StyleTransferError

OPTIMIZERS = ("lbfgs", "adam")
COLOR_MODES = ("none", "luminance", "histogram")


@dataclass
class OptimizeOptions:
    """Options of `run_gatys`. Sizes are the longest side in pixels."""

    size: int = 512                 # result's longest side (0: the content's own size)
    iterations: int = 500           # at the final scale (Gatys et al.: 500 L-BFGS iterations)
    scales: int = 1                 # coarse-to-fine: this many scales, each half the next
    coarse_iterations: int = 200    # at each coarser scale
    optimizer: str = "lbfgs"        # "lbfgs" (Gatys et al.) or "adam"
    learning_rate: float = 0.01     # Adam only: step in 0..1 pixel units (2.5 8-bit levels)
    lbfgs_history: int = 50         # memory: 2 x history x 3 x pixels floats (50 @ 1024²: 1.2 GB)
    content_weight: float = 1.0
    style_weight: float = 1e3       # times Σ_l (1/C_l²) · mse(Gram_l): Gatys et al.'s weighting
    tv_weight: float = 0.0
    content_layer: str = CONTENT_LAYER
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_scale: float = 1.0        # style image's longest side relative to the output's
    color: str = "none"             # "none", "luminance" (keep the content's chroma) or
    #                                 "histogram" (recolour the styles to the content first)
    histogram_method: str = "pca"   # "cholesky", "pca" or "symmetric" (see color.py)
    photo: bool = False             # Deep Photo Style Transfer's matting-Laplacian regulariser
    photo_weight: float = 1e4       # times Σ_c V_cᵀ L V_c / pixels
    matting_eps: float = 1e-7
    intermediate_every: int = 0     # call on_intermediate every N iterations (0: never)

    def validate(self) -> None:
        """Raise StyleTransferError(bad_request) naming the first bad option."""
        checks = [
            (self.size >= 0, "size must be >= 0"),
            (self.iterations >= 1, "iterations must be >= 1"),
            (self.scales >= 1, "scales must be >= 1"),
            (self.coarse_iterations >= 0, "coarse_iterations must be >= 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.lbfgs_history >= 1, "lbfgs_history must be >= 1"),
            (min(self.content_weight, self.style_weight, self.tv_weight,
                 self.photo_weight) >= 0, "weights must be >= 0"),
            (self.content_layer in LAYER_INDEX, f"content_layer must be one of "
                                                f"{tuple(LAYER_INDEX)}"),
            (bool(self.style_layers) and all(layer in LAYER_INDEX for layer in self.style_layers),
             f"style_layers must be a non-empty subset of {tuple(LAYER_INDEX)}"),
            (self.style_scale > 0, "style_scale must be > 0"),
            (self.color in COLOR_MODES, f"color must be one of {COLOR_MODES}"),
            (self.histogram_method in HISTOGRAM_METHODS,
             f"histogram_method must be one of {HISTOGRAM_METHODS}"),
            (self.matting_eps > 0, "matting_eps must be > 0"),
            (self.intermediate_every >= 0, "intermediate_every must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise StyleTransferError(BAD_REQUEST, f"Optimisation option: {message}.")

    def replace(self, **changes) -> "OptimizeOptions":
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_device(cls, device: torch.device | str, photo: bool = False) -> "OptimizeOptions":
        """Defaults that finish in minutes on a CPU (small, coarse-to-fine) and Gatys et al.'s
        full-quality settings on a GPU (measured: bench/results/optimize-cpu-2026-12-03.md)."""
        kind = torch.device(device).type
        if kind == "cpu":
            return cls(size=256, scales=2, coarse_iterations=100, iterations=100, photo=photo)
        return cls(size=512, scales=2, coarse_iterations=200, iterations=500, photo=photo)


@dataclass
class StyleSpec:
    """One style target. Specs with the same `region` (or none) form one region whose Gram
    targets are the weight-blended Grams of its styles, layer by layer."""

    image: torch.Tensor                          # 1 x 3 x h x w RGB 0..1
    weight: float = 1.0                          # blend proportion within its region and layer
    region: Optional[torch.Tensor] = None        # where in the output (mask 0..1, any size)
    style_region: Optional[torch.Tensor] = None  # which part of the style image (mask 0..1)
    layers: Optional[tuple[str, ...]] = None     # a subset of the style layers (None: all)


def mix_scales(coarse: torch.Tensor, fine: torch.Tensor, split: str = "relu3_1",
               layers: Sequence[str] = STYLE_LAYERS) -> list[StyleSpec]:
    """Gatys et al. 2017 scale control: the coarse structure (layers from `split` up) of one
    style with the fine texture (the layers below `split`) of another."""
    depth = LAYER_INDEX[split]
    high = tuple(layer for layer in layers if LAYER_INDEX[layer] >= depth)
    low = tuple(layer for layer in layers if LAYER_INDEX[layer] < depth)
    if not high or not low:
        raise ValueError(f"splitting at {split} leaves no layer on one side")
    return [StyleSpec(coarse, layers=high), StyleSpec(fine, layers=low)]


def segmentation_styles(style: torch.Tensor, content_labels: torch.Tensor,
                        style_labels: torch.Tensor) -> list[StyleSpec]:
    """Deep Photo Style Transfer's segmentation-augmented style: one region per label of the
    content's label map (H x W integers), styled by the same label's part of the style image
    (the whole style where the style has no such label)."""
    specs = []
    for label in torch.unique(content_labels).tolist():
        region = (content_labels == label).float()
        in_style = (style_labels == label).float()
        specs.append(StyleSpec(style, region=region,
                               style_region=in_style if in_style.sum() > 0 else None))
    return specs
