"""Few-channel convolution blocks of the module networks through the fused layer kernel
(kernels/fused_conv.cpp) on the CPU.

Why: the first and last blocks of CycleGAN (reflect pad, a 7x7 convolution from or into 3
channels, instance norm, ReLU or Tanh) and of the AdaIN networks (pad + 3x3 conv into or out of
3 channels) are where oneDNN is weakest: a 1024² CycleGAN pass spent 10% of its time in the
7x7 64->3 convolution at 29 GFLOP/s, and another 8% in the pads, norms and activations around
the two 7x7 convolutions (bench/bench_layers.py). The fused kernel reads the input once,
applying its pending instance norm and ReLU as it prepares each row, pads by reflection on the
fly, convolves, and gathers the output's statistics in the same pass.

A block is a run of a Sequential's children:

    [InstanceNorm2d] [ReLU] ReflectionPad2d(p) Conv2d(k = 2p + 1, stride 1) [InstanceNorm2d]
    [ReLU | Tanh]

with a convolution that has at most 8 input or output channels (the few-channel layers; the
wide ones go through the Winograd kernel), output channels the kernel supports (3, 4, 8 or a
multiple of 16) and norms without affine parameters or running statistics. `install(network)`
finds such blocks and gives their Sequential a forward that runs them fused where it can
(float32 CPU input, no autograd, the library loaded, a channels_last input where the block
starts with a norm); every other call, and every other child, runs as before. The modules stay
where they are (same state_dict, and the layer-by-layer tiler walks them one by one); the
convolution's forward hooks still fire with the block's input and the convolution's output
shape (progress and cancellation come from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from . import fused, native, streamed
from .tiling import fire_hooks, fire_pre_hooks

MAX_FEW_CHANNELS = 8
_EMPTY = torch.empty(0)


def _plain_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.InstanceNorm2d) and not module.affine \
        and not module.track_running_stats


def _is_relu(module: nn.Module) -> bool:
    return type(module) is nn.ReLU


def _fusable_conv(conv: nn.Module, pad: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d or type(pad) is not nn.ReflectionPad2d:
        return False
    p = tuple(pad.padding)
    k_out, k_in, kh, kw = conv.weight.shape
    return (len(set(p)) == 1 and kh == kw == 2 * p[0] + 1 and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding == (0, 0)
            and min(k_in, k_out) <= MAX_FEW_CHANNELS
            and (k_out % fused.VECTOR == 0 or k_out in fused.BY_PIXEL_CHANNELS))


@dataclass(frozen=True)
class Block:
    """Children start..stop-1 of a Sequential, computed as one fused convolution."""

    start: int
    stop: int
    conv: nn.Conv2d
    in_norm: Optional[nn.InstanceNorm2d]
    in_relu: bool
    out_norm: Optional[nn.InstanceNorm2d]
    out_activation: str                 # "none", "relu" or "tanh"


def find_blocks(children: list[nn.Module]) -> list[Block]:
    """The non-overlapping blocks among a Sequential's children, in order."""
    blocks: list[Block] = []
    index = 0
    while index < len(children):
        block = _block_at(children, index)
        if block is None:
            index += 1
            continue
        blocks.append(block)
        index = block.stop
    return blocks


def _block_at(children: list[nn.Module], start: int) -> Optional[Block]:
    at = start
    in_norm = children[at] if _plain_norm(children[at]) else None
    at += in_norm is not None
    in_relu = at < len(children) and _is_relu(children[at])
    at += in_relu
    if at + 1 >= len(children) or not _fusable_conv(children[at + 1], children[at]):
        return None
    conv = children[at + 1]
    at += 2
    out_norm = children[at] if at < len(children) and _plain_norm(children[at]) else None
    at += out_norm is not None
    activation = "none"
    if at < len(children) and (_is_relu(children[at]) or type(children[at]) is nn.Tanh):
        activation = "relu" if _is_relu(children[at]) else "tanh"
        at += 1
    return Block(start, at, conv, in_norm, in_relu, out_norm, activation)


def run_block(ops: Any, block: Block, x: torch.Tensor) -> Optional[torch.Tensor]:
    """The block on x through the kernel, or None when the kernel cannot take this input."""
    if x.dim() != 4 or x.shape[1] != block.conv.in_channels:
        return None
    pad = block.conv.kernel_size[0] // 2
    if pad >= min(x.shape[2], x.shape[3]):
        return None                                   # ReflectionPad2d's own error, eagerly
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    if block.in_norm is not None and not channels_last:
        return None                                   # the statistics kernel's layout
    fire_pre_hooks(block.conv, x)                    # the block's work starts here
    if block.in_norm is not None:
        in_scale, in_shift = ops.instance_norm_stats_cl(x, float(block.in_norm.eps))
    else:
        in_scale = in_shift = _EMPTY
        if not channels_last:
            x = x.contiguous()
    k_out = block.conv.out_channels
    norm = block.out_norm is not None
    gamma = torch.ones(x.shape[0], k_out) if norm else _EMPTY
    beta = torch.zeros(x.shape[0], k_out) if norm else _EMPTY
    bias = block.conv.bias
    raw, scale, shift = ops.fused_conv(
        x, in_scale, in_shift, block.in_relu, _EMPTY, block.conv.weight.detach(), 1, 1,
        gamma, beta, bias.detach().contiguous() if bias is not None else _EMPTY,
        float(block.out_norm.eps) if norm else 0.0, _EMPTY)
    out = ops.fused_apply(raw, scale, shift, 1 if block.out_activation == "relu" else 0,
                          _EMPTY, raw)                # in place: raw is this call's own
    if block.out_activation == "tanh":
        out.tanh_()
    fire_hooks(block.conv, x, raw)                    # ... and ends here
    return out


class BlockFusedForward:
    """A Sequential's forward with its blocks run by the fused kernel where it can, and its
    resampling layers streamed (streamed.py) where the input is the forward's own."""

    def __init__(self, sequence: nn.Sequential, blocks: list[Block],
                 eager: Callable[[torch.Tensor], torch.Tensor], stream: bool = False) -> None:
        self.sequence = sequence
        self.starts = {block.start: block for block in blocks}
        self.eager = eager
        self.stream = stream
        self.calls = {"fused": 0, "eager": 0, "streamed": 0}

    def __call__(self, x: Any) -> Any:
        return self.run_first(x, len(self.sequence))

    def run_first(self, x: Any, count: int) -> Any:
        """The first `count` children on x (all of them: the forward), blocks that lie wholly
        among them fused (a network that runs a prefix of itself, e.g. AdaIN's encoder up to
        relu4_1, calls this)."""
        children = list(self.sequence._modules.values())[:count]
        if not isinstance(x, torch.Tensor) or torch.is_grad_enabled():
            self.calls["eager"] += 1
            if count == len(self.sequence):
                return self.eager(x)
            for child in children:
                x = child(x)
            return x
        ops = native.cpu_ops_for(x) if self.starts else None
        index = 0
        while index < len(children):
            block = self.starts.get(index) if ops is not None else None
            out = run_block(ops, block, x) if block is not None and block.stop <= count \
                else None
            if out is not None:
                self.calls["fused"] += 1
                x = out
                index = block.stop
                continue
            child = children[index]
            if self.stream and streamed.worth(child, x):
                box = [x]             # handed over: streamed.run may give its pages back
                del x
                x = streamed.run(child, box)
                self.calls["streamed"] += 1
            else:
                x = child(x)
            index += 1
        return x


def install(network: nn.Module, blocks: bool = True, stream: bool = True) -> tuple[int, int]:
    """Give every Sequential of `network` that has fusable blocks (`blocks`) or resampling
    layers to stream (`stream`) the runner above (once); returns how many of each it found."""
    found = streamable = 0
    for module in network.modules():
        if not isinstance(module, nn.Sequential) \
                or isinstance(module.__dict__.get("forward"), BlockFusedForward):
            continue
        children = list(module._modules.values())
        here = find_blocks(children) if blocks else []
        resampling = sum(streamed.applies(child) for child in children) if stream else 0
        if here or resampling:
            module.forward = BlockFusedForward(module, here, module.forward,  # type: ignore
                                               stream=resampling > 0)
            found += len(here)
            streamable += resampling
    return found, streamable
