"""Instance normalisation whose affine parameters come from a style, not from the layer's own
weights: the base of Magenta's style norm (gamma/beta from 1x1 convs of a style embedding) and
meant to serve CIN too (gamma/beta rows of a per-style table).

Why the styles are *bound* to the network instead of passed to every layer: each norm is then
called with one tensor, like a plain layer, so the network can stay an `nn.Sequential` that the
memory guard and the layer-by-layer tiler (backend/perf/tiling.py) walk as they walk CycleGAN.
The tiler gathers each such norm's input over the whole image and calls `normalise_(x)` on it,
so statistics are the whole image's and the result equals the untiled forward.

K styles give K sets of (gamma, beta); a `StyleMix` says how they combine:
- `weights=None`: style n for image n (K == N);
- `[N, K]`: a weight per image and style (weights summing to 1 blend the parameters);
- `[N, K, H, W]`: a weight map at the network input's resolution. Every layer blends the
  parameters per pixel at its own resolution (the map averaged down over the layer's stride), so
  the boundary between styles is painted by the network, not pasted afterwards. A map that is
  exactly 1 for style k gives style k's result bit for bit (1 * p_k + 0 * p_j is exact, and the
  normalisation is the same sequence of operations as with one style per image).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class StyleMix:
    """How K styles' parameters combine for N images; weight maps are resampled once per layer
    resolution and kept for the forward (several norms share a resolution)."""

    def __init__(self, styles: torch.Tensor, weights: torch.Tensor | None = None,
                 multiple: int = 1) -> None:
        """`styles`: what the norms turn into parameters ([K, D] embeddings for Magenta);
        `multiple`: the network's side multiple (a map is padded to it like the image is)."""
        if weights is not None and weights.dim() not in (2, 4):
            raise ValueError(f"style weights must be [N, K] or [N, K, H, W], got "
                             f"{list(weights.shape)}")
        if weights is not None and weights.shape[1] != styles.shape[0]:
            raise ValueError(f"{weights.shape[1]} style weights for {styles.shape[0]} styles")
        self.styles = styles
        self.weights = weights
        self.multiple = multiple
        self._maps: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def per_pixel(self) -> bool:
        return self.weights is not None and self.weights.dim() == 4

    def weights_at(self, height: int, width: int) -> torch.Tensor | None:
        """[N, K, h, w] (map), [N, K, 1, 1] (per image) or None (style n for image n)."""
        if self.weights is None:
            return None
        if not self.per_pixel:
            return self.weights[:, :, None, None]
        key = (height, width)
        if key not in self._maps:
            self._maps[key] = self._resample(height, width)
        return self._maps[key]

    def _resample(self, height: int, width: int) -> torch.Tensor:
        """The map padded (edge pixels repeated) to the network's multiple, then averaged over
        blocks of the layer's stride: exact for maps of 0s and 1s."""
        assert self.weights is not None
        h, w = self.weights.shape[-2:]
        m = self.multiple
        full_h, full_w = -(-h // m) * m, -(-w // m) * m
        stride = full_h // height
        if stride < 1 or stride * height != full_h or stride * width != full_w:
            raise ValueError(f"a {h}x{w} weight map does not fit a {height}x{width} layer of a "
                             f"network whose sides are multiples of {self.multiple}")
        padded = self.weights
        if (full_h, full_w) != (h, w):
            padded = F.pad(padded, (0, full_w - w, 0, full_h - h), mode="replicate")
        return padded if stride == 1 else F.avg_pool2d(padded, stride)


def mix_params(params: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """[K, C] per-style parameters -> [N, C, 1, 1] or [N, C, h, w] (the one place they mix)."""
    if weights is None:
        return params[:, :, None, None]
    return torch.einsum("nkhw,kc->nchw", weights.to(params), params)


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm (biased variance over H x W, as the graphs compute it) with gamma/beta from
    the bound styles. Subclasses say how a style becomes parameters (`style_params`)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.mix: StyleMix | None = None

    def style_params(self, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each [K, C], of the K styles."""
        raise NotImplementedError

    @staticmethod
    def statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image, per-channel (mean, biased variance), each [N, C, 1, 1]."""
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return mean, var

    def scale_shift(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """y = x * scale + shift, with scale = gamma / sqrt(var + eps), shift = beta - mean *
        scale (per channel, or per pixel for a weight map)."""
        if self.mix is None:
            raise RuntimeError(f"{type(self).__name__} has no styles bound; call the network "
                               "with a style or inside bind_styles(...)")
        # row by row: a style's parameters must not depend on the other styles in the batch
        # (matrix kernels choose their summation order by the batch size)
        rows = [self.style_params(style[None]) for style in self.mix.styles]
        gamma = torch.cat([row[0] for row in rows])
        beta = torch.cat([row[1] for row in rows])
        weights = self.mix.weights_at(x.shape[-2], x.shape[-1])
        if weights is None and gamma.shape[0] != x.shape[0]:
            raise ValueError(f"{gamma.shape[0]} styles for {x.shape[0]} images and no weights")
        scale = mix_params(gamma, weights).to(x.device) * torch.rsqrt(var + self.eps)
        shift = mix_params(beta, weights).to(x.device) - mean * scale
        return scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_meta:                  # shape-only passes (the memory estimate): elementwise
            return torch.empty_like(x)
        scale, shift = self.scale_shift(x, *self.statistics(x))
        return (x * scale).add_(shift)

    def normalise_(self, x: torch.Tensor) -> torch.Tensor:
        """In place, over all of x (the tiler hands it a whole layer in host memory)."""
        scale, shift = self.scale_shift(x, *self.statistics(x))
        return x.mul_(scale).add_(shift)


@contextlib.contextmanager
def bind_styles(network: nn.Module, styles: torch.Tensor, weights: torch.Tensor | None = None
                ) -> Iterator[StyleMix]:
    """Give every conditional norm of `network` the styles (and their weights) for the calls
    made inside the block. One forward at a time per network object."""
    mix = StyleMix(styles, weights, getattr(network, "multiple", 1))
    norms = [m for m in network.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    if any(norm.mix is not None for norm in norms):
        raise RuntimeError("styles are already bound to this network (nested or concurrent use)")
    for norm in norms:
        norm.mix = mix
    try:
        yield mix
    finally:
        for norm in norms:
            norm.mix = None
