"""Conditional instance normalisation: an instance norm whose scale and shift come from a style,
mixed by weights per image or per pixel. The one definition CIN (a table of per-style gamma/beta,
backend/networks/cin.py) and Magenta (gamma/beta as affine maps of a predicted style embedding,
backend/networks/magenta.py) both build on; a subclass only says how its S styles become
parameters (`style_params`: gamma, beta of shape [S, C]).

The style of one forward pass is a `StyleField`: weights [N, S] (per image), a weight map
[N, S, H, W] at the network input's resolution (per pixel), or none (style n for image n); for
Magenta it also carries the S embeddings. Every norm receives the map box-averaged to its own
layer's resolution (`resize_weights`), so the boundary between styles is painted by the network,
not pasted afterwards. Weights are used as given (not normalised), as in the released graphs.

Mask semantics (both engines): with a weight map, gamma/beta are mixed per pixel,
    gamma(p) = sum_s w_s(p) gamma_s,        beta(p) likewise,
and by default ("region") each style's *statistics* are its own region's: style s's mean and
variance are the layer's, weighted by w_s, and a pixel mixes them by its shares w_s / sum w.
Why not the whole image's ("image"), as Dumoulin et al. 2017 (spatial style mixing) and
Magenta's reference `weighted_instance_norm` compute them? A user who paints region A with style 1
and region B with style 2 expects A to look as style 1 makes it; with whole-image statistics the
other region's features (already in another style after the first layer) shift every layer's
mean and variance, so A's look depends on the style chosen for B and on B's size. Measured on
the demo photos with multistyle26, half/half masks, >= 64 px from the seam, mean abs (0..1) from
the style alone on its half: region 0.013-0.084 (5-26 % of the distance between the two styles
there), image 0.07-0.24 (tests/unit/test_cin_network.py and test_magenta_network.py hold both
engines to it). "image" stays available (`StyleField(..., statistics="image")`) to reproduce
the paper. With per-image weights, or a map that is the same everywhere (taken as per-image
weights: same bits), both are the same whole-image instance norm the graphs compute.

Why the style is *bound* to the norms (`bind_styles`) rather than passed to every layer: each
norm is then a one-input layer, so a network stays a chain that the memory guard and the
layer-by-layer tiler (backend/perf/tiling.py) walk as they walk CycleGAN. The tiler gathers
each norm's input over the whole image and calls `normalise_(x)` on it, so the statistics (whole
image or per region) are the whole image's and the result equals the untiled forward.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

Statistics = Literal["region", "image"]


# ============================================================================ weight maps

def _halve(weights: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of neighbouring pairs along `dim` (an odd length repeats its last slice).

    (a + b) * 0.5 keeps a constant area exactly constant: inside a region of one style set,
    every layer sees exactly that set's weights."""
    if weights.shape[dim] % 2:
        weights = torch.cat([weights, weights.narrow(dim, weights.shape[dim] - 1, 1)], dim)
    pairs = weights.unflatten(dim, (weights.shape[dim] // 2, 2))
    return (pairs.select(dim + 1, 0) + pairs.select(dim + 1, 1)) * 0.5


def _fit_axis(weights: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    while math.ceil(weights.shape[dim] / 2) >= size and weights.shape[dim] > size:
        weights = _halve(weights, dim)
    extra = size - weights.shape[dim]
    if extra > 0:          # the network's own output overhangs bottom/right (sides not % 4)
        tail = weights.narrow(dim, weights.shape[dim] - 1, 1)
        shape = list(tail.shape)
        shape[dim] = extra
        weights = torch.cat([weights, tail.expand(shape)], dim)
    return weights.narrow(dim, 0, size)


def resize_weights(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A weight map [N, S, H, W] at a layer's resolution: box (area) averages over 2^k x 2^k
    cells by repeated exact halving, as the stride-2 convolutions halve (ceil) the image; a
    layer larger than the halved map (the output of a side that is not a multiple of 4) gets
    the map's bottom row / right column repeated."""
    return _fit_axis(_fit_axis(weights, 2, height), 3, width)


def present_styles(weights: torch.Tensor) -> list[int]:
    """Indices of the styles with a non-zero weight anywhere in [N, S, ...]; on the meta device
    (memory estimates: shapes only) every style counts, as the values are unknown."""
    if weights.device.type == "meta":
        return list(range(weights.shape[1]))
    dims = tuple(d for d in range(weights.dim()) if d != 1)
    return torch.nonzero(weights.detach().abs().amax(dim=dims) > 0).flatten().tolist()


def mix_params(params: torch.Tensor, weights: torch.Tensor,
               present: Optional[list[int]] = None) -> torch.Tensor:
    """[S, C] per-style parameters mixed by weights [N, S] or [N, S, h, w] -> [N, C, 1, 1] or
    [N, C, h, w]: element-wise products summed style by style in a fixed order, skipping styles
    whose weight is zero everywhere (`present`, when the caller has them), so per-image weights
    and a map holding them give identical bits, and a weight of exactly 1 gives that style's
    parameters exactly."""
    w = weights if weights.dim() == 4 else weights[:, :, None, None]
    w = w.to(device=params.device, dtype=params.dtype)
    shape = (w.shape[0], params.shape[1]) + tuple(w.shape[2:])
    out = torch.zeros(shape, dtype=params.dtype, device=params.device)
    for s in present_styles(w) if present is None else present:
        out = out + w[:, s:s + 1] * params[s].view(1, -1, 1, 1)
    return out


# ============================================================================ the style of a pass

class StyleField:
    """The style of one forward pass: weights over S styles, per image or a map resized once per
    layer resolution and cached (norms at one resolution share it), the statistics mode, and,
    for networks whose styles are inputs (Magenta's embeddings), the styles themselves.

    `weights=None` (only with `styles`): style n for image n. `multiple`: the network's side
    multiple; a map smaller than it is padded (edge repeated) as the network's own output
    overhangs, so every layer's map is an exact box average."""

    def __init__(self, weights: Optional[torch.Tensor], num_styles: int,
                 statistics: Statistics = "region", styles: Optional[torch.Tensor] = None,
                 multiple: int = 1) -> None:
        if weights is None:
            if styles is None:
                raise ValueError("style weights are needed when the styles are not given")
            weights = torch.eye(num_styles, dtype=styles.dtype, device=styles.device)
        if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
            raise TypeError("style weights must be a floating-point tensor")
        if weights.dim() == 1:
            weights = weights[None]
        if weights.dim() not in (2, 4) or weights.shape[1] != num_styles:
            raise ValueError(f"style weights must be [S], [N, S] or [N, S, H, W] with "
                             f"S = {num_styles}; got {list(weights.shape)}")
        if styles is not None and styles.shape[0] != num_styles:
            raise ValueError(f"{num_styles} style weights for {styles.shape[0]} styles")
        if statistics not in ("region", "image"):
            raise ValueError(f"statistics must be 'region' or 'image', not {statistics!r}")
        if weights.dim() == 4 and weights.device.type != "meta" \
                and bool((weights == weights[:, :, :1, :1]).all()):
            weights = weights[:, :, 0, 0]
        if weights.dim() == 4 and multiple > 1:
            height, width = weights.shape[-2:]
            extra_h, extra_w = -height % multiple, -width % multiple
            if extra_h or extra_w:
                weights = F.pad(weights, (0, extra_w, 0, extra_h), mode="replicate")
        self.weights = weights
        self.styles = styles
        self.num_styles = num_styles
        self.spatial = weights.dim() == 4
        self.statistics = statistics
        self._maps: dict[tuple[int, int], torch.Tensor] = {}
        self._shares: dict[tuple[int, int], torch.Tensor] = {}
        self._present: Optional[list[int]] = None

    def present(self) -> list[int]:
        """The styles with a non-zero weight anywhere (computed once per pass)."""
        if self._present is None:
            self._present = present_styles(self.weights)
        return self._present

    @property
    def images(self) -> int:
        return int(self.weights.shape[0])

    def at(self, height: int, width: int) -> torch.Tensor:
        """[N, S] (per image) or [N, S, height, width] (per pixel)."""
        if not self.spatial:
            return self.weights
        key = (height, width)
        if key not in self._maps:
            self._maps[key] = resize_weights(self.weights, height, width)
        return self._maps[key]

    def regions(self, height: int, width: int) -> Optional[torch.Tensor]:
        """Each present style's share of each pixel, [N, K, height, width] (sums to 1 where any
        weight is non-zero), or None when statistics are taken over the whole layer."""
        if not self.spatial or self.statistics == "image":
            return None
        key = (height, width)
        if key not in self._shares:
            weights = self.at(height, width)
            present = torch.tensor(present_styles(weights), dtype=torch.long,
                                   device=weights.device)
            weights = weights.index_select(1, present)
            total = weights.sum(1, keepdim=True)
            self._shares[key] = weights / torch.where(total == 0, 1.0, total)
        return self._shares[key]


def statistics(x: torch.Tensor, regions: Optional[torch.Tensor] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over H, W per image and channel, [N, C, 1, 1]; with `regions`
    (shares [N, K, h, w]) each region's weighted statistics, mixed per pixel by its shares,
    [N, C, h, w]."""
    if regions is None:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return mean, var
    regions = regions.to(device=x.device, dtype=x.dtype)
    # two passes (means, then squared deviations from each region's own mean): a one-pass
    # E[x^2] - E[x]^2 cancels badly where a region is nearly flat next to a different one (a sky
    # beside the ground). The sums over pixels are batched matrix products: x is read once for
    # all the means, once per region for its variance, and the mixed maps are written once.
    flat = x.flatten(2)                                                  # [N, C, hw]
    shares = regions.flatten(2)                                          # [N, K, hw]
    mass = shares.sum(2)[:, None, :]                                     # [N, 1, K]
    mass = torch.where(mass == 0, 1.0, mass)
    mu = torch.bmm(flat, shares.transpose(1, 2)) / mass                 # [N, C, K]
    sigma2 = torch.empty_like(mu)
    for k in range(shares.shape[1]):
        deviation = (flat - mu[:, :, k:k + 1]).square_()
        sigma2[:, :, k:k + 1] = torch.bmm(deviation, shares[:, k:k + 1].transpose(1, 2))
    sigma2 /= mass
    mean = torch.bmm(mu, shares).view(x.shape)                           # mixed per pixel
    var = torch.bmm(sigma2, shares).view(x.shape)
    return mean, var


# ============================================================================ the norm

class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm (biased variance over H x W, `eps`) with gamma/beta from a StyleField:
    the one given to `forward`, else the one bound by `bind_styles`. Subclasses say how the
    field's S styles become parameters (`style_params`)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.field: Optional[StyleField] = None

    def style_params(self, field: StyleField) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each [S, C], of the field's S styles."""
        raise NotImplementedError

    def mixed(self, field: StyleField, height: int = 1, width: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma, beta mixed by the field's weights at a height x width layer: [N, C, 1, 1]
        (per image) or [N, C, height, width] (per pixel)."""
        gamma, beta = self.style_params(field)
        weights = field.at(height, width)
        present = field.present()
        return mix_params(gamma, weights, present), mix_params(beta, weights, present)

    def scale_shift(self, x: torch.Tensor, field: StyleField
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """y = x * scale + shift, with scale = gamma / sqrt(var + eps), shift = beta - mean *
        scale (per channel, or per pixel for a weight map)."""
        if field.images != x.shape[0]:
            raise ValueError(f"style weights for {field.images} images, got {x.shape[0]}")
        height, width = x.shape[-2], x.shape[-1]
        mean, var = statistics(x, field.regions(height, width))
        gamma, beta = self.mixed(field, height, width)
        scale = gamma.to(x.device) * torch.rsqrt(var + self.eps)
        shift = beta.to(x.device) - mean * scale
        return scale, shift

    def _field(self, field: Optional[StyleField]) -> StyleField:
        field = field if field is not None else self.field
        if field is None:
            raise RuntimeError(f"{type(self).__name__} has no style; call the network with "
                               "one or inside bind_styles(...)")
        return field

    def forward(self, x: torch.Tensor, field: Optional[StyleField] = None) -> torch.Tensor:
        if x.is_meta:                  # shape-only passes (the memory estimate): elementwise
            return torch.empty_like(x)
        scale, shift = self.scale_shift(x, self._field(field))
        return x * scale + shift

    def normalise_(self, x: torch.Tensor) -> torch.Tensor:
        """In place, over all of x (the tiler hands it a whole layer in host memory)."""
        scale, shift = self.scale_shift(x, self._field(None))
        return x.mul_(scale).add_(shift)


@contextlib.contextmanager
def bind_styles(network: nn.Module, field: StyleField) -> Iterator[StyleField]:
    """Give every conditional norm of `network` the field for the calls made inside the block.
    One forward at a time per network object; binding the field that is already bound (an
    engine binds, then calls the network's forward, which binds too) changes nothing."""
    norms = [m for m in network.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    if norms and all(norm.field is field for norm in norms):
        yield field
        return
    if any(norm.field is not None for norm in norms):
        raise RuntimeError("styles are already bound to this network (nested or concurrent use)")
    for norm in norms:
        norm.field = field
    try:
        yield field
    finally:
        for norm in norms:
            norm.field = None


__all__ = ["ConditionalInstanceNorm2d", "Statistics", "StyleField", "bind_styles",
           "mix_params", "present_styles", "resize_weights", "statistics"]
