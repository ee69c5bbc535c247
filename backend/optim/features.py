"""The VGG-19 layers the optimisation methods read, from AdaIN's normalised VGG (no new download).

`vgg_normalised.pth` is Gatys' normalised VGG-19 with a leading 1x1 colour conv (RGB 0..1 in,
Caffe's BGR mean-subtracted 0..255 out) and reflection padding. Its first 44 modules reach
relu5_1; the indices below are where each ReLU sits in that `nn.Sequential`.

`normalise_like_gatys` rescales a random-weight network the way Gatys et al. normalised the real
one (mean activation of every filter = 1), so loss scales and default weights can be measured here
without the real weights.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

LAYER_INDEX: Mapping[str, int] = {
    "relu1_1": 3, "relu2_1": 10, "relu3_1": 17, "relu4_1": 30, "relu4_2": 33, "relu5_1": 43,
}
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
DEPTH = 44            # modules [:44] reach relu5_1
MIN_SIDE = 17         # relu5_1 (ceil(side / 16)) then still has 2 positions for reflection pads

# Caffe's VGG preprocessing (what module 0 of the released file does): RGB 0..1 -> BGR 0..255
# minus the ImageNet mean. Used to give a random-weight encoder the real input scale.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class FeatureExtractor:
    """Runs modules [:44] of a VGG-layout encoder and returns the named layers' activations.

    The encoder is shared with other engines and never modified: callers take gradients with
    respect to the image only (torch.autograd.grad), so no weight gradients are computed.
    """

    def __init__(self, encoder: nn.Sequential) -> None:
        if len(encoder) < DEPTH:
            raise ValueError(f"the encoder has {len(encoder)} modules; relu5_1 needs {DEPTH}")
        for name, index in LAYER_INDEX.items():
            if not isinstance(encoder[index], nn.ReLU) or \
                    not isinstance(encoder[index - 1], nn.Conv2d):
                raise ValueError(f"module {index} ({name}) is not a ReLU after a convolution")
        self.modules: list[nn.Module] = [encoder[i] for i in range(DEPTH)]
        parameter = next(encoder.parameters())
        self.device = parameter.device
        self.dtype = parameter.dtype
        self._check_gradients()

    def _check_gradients(self) -> None:
        """Fail clearly if the layers do not pass gradients to the image (an inference-only
        fast path swapped in, say), instead of deep inside the optimiser."""
        probe = torch.zeros(1, 3, MIN_SIDE, MIN_SIDE, device=self.device, dtype=self.dtype,
                            requires_grad=True)
        with torch.enable_grad():
            (deepest,) = self(probe, [max(LAYER_INDEX, key=LAYER_INDEX.get)]).values()
            reached = deepest.requires_grad and torch.autograd.grad(
                deepest.sum(), probe, allow_unused=True)[0] is not None
        if not reached:
            raise ValueError("the encoder does not pass gradients to its input; give the "
                             "optimisation a plain copy of the network")

    def channels(self, layer: str) -> int:
        """Number of feature maps at `layer` (the width of the conv before its ReLU)."""
        conv = self.modules[LAYER_INDEX[layer] - 1]
        assert isinstance(conv, nn.Conv2d)
        return conv.out_channels

    def __call__(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations at `layers` for an N x 3 x H x W RGB 0..1 image (only the modules needed
        are run)."""
        wanted = {LAYER_INDEX[name]: name for name in layers}
        if not wanted:
            return {}
        found: dict[str, torch.Tensor] = {}
        x = image
        for index in range(max(wanted) + 1):
            x = self.modules[index](x)
            if index in wanted:
                found[wanted[index]] = x
        return found


def caffe_preprocessing(conv: nn.Conv2d) -> None:
    """Set a 3->3 1x1 conv to Caffe's VGG preprocessing (what the real module 0 computes)."""
    with torch.no_grad():
        weight = torch.zeros(3, 3, 1, 1)
        for out_channel, in_channel in enumerate((2, 1, 0)):   # RGB -> BGR
            weight[out_channel, in_channel] = 255.0
        conv.weight.copy_(weight)
        conv.bias.copy_(-torch.tensor(_CAFFE_MEAN_BGR))


@torch.no_grad()
def normalise_like_gatys(encoder: nn.Sequential, images: Sequence[torch.Tensor]) -> None:
    """Rescale each conv (in place) so every filter's mean activation over `images` and positions
    is 1, layer by layer, as Gatys et al. normalised VGG-19. ReLU commutes with positive scaling,
    so the activations already computed are rescaled instead of recomputed. Module 0 becomes
    Caffe's preprocessing. Filters that never fire keep their weights."""
    caffe_preprocessing(encoder[0])
    activations = list(images)
    for index, module in enumerate(encoder):
        activations = [module(x) for x in activations]
        previous = encoder[index - 1] if index else None
        if not (isinstance(module, nn.ReLU) and isinstance(previous, nn.Conv2d)):
            continue
        total = sum(x.sum(dim=(0, 2, 3)) for x in activations)
        count = sum(x.shape[0] * x.shape[2] * x.shape[3] for x in activations)
        mean = total / count
        scale = torch.where(mean > 0, 1.0 / mean.clamp_min(1e-30), torch.ones_like(mean))
        previous.weight.mul_(scale.reshape(-1, 1, 1, 1))
        if previous.bias is not None:
            previous.bias.mul_(scale)
        activations = [x * scale.reshape(1, -1, 1, 1) for x in activations]
