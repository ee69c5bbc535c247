"""FLOP count of one forward pass, from the network's own shapes (perf/shapes.py, else meta
tensors; no arithmetic either way).

Counts 2 x multiply-adds of Conv2d, ConvTranspose2d and Linear (what dominates these networks);
normalisation and activations are left out, so GFLOP/s figures are conservative.
"""

from __future__ import annotations

import torch
from torch import nn

from . import shapes


def _conv_flops_of_shapes(module: nn.Module, input_shape: tuple[int, ...],
                          output_shape: tuple[int, ...]) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        per_input = module.out_channels * module.kernel_size[0] * module.kernel_size[1] \
            // module.groups
        return 2 * shapes.nbytes(input_shape, 1) * per_input
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] \
            * module.kernel_size[1]
        return 2 * shapes.nbytes(output_shape, 1) * per_output
    if isinstance(module, nn.Linear):
        return 2 * shapes.nbytes(output_shape, 1) * module.in_features
    return 0


def _conv_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return _conv_flops_of_shapes(module, tuple(inputs[0].shape), tuple(output.shape))


def count_flops(network: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of network(x) for an x of `input_shape` (from the layers' geometry where
    perf/shapes.py describes the network, else from a meta pass)."""
    calls = shapes.walk(network, input_shape)
    if calls is not None:
        return sum(_conv_flops_of_shapes(call.module, call.input_shape, call.output_shape)
                   for call in calls)
    total = [0]

    def hook(module, inputs, output):
        total[0] += _conv_flops(module, inputs, output)

    shapes.meta_pass(network, input_shape,
                     [m.register_forward_hook(hook) for m in network.modules()
                      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))])
    return total[0]
