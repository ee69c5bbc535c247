"""3x3 convolutions through the native Winograd F(4x4,3x3) kernel on the CPU (kernels/winograd.cpp).

`WinogradConv2d` is an nn.Conv2d (same parameters, same state_dict, same hooks) whose forward
uses the kernel when it can: float32 CPU input, no autograd, channel counts that are multiples
of 16, and the kernel built (see native.py). Otherwise it is exactly nn.Conv2d.

`fuse_instance_norms(network)` lets such a convolution normalise its own output in place when
an InstanceNorm2d follows it (CycleGAN).

`use_winograd(network)` swaps the network's eligible convolutions and folds a 1-px
ReflectionPad2d/ZeroPad2d in front of one into the convolution (`padding=1,
padding_mode="reflect"`, the pad module becomes an Identity): same function, one copy of the
activations fewer. The tiler reads such a convolution's padding like any nn.Conv2d's.

Fidelity: Winograd sums the same products in another order, with transform coefficients up to
8: measured relative error about 1e-5 per layer against oneDNN (tests/unit/test_winograd.py),
well inside the 8-bit tolerance end to end.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .adopt import adopt

CHANNEL_BLOCK = 16
# Below 32 channels in or out the kernel does not pay: 16->16 at 1024² took 38 ms against 33 ms
# for oneDNN's direct channels_last convolution; 32->32 at 512²: 16 vs 22 ms; 64->64: 38 vs 69.
MIN_CHANNELS = 32
CHUNK_FLOATS = 1 << 15       # tiles per chunk x max(C, K): keeps a chunk's V and M ~4.7 MB each
MIN_CHUNK, MAX_CHUNK = 64, 1024
TRANSFORM_SLICE_FLOATS = 1 << 16  # a weight transform's slice: U floats per slice (256 KiB)

# G of F(4x4,3x3) for the interpolation points 0, 1, -1, 2, -2 (and infinity)
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """[K, C, 3, 3] -> U [36, C, K] with U[6i+j] = (G w G^T)[i, j], computed in float64.

    In slices of output channels: whole-weight float64 temporaries (tens of MiB for 256->256)
    freed between long-lived U tensors left holes in the C heap that it never gave back
    (measured: 177-270 MiB of RSS over CycleGAN's 18 convolutions); a slice's are < 1 MiB."""
    k, c = weight.shape[:2]
    u = torch.empty(36, c, k, dtype=torch.float32, device=weight.device)
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    step = max(1, TRANSFORM_SLICE_FLOATS // (36 * c))
    for first in range(0, k, step):
        part = weight.detach()[first:first + step].double()
        u[:, :, first:first + step] = torch.einsum("ai,kcij,bj->abck", g, part, g).reshape(36, c, -1)
    return u


def chunk_for(c_in: int, c_out: int) -> int:
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_FLOATS // max(c_in, c_out)))


class WinogradConv2d(nn.Conv2d):
    """nn.Conv2d 3x3/stride 1 computed by the Winograd kernel where it applies."""

    @staticmethod
    def applies(module: nn.Module) -> bool:
        return (type(module) is nn.Conv2d and module.kernel_size == (3, 3)
                and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
                and module.in_channels % CHANNEL_BLOCK == 0
                and module.out_channels % CHANNEL_BLOCK == 0
                and min(module.in_channels, module.out_channels) >= MIN_CHANNELS
                and module.padding in ((0, 0), (1, 1))
                and module.padding_mode in ("zeros", "reflect"))

    @classmethod
    def from_module(cls, conv: nn.Conv2d, pad: Optional[str] = None) -> "WinogradConv2d":
        """`pad`: "reflect"/"zeros" when a 1-px pad module in front of `conv` is folded in."""
        new = adopt(cls, conv)
        if pad is not None:
            new.padding = (1, 1)
            new._reversed_padding_repeated_twice = [1, 1, 1, 1]
            new.padding_mode = pad
        new.register_buffer("winograd_weight", None, persistent=False)
        new._source_version = (-1, -1)
        new.norm_eps = None
        new._compiled_kernel = False
        return new

    def _transformed(self) -> torch.Tensor:
        weight = self.weight
        key = (weight.data_ptr(), -1 if weight.is_inference() else weight._version)
        if self.winograd_weight is None or self._source_version != key:
            self.winograd_weight = transform_weight(weight)
            self._source_version = key
        return self.winograd_weight

    def _kernel_for(self, x: torch.Tensor, pad: int):
        """The loaded native library if it can compute this call, else None."""
        if x.dim() != 4 or self.weight.dtype != torch.float32 \
                or (torch.is_grad_enabled() and self.weight.requires_grad):
            return None
        h, w = x.shape[-2:]
        if h + 2 * pad < 3 or w + 2 * pad < 3:
            return None
        if pad and self.padding_mode == "reflect" and (h < 2 or w < 2):
            return None
        return native.cpu_ops_for(x)

    def valid_conv(self, x: torch.Tensor) -> torch.Tensor:
        """This convolution without its padding, on an input that already carries it (a tile
        with its halo, as the layer-by-layer tiler gathers them)."""
        ops = self._kernel_for(x, pad=0)
        if ops is not None:
            return self._run(ops, x, 0)
        return F.conv2d(x, self.weight, self.bias)

    def _run(self, ops, x: torch.Tensor, pad: int) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        bias = self.bias.detach() if self.bias is not None else x.new_empty(0)
        return ops.winograd_conv3x3(x, self._transformed(), bias.contiguous(), pad,
                                    self.padding_mode == "reflect",
                                    chunk_for(self.in_channels, self.out_channels))

    def prepare_for_compile(self) -> None:
        """torch.compile cannot trace the weight cache's checks: transform the weight now (the
        networks are inference-only; a later weight change is not seen while compiled)."""
        self._transformed()
        self._compiled_kernel = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled_kernel and torch.compiler.is_compiling():
            bias = self.bias if self.bias is not None else x.new_empty(0)
            y = compiled_op()(x, self.winograd_weight, bias, self.padding[0],
                              self.padding_mode == "reflect",
                              chunk_for(self.in_channels, self.out_channels))
        else:
            ops = self._kernel_for(x, pad=self.padding[0])
            if ops is not None:
                y = self._run(ops, x, self.padding[0])
                if self.norm_eps is not None:    # normalise the fresh output where it lies
                    ops.instance_norm_cl_(y, self.norm_eps)
                return y
            y = super().forward(x)               # nn.Conv2d's own padding and convolution
        return y if self.norm_eps is None else F.instance_norm(y, eps=self.norm_eps)

def fuse_instance_norms(network: nn.Module) -> int:
    """A WinogradConv2d followed by an InstanceNorm2d without affine parameters or running
    statistics (CycleGAN's layout) normalises its own output in place: no second activation
    tensor, one pass less. The norm module becomes an Identity; the convolution carries its
    eps (`norm_eps`), and the layer-by-layer tiler applies whole-image statistics after it."""
    fused = 0
    for parent in list(network.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = parent._modules[first], parent._modules[second]
            if isinstance(conv, WinogradConv2d) and conv.norm_eps is None \
                    and isinstance(norm, nn.InstanceNorm2d) and not norm.affine \
                    and not norm.track_running_stats:
                conv.norm_eps = float(norm.eps)
                parent._modules[second] = nn.Identity()
                fused += 1
    return fused


_COMPILED_OP = None


def compiled_op():
    """The kernel as a torch.library operator, so a torch.compile graph can hold it (Inductor
    then fuses the normalisations and activations around it instead of breaking the graph)."""
    global _COMPILED_OP
    if _COMPILED_OP is None:
        @torch.library.custom_op("style_transfer::winograd_conv3x3", mutates_args=())
        def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, pad: int,
                             reflect: bool, chunk: int) -> torch.Tensor:
            ops = native.kernel(native.CPU_LIBRARY, build="never")
            if ops is None:
                raise RuntimeError("the native kernel library is not loaded")
            return ops.winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), u,
                                        bias.contiguous(), pad, reflect, chunk)

        @winograd_conv3x3.register_fake
        def _(x, u, bias, pad, reflect, chunk):
            n, _, h, w = x.shape
            return torch.empty((n, u.shape[2], h + 2 * pad - 2, w + 2 * pad - 2),
                               dtype=x.dtype, device=x.device,
                               memory_format=torch.channels_last)

        _COMPILED_OP = winograd_conv3x3
    return _COMPILED_OP


_FOLDABLE_PADS = {nn.ReflectionPad2d: "reflect", nn.ZeroPad2d: "zeros"}


def _pad_kind(module: nn.Module) -> Optional[str]:
    kind = _FOLDABLE_PADS.get(type(module))
    if kind is None or tuple(module.padding) != (1, 1, 1, 1):
        return None
    return kind


def use_winograd(network: nn.Module) -> int:
    """Swap every eligible Conv2d (folding a 1-px pad module in front of it); returns how many."""
    swapped = 0
    for parent in list(network.modules()):
        names = list(parent._modules)
        for index, name in enumerate(names):
            child = parent._modules[name]
            if child is None or not WinogradConv2d.applies(child):
                continue
            before = parent._modules[names[index - 1]] if index > 0 else None
            kind = _pad_kind(before) if isinstance(parent, nn.Sequential) and before is not None \
                else None
            if kind is not None and child.padding == (0, 0):
                parent._modules[name] = WinogradConv2d.from_module(child, kind)
                parent._modules[names[index - 1]] = nn.Identity()
            else:
                parent._modules[name] = WinogradConv2d.from_module(child)
            swapped += 1
    return swapped
