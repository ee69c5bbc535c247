"""Resampling convolutions (stride > 1, and transposed ones) run in row strips that give their
input's memory back to the operating system as they consume it, on the CPU.

Why: at the ends of an image-to-image network the largest tensors meet. CycleGAN at 2048² holds
the 1 GiB 64-channel head output while the first stride-2 convolution writes its 512 MiB, and
the 512 MiB input of the last transposed convolution while it writes its 1 GiB: 1.5 GiB live
at both ends, the process's peak. Computed in strips of output rows, a strip needs only a band
of input rows, and the rows behind the band are never read again: their pages are released
(madvise MADV_DONTNEED) while the output grows, so input and output together stay at about the
larger of the two (measured: see bench/results/memory-cpu-2026-12-03b.md).

This only works on an input nobody else holds: the caller hands it over in a one-element list
(`run(conv, [x])` after dropping its own name) and the runner checks that the list held the
last reference and that no other tensor shares its storage; otherwise the layer runs whole, as
before. A released page reads as zeros, so the input tensor must not outlive the call: it is
dropped before `run` returns.

The arithmetic is the layer's own (F.conv2d / F.conv_transpose2d on each band of rows with the
layer's weight and stride; zero rows where the layer pads): the same sums as one call, within
float32 rounding of it (oneDNN may order a band's sums differently: ≤ 1e-6 per layer, < 0.02
8-bit levels through CycleGAN, tests/unit/test_streamed.py). The layer's forward pre-hooks and hooks fire once, with
the whole output (progress and cancellation) and the input's tensor, whose pages are given back
by then: a hook may read its shape, not its values.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .tiling import fire_hooks, fire_pre_hooks

# Streaming costs a copy of the output (each strip is computed into a temporary: PyTorch's
# convolutions take no output buffer): measured 0.2-0.3 s on a 1 GiB output, 25-35% of the
# layer. So only layers whose input and output together are this large stream: CycleGAN's
# two peak layers at 2048² (1.5 GiB each), none at 1024² and below (the speed benchmarks).
MIN_STREAM_BYTES = 1 << 30
STRIP_BYTES = 16 << 20             # output bytes per strip (4 MiB: 1.3x slower, band overlap)
PAGE = 4096
MADV_DONTNEED = 4


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a resampling layer: out[o] sums in[i] with o = stride*i - pad + t
    (transposed) or i = stride*o - pad + t (strided), t < kernel."""

    kernel: int
    stride: int
    pad: int
    transposed: bool
    output_padding: int = 0

    def out_length(self, length: int) -> int:
        if self.transposed:
            return (length - 1) * self.stride - 2 * self.pad + self.kernel + self.output_padding
        return (length + 2 * self.pad - self.kernel) // self.stride + 1

    def needs(self, first: int, stop: int, length: int) -> tuple[int, int]:
        """Input rows [a, b) (clipped to the input) that output rows [first, stop) read."""
        if self.transposed:
            a = -((self.kernel - 1 - first - self.pad) // self.stride)   # ceil((o+p-k+1)/s)
            b = (stop - 1 + self.pad) // self.stride + 1
        else:
            a = self.stride * first - self.pad
            b = self.stride * (stop - 1) - self.pad + self.kernel
        return max(0, a), min(length, b)


def _axis(module: nn.Module) -> Optional[Axis]:
    """The layer's row geometry if it can run in strips (square, ungrouped, undilated, zero
    padding; a transposed layer whose output padding adds no bias-only rows)."""
    transposed = type(module) is nn.ConvTranspose2d
    if not transposed and type(module) is not nn.Conv2d:
        return None
    k, s, p = module.kernel_size, module.stride, module.padding
    if not (isinstance(p, tuple) and k[0] == k[1] and s[0] == s[1] > 1 and p[0] == p[1]
            and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros"):
        return None
    op = module.output_padding[0] if transposed else 0
    if transposed and (module.output_padding[0] != module.output_padding[1] or op > p[0]
                       or s[0] > k[0]):
        return None
    return Axis(k[0], s[0], p[0], transposed, op)


def applies(module: nn.Module) -> bool:
    return _axis(module) is not None


def worth(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether streaming `module` over x can give memory back: a large float channels_last
    CPU input, no autograd."""
    return (applies(module) and isinstance(x, torch.Tensor) and x.device.type == "cpu"
            and x.dim() == 4 and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and x.shape[1] == module.in_channels
            and _layer_bytes(module, x) >= MIN_STREAM_BYTES
            and x.is_contiguous(memory_format=torch.channels_last))


def _layer_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """The input's and the output's bytes."""
    axis = _axis(module)
    n, _, height, width = x.shape
    out = n * module.out_channels * axis.out_length(height) * axis.out_length(width)
    return (x.numel() + out) * x.element_size()


def _sole_owner(x: torch.Tensor) -> bool:
    """No other Python name and no other tensor (a view) reaches x's memory."""
    # getrefcount counts run()'s local, this function's argument and its own argument;
    # the storage's use count counts x and the storage object asked for here
    return sys.getrefcount(x) <= 3 and x._base is None \
        and torch._C._storage_Use_Count(x.untyped_storage()._cdata) <= 2


_LIBC = None


def _madvise():
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
            _LIBC = libc.madvise
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def release(x: torch.Tensor, start: int, stop: int) -> int:
    """Give the whole pages of x's bytes [start, stop) back; returns the bytes released (0 where
    the platform has no madvise)."""
    madvise = _madvise()
    if not madvise:
        return 0
    base = x.data_ptr()
    first = -(-(base + start) // PAGE) * PAGE
    last = (base + stop) // PAGE * PAGE
    if last <= first:
        return 0
    if madvise(first, last - first, MADV_DONTNEED) != 0:
        return 0
    return last - first


def _strip_rows(module: nn.Module, out_width: int) -> int:
    row_bytes = module.out_channels * out_width * 4
    return max(1, STRIP_BYTES // row_bytes)


Strip = tuple[int, int, int, int]      # output rows [first, stop) from input rows [a, b)


def plan(axis: Axis, height: int, rows: int) -> Optional[list[Strip]]:
    """The strips of one image, or None where a transposed layer's band would not cover its
    strip (the band is convolved with the layer's own padding: see _strip)."""
    out_h = axis.out_length(height)
    strips: list[Strip] = []
    for first in range(0, out_h, rows):
        stop = min(out_h, first + rows)
        a, b = axis.needs(first, stop, height)
        if axis.transposed:
            origin = axis.stride * a          # the band's output row 0 (see _strip)
            if first < origin or stop > origin + axis.out_length(b - a):
                return None
        strips.append((first, stop, a, b))
    return strips


def _strip(module: nn.Module, axis: Axis, image: torch.Tensor, strip: Strip) -> torch.Tensor:
    """Output rows [first, stop) of one image from its input rows [a, b)."""
    first, stop, a, b = strip
    band = image[:, :, a:b]
    weight, bias = module.weight, module.bias
    if axis.transposed:
        # the layer's own padding on both axes (oneDNN's fast path; an asymmetric (0, p) was
        # 2x slower): the band's output row r is then the layer's row stride * a + r
        out = F.conv_transpose2d(band, weight, bias, stride=axis.stride, padding=axis.pad,
                                 output_padding=axis.output_padding)
        origin = axis.stride * a
        return out[:, :, first - origin:stop - origin]
    top = a - (axis.stride * first - axis.pad)        # rows of zero padding above the band
    bottom = axis.stride * (stop - 1) - axis.pad + axis.kernel - b
    if top or bottom:
        band = F.pad(band, (0, 0, top, bottom))
    return F.conv2d(band, weight, bias, stride=axis.stride, padding=(0, axis.pad))


def run(module: nn.Module, box: list) -> torch.Tensor:
    """module(x) for the x in `box` (taken out of it), its input released as the strips go
    when this call holds the only reference; else one ordinary call."""
    x = box.pop()
    axis = _axis(module)
    if axis is None or not worth(module, x) or not _sole_owner(x):
        return module(x)
    n, _, height, width = x.shape
    strips = plan(axis, height, _strip_rows(module, axis.out_length(width)))
    if strips is None:
        return module(x)
    fire_pre_hooks(module, x)
    y = torch.empty((n, module.out_channels, axis.out_length(height), axis.out_length(width)),
                    dtype=x.dtype, memory_format=torch.channels_last)
    row_bytes = x.stride(2) * x.element_size()
    image_bytes = x.stride(0) * x.element_size()
    for index in range(n):            # autograd is off (worth): no_grad or inference_mode
        image = x[index:index + 1]
        released = 0
        for number, strip in enumerate(strips):
            first, stop = strip[:2]
            y[index:index + 1, :, first:stop] = _strip(module, axis, image, strip)
            # rows before the next strip's band are read no more
            done = strips[number + 1][2] if number + 1 < len(strips) else height
            if done * row_bytes > released:
                release(x, index * image_bytes + released,
                        index * image_bytes + done * row_bytes)
                released = done * row_bytes
    fire_hooks(module, x, y)          # x: the input's tensor, its consumed rows given back
    del x, image
    return y
