"""A conditional-norm network's forward pass as plain data: the steps a fused runner needs.

Why: the small style networks (CIN, Magenta) are chains of [upsample,] reflect pad, conv, norm,
activation, with residual blocks. Described as data, backend.perf can run them with fused native
kernels (backend/perf/fused.py) without knowing the network classes, and a network module keeps
no dependency on backend.perf (the import layers forbid it). A network offers
`conv_steps(*style_args)`: the steps for the same arguments its forward takes after the image,
or None when the fused form does not cover them (e.g. per-pixel style maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch

StepActivation = Literal["relu", "none", "sigmoid"]


@dataclass(frozen=True)
class ConvStep:
    """[nearest x`upsample`,] reflect pad k//2, conv (`weight` [K, C, k, k], no bias, `stride`),
    then an instance norm with per-image parameters (`gamma`, `beta`: [N, K], biased variance,
    `eps`) or else `bias` [K] (or nothing), then the activation."""

    weight: torch.Tensor
    stride: int = 1
    upsample: int = 1
    gamma: Optional[torch.Tensor] = None
    beta: Optional[torch.Tensor] = None
    eps: float = 1e-5
    bias: Optional[torch.Tensor] = None
    activation: StepActivation = "relu"

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The raw output's height and width for an input of height x width: upsample, pad
        k//2 on every side, convolve with the stride."""
        pad, kernel = self.kernel // 2, self.kernel
        return ((height * self.upsample + 2 * pad - kernel) // self.stride + 1,
                (width * self.upsample + 2 * pad - kernel) // self.stride + 1)


@dataclass(frozen=True)
class ResidualSteps:
    """x + steps(x): no activation after the sum (the last step's activation is "none")."""

    steps: tuple[ConvStep, ...]


Step = Union[ConvStep, ResidualSteps]

__all__ = ["ConvStep", "ResidualSteps", "Step", "StepActivation"]
