"""The layers a module network runs for one input, with their shapes, worked out from the layers'
own geometry instead of a pass on meta tensors.

Why: the first pass on meta tensors in a process imports PyTorch's decomposition machinery
(893 modules: dynamo, sympy, ...; measured 1.3 s and ~150 MiB of RSS here), and a cold
`stylize` of CycleGAN, pix2pix or AdaIN paid that for its progress weights and its memory
estimate. Their layers are a handful of kinds whose output shapes are textbook formulas, and
their blocks say how they compose (`walk_shapes`), so the same answers come without it.

    calls = walk(network, (1, 3, 512, 512))    # [LeafCall, ...] in execution order, or None

None means some module has no rule here (a network not described, a layer kind not listed):
the callers (engines/progress.output_elements, perf/budget.estimate_activations,
perf/flops.count_flops) then run `meta_pass` with their hooks on, as before. tests/unit/test_shapes.py checks
that the walk gives what the meta pass gives on every engine's networks.

A block that is neither a Sequential nor a leaf describes itself with

    def walk_shapes(self, walker: Walker, shape: Shape) -> Shape

calling `walker.run(child, shape)` for each child it runs, in order, and returning its output
shape. Like the memory estimate's hooks, such a block holds its input while its children run
(residual and skip connections).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.func import functional_call

Shape = tuple[int, ...]

# layers whose output has their input's shape
SAME_SHAPE: tuple[type, ...] = (
    nn.InstanceNorm2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU,
    nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Dropout, nn.Identity)
PADS: tuple[type, ...] = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d,
                          nn.ConstantPad2d)


class NoRule(Exception):
    """A module this walk cannot describe: the caller runs the meta pass instead."""


@dataclass(frozen=True)
class LeafCall:
    """One leaf module's call: its input and output shapes, and the inputs that enclosing
    blocks hold meanwhile."""

    module: nn.Module
    input_shape: Shape
    output_shape: Shape
    held: tuple[Shape, ...]


def _conv_length(length: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (length + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _transposed_length(length: int, kernel: int, stride: int, pad: int, dilation: int,
                       output_padding: int) -> int:
    return (length - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def _pool_length(length: int, kernel: int, stride: int, pad: int, dilation: int,
                 ceil_mode: bool) -> int:
    span = length + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + pad:
        out -= 1                       # the last window must start inside the input
    return out


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv(module: nn.Conv2d, shape: Shape) -> Shape:
    if not isinstance(module.padding, tuple) or len(shape) != 4 \
            or shape[1] != module.in_channels:
        raise NoRule(module)           # "same"/"valid" padding, or the meta pass's own error
    n, _, h, w = shape
    out = [_conv_length(length, module.kernel_size[i], module.stride[i], module.padding[i],
                        module.dilation[i]) for i, length in enumerate((h, w))]
    return (n, module.out_channels, *out)


def _conv_transposed(module: nn.ConvTranspose2d, shape: Shape) -> Shape:
    if len(shape) != 4 or shape[1] != module.in_channels:
        raise NoRule(module)
    n, _, h, w = shape
    out = [_transposed_length(length, module.kernel_size[i], module.stride[i],
                              module.padding[i], module.dilation[i], module.output_padding[i])
           for i, length in enumerate((h, w))]
    return (n, module.out_channels, *out)


def _pad(module: nn.Module, shape: Shape) -> Shape:
    left, right, top, bottom = module.padding
    n, c, h, w = shape
    return (n, c, h + top + bottom, w + left + right)


def _pool(module: nn.MaxPool2d, shape: Shape) -> Shape:
    kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    pad, dilation = _pair(module.padding), _pair(module.dilation)
    n, c, h, w = shape
    return (n, c, *[_pool_length(length, kernel[i], stride[i], pad[i], dilation[i],
                                 module.ceil_mode) for i, length in enumerate((h, w))])


def _upsample(module: nn.Upsample, shape: Shape) -> Shape:
    if module.size is not None or module.mode != "nearest" \
            or isinstance(module.scale_factor, tuple):
        raise NoRule(module)
    n, c, h, w = shape
    scale = float(module.scale_factor)
    return (n, c, int(h * scale), int(w * scale))


LEAF_RULES: tuple[tuple[type, Callable[[nn.Module, Shape], Shape]], ...] = (
    (nn.Conv2d, _conv), (nn.ConvTranspose2d, _conv_transposed), (PADS, _pad),
    (nn.MaxPool2d, _pool), (nn.Upsample, _upsample))


def leaf_shape(module: nn.Module, shape: Shape) -> Shape:
    """The output shape of one leaf layer (NoRule when the kind is not listed)."""
    if len(shape) != 4:
        raise NoRule(module)
    if isinstance(module, SAME_SHAPE):
        return shape
    for kinds, rule in LEAF_RULES:
        if isinstance(module, kinds):
            return rule(module, shape)
    raise NoRule(module)


def _plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


@dataclass
class Walker:
    """Walks one network for one input shape, recording the leaf calls."""

    root: nn.Module
    calls: list[LeafCall] = field(default_factory=list)
    held: list[Shape] = field(default_factory=list)

    def run(self, module: nn.Module, shape: Shape) -> Shape:
        if not module._modules:
            out = leaf_shape(module, shape)
            self.calls.append(LeafCall(module, shape, out, tuple(self.held)))
            return out
        if _plain_sequential(module):
            for child in module._modules.values():
                if child is not None:
                    shape = self.run(child, shape)
            return shape
        describe = getattr(module, "walk_shapes", None)
        if describe is None:
            raise NoRule(module)
        holds = module is not self.root
        if holds:
            self.held.append(shape)
        try:
            return describe(self, shape)
        finally:
            if holds:
                self.held.pop()


def walk(network: nn.Module, input_shape: Shape) -> Optional[list[LeafCall]]:
    """Every leaf call of network(x) for an x of `input_shape`, in order; None where a module
    has no rule (then a meta pass must answer)."""
    walker = Walker(network)
    try:
        walker.run(network, tuple(int(v) for v in input_shape))
    except NoRule:
        return None
    return walker.calls


def covers(network: nn.Module) -> bool:
    """Whether every module of `network` has a rule (its shape passes need no meta tensors)."""
    for module in network.modules():
        if not module._modules:
            if not isinstance(module, SAME_SHAPE) \
                    and not any(isinstance(module, kinds) for kinds, _ in LEAF_RULES):
                return False
        elif not _plain_sequential(module) and not hasattr(module, "walk_shapes"):
            return False
    return True


def nbytes(shape: Shape, element_size: int = 4) -> int:
    count = 1
    for value in shape:
        count *= int(value)
    return count * element_size


# ----------------------------------------------------------------------------- the fallback

@contextmanager
def hooks_silenced(network: nn.Module, keep: tuple | list = ()) -> Iterator[None]:
    """Take the forward hooks others attached (e.g. an engine's progress hooks) off `network`
    while it runs on meta tensors: a shape-only pass is no work and must not be reported as
    such. Hooks whose handles are in `keep` stay."""
    kept = {handle.id for handle in keep}
    saved = []
    for module in network.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            foreign = {key: hook for key, hook in hooks.items() if key not in kept}
            for key in foreign:
                del hooks[key]
            if foreign:
                saved.append((hooks, foreign))
    try:
        yield
    finally:
        for hooks, foreign in saved:
            hooks.update(foreign)


def meta_pass(network: nn.Module, input_shape: Shape, handles: list[Any],
              dtype: torch.dtype = torch.float32) -> None:
    """network(x) on meta tensors (shapes only, no memory, no arithmetic) with only the hooks
    in `handles` live; they are removed afterwards. A guarded network's instance-level forward
    would estimate itself again: the class's forward runs."""
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in list(network.named_parameters()) + list(network.named_buffers())
            if t is not None}
    instance_forward = network.__dict__.pop("forward", None)
    try:
        with torch.inference_mode(), hooks_silenced(network, keep=handles):
            functional_call(network, meta,
                            (torch.empty(input_shape, dtype=dtype, device="meta"),))
    finally:
        if instance_forward is not None:
            network.forward = instance_forward
        for handle in handles:
            handle.remove()
