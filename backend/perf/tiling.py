"""Run a network on an image too large for the memory budget, with the untiled result.

Two schemes, chosen by what the network contains:

- Local chains (AdaIN's VGG encoder and decoder: convs, pads, ReLUs, pools, upsampling) are run
  whole on overlapping tiles. Each tile carries a halo at least as wide as the chain's receptive
  radius, so its core equals the untiled result; neighbouring tiles also overlap by a feather
  band and are blended with linear ramps, so no seam can show. AdaIN's content statistics are
  then taken by the engine from the assembled relu4_1 map (small), i.e. over the whole image.
- Networks with image-wide normalisation (CycleGAN's InstanceNorm, pix2pix's BatchNorm with the
  image's statistics, Magenta's style norms) and skip connections are run layer by layer: every
  layer's full output is kept in host memory, convolutions are computed tile by tile on the
  compute device, and each normalisation layer first gathers its per-channel statistics over the
  whole tensor and then normalises it. The result equals the untiled forward up to float
  rounding. Host tensors come from a HostArena (hostmem.py): RAM within the host budget,
  disk-backed pages beyond it. On a CPU-only machine host and compute memory are the same RAM, so
  the budget is split: a small share for the convolution tiles, the rest for the whole-layer
  tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .budget import WORKSPACE_FACTOR, MemoryBudget, estimate_activations
from .hostmem import HostArena, is_channels_last

MIN_TILE = 16
# CPU: share of the budget for one convolution tile's working set (the rest holds whole
# layers), and a cap on it: small tiles cost no speed (measured: CycleGAN 1024² in 25 tiles per
# layer, 12.8 s, vs 13.2 s untiled; bench/results/perf-cpu-2026-11-27b.md).
CPU_TILE_SHARE = 0.25
CPU_TILE_CAP = 1 << 30


@dataclass
class TileStats:
    """What the last tiled call did (read by tests and the benchmark)."""

    mode: str = "untiled"       # untiled | chain | layerwise
    tiles: int = 0              # tiles of the largest layer (chain: tiles of the image)
    reason: str = ""            # budget | out_of_memory | forced
    layers: int = 0
    spilled: int = 0            # layerwise: bytes of whole-layer tensors kept on disk pages
    host_peak: int = 0          # layerwise: bytes of RAM-backed whole-layer tensors at most

    def reset(self, mode: str, reason: str) -> None:
        self.mode, self.reason, self.tiles, self.layers = mode, reason, 0, 0
        self.spilled = self.host_peak = 0


class NotLocal(Exception):
    """The chain holds a layer whose output depends on the whole image."""


# ============================================================================ local chains

@dataclass(frozen=True)
class ChainGeometry:
    """scale: output px per input px; align: tile origins are multiples of it (input px);
    radius: input px outside a tile that can change its output."""

    scale: Fraction
    align: int
    radius: int


def _flatten(layers: Sequence[nn.Module]) -> list[nn.Module]:
    flat: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            flat.extend(_flatten(list(layer)))
        else:
            flat.append(layer)
    return flat


_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.ELU,
              nn.GELU, nn.SiLU, nn.ReLU6, nn.Hardtanh)
_PADS = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)


def chain_geometry(layers: Sequence[nn.Module]) -> ChainGeometry:
    """Scale, alignment and receptive radius of a chain of local layers (raises NotLocal)."""
    jump = Fraction(1)          # input px per px of the current layer
    radius = Fraction(0)
    align = 1
    for layer in _flatten(layers):
        if isinstance(layer, nn.ConvTranspose2d):
            k, s = layer.kernel_size[0], layer.stride[0]
            jump /= s
            radius += k * jump
        elif isinstance(layer, nn.Conv2d):
            k, s, d = layer.kernel_size[0], layer.stride[0], layer.dilation[0]
            radius += (d * (k - 1) if s > 1 else d * (k - 1) / 2) * jump
            jump *= s
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            radius += k * jump
            jump *= s
        elif isinstance(layer, nn.Upsample):
            factor = layer.scale_factor
            factor = factor[0] if isinstance(factor, tuple) else factor
            if factor is None or float(factor) != int(factor) or layer.mode != "nearest":
                raise NotLocal(f"upsampling {layer} is not handled by the tiler")
            jump /= int(factor)
            radius += jump
        elif isinstance(layer, _PADS + _POINTWISE):
            continue
        else:
            raise NotLocal(f"{type(layer).__name__} is not a local layer")
        if jump.denominator == 1:
            align = math.lcm(align, jump.numerator)
    return ChainGeometry(1 / jump, align, math.ceil(radius) + 1)


def _spans(total: int, core: int, align: int) -> list[tuple[int, int]]:
    """Split [0, total) into cores of about `core` input px, starts multiples of `align`."""
    core = max(align, core // align * align)
    count = max(1, math.ceil(total / core))
    step = max(align, math.ceil(total / count / align) * align)
    spans, start = [], 0
    while start < total:
        end = min(total, start + step)
        if total - end < align:      # no sliver at the end
            end = total
        spans.append((start, end))
        start = end
    return spans


def _ramp(length: int, left: int, right: int, device) -> torch.Tensor:
    """Blend weights along one axis: linear ramps of `left`/`right` samples at the ends."""
    weight = torch.ones(length, device=device)
    if left > 0:
        weight[:left] = (torch.arange(left, device=device, dtype=torch.float32) + 0.5) / left
    if right > 0:
        weight[length - right:] = torch.minimum(
            weight[length - right:],
            (torch.arange(right, 0, -1, device=device, dtype=torch.float32) - 0.5) / right)
    return weight


def chain_tile_side(layers: Sequence[nn.Module], channels: int, batch: int, budget: int,
                    device: torch.device) -> int:
    """Largest square input tile (incl. halo) whose activations fit `budget`."""
    probe = 64 * chain_geometry(layers).align
    chain = nn.Sequential(*_flatten(layers))
    need = estimate_activations(chain, (batch, channels, probe, probe)).peak
    per_pixel = need * WORKSPACE_FACTOR.get(device.type, 2.0) / (probe * probe)
    return max(MIN_TILE, int(math.sqrt(budget / per_pixel)))


@dataclass(frozen=True)
class ChainPlan:
    """Tiles of a local chain: cores (input px), halo (input px), feather band (output px)."""

    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]
    halo: int
    band: int
    scale: Fraction

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)


def plan_chain(layers: Sequence[nn.Module], shape: tuple[int, ...], budget: int,
               device: torch.device, feather: int = 8, max_side: int | None = None) -> ChainPlan:
    """The fewest tiles whose largest one (core + halos, clipped at the image border) fits
    `budget`; the feather band shrinks when tiles are small."""
    geometry = chain_geometry(layers)
    align = geometry.align
    side = chain_tile_side(layers, shape[1], shape[0], budget, torch.device(device))
    max_area = side * side
    if max_side is not None:
        side, max_area = min(side, max_side), min(max_area, max_side * max_side)
    feather = max(0, min(feather, (side - 2 * geometry.radius) // 4))
    halo = math.ceil((geometry.radius + feather) / align) * align
    height, width = shape[2], shape[3]

    def extent(total: int, count: int) -> tuple[int, int]:
        core = max(align, math.ceil(total / count / align) * align)
        return core, min(total, core + halo * min(2, count - 1))

    best: tuple[int, int, int] | None = None           # (tiles, core_y, core_x)
    limit_y, limit_x = max(1, math.ceil(height / align)), max(1, math.ceil(width / align))
    for count_y in range(1, min(limit_y, 256) + 1):
        core_y, tile_h = extent(height, count_y)
        if max_side is not None and tile_h > max_side and count_y < limit_y:
            continue
        for count_x in range(1, min(limit_x, 256) + 1):
            core_x, tile_w = extent(width, count_x)
            if max_side is not None and tile_w > max_side and count_x < limit_x:
                continue
            if tile_h * tile_w <= max_area or (count_x == limit_x and count_y == limit_y):
                if best is None or count_y * count_x < best[0]:
                    best = (count_y * count_x, core_y, core_x)
                break
        if best is not None and best[0] <= count_y:
            break
    assert best is not None
    return ChainPlan(_spans(height, best[1], align), _spans(width, best[2], align), halo,
                     int(feather * geometry.scale), geometry.scale)


def run_chain_tiled(layers: Sequence[nn.Module], x: torch.Tensor, budget: int,
                    stats: TileStats | None = None, feather: int = 8,
                    compute_device: torch.device | None = None,
                    max_side: int | None = None,
                    step: Callable[[float], None] | None = None) -> torch.Tensor:
    """Apply the local chain `layers` to x (N x C x H x W) tile by tile; the result equals
    running the chain on x at once (cores exact, overlaps blended).

    `feather`: overlap (in input px) over which neighbouring tiles are cross-faded.
    `max_side`: cap on the input tile side (tests use it to force many tiles).
    """
    device = compute_device or x.device
    plan = plan_chain(layers, tuple(x.shape), budget, device, feather, max_side)
    scale, halo, band = plan.scale, plan.halo, plan.band
    rows, cols = plan.rows, plan.cols
    n, _, height, width = x.shape

    def out_len(length: int) -> int:
        return math.ceil(length * scale)

    out_h, out_w = out_len(height), out_len(width)
    out: torch.Tensor | None = None
    weights = torch.zeros(1, 1, out_h, out_w, dtype=torch.float32)
    done = 0
    for y0, y1 in rows:
        for x0, x1 in cols:
            # core in output px, then widened by the feather band where a neighbour exists
            oy0, oy1 = int(y0 * scale), (out_h if y1 == height else int(y1 * scale))
            ox0, ox1 = int(x0 * scale), (out_w if x1 == width else int(x1 * scale))
            by0 = band if y0 > 0 else 0
            by1 = band if y1 < height else 0
            bx0 = band if x0 > 0 else 0
            bx1 = band if x1 < width else 0
            a0, a1 = max(0, y0 - halo), min(height, y1 + halo)
            b0, b1 = max(0, x0 - halo), min(width, x1 + halo)
            tile = x[:, :, a0:a1, b0:b1].to(device)
            for layer in layers:
                tile = layer(tile)
            ty0 = int((y0 - a0) * scale) - by0
            tx0 = int((x0 - b0) * scale) - bx0
            piece = tile[:, :, ty0:ty0 + (oy1 - oy0) + by0 + by1,
                         tx0:tx0 + (ox1 - ox0) + bx0 + bx1].float().cpu()
            weight = (_ramp(piece.shape[2], 2 * by0, 2 * by1, "cpu")[:, None]
                      * _ramp(piece.shape[3], 2 * bx0, 2 * bx1, "cpu")[None, :])
            if out is None:
                out = torch.zeros(n, piece.shape[1], out_h, out_w, dtype=torch.float32)
            region = (slice(None), slice(None), slice(oy0 - by0, oy1 + by1),
                      slice(ox0 - bx0, ox1 + bx1))
            out[region] += piece * weight
            weights[region] += weight
            if stats is not None:
                stats.tiles += 1
            done += 1
            if step is not None:
                step(done / (len(rows) * len(cols)))
            del tile, piece
    assert out is not None
    out /= weights
    return out.to(device=x.device, dtype=x.dtype)


# ============================================================================ layer by layer

@dataclass
class _Pad:
    """Padding in front of a convolution: `mode` (reflect/replicate/constant) then zeros."""

    pre: tuple[int, int, int, int] = (0, 0, 0, 0)   # left, right, top, bottom
    mode: str = "constant"


def _gather(x: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int], pad: _Pad,
            zero: tuple[int, int]) -> torch.Tensor:
    """x's region [rows) x [cols) in the coordinates of pad(x) followed by zero padding."""
    (l, r, t, b), (zy, zx) = pad.pre, zero
    h, w = x.shape[-2:]

    def axis(start: int, stop: int, before: int, after: int, zeros: int, size: int):
        inner = before + size + after
        z0 = max(0, min(stop, zeros) - start)                       # zeros on the low side
        z1 = max(0, stop - max(start, zeros + inner))                # zeros on the high side
        lo, hi = max(start, zeros) - zeros, min(stop, zeros + inner) - zeros  # in pad(x) coords
        p0 = max(0, before - lo)
        p1 = max(0, hi - before - size)
        s0, s1 = max(0, lo - before), min(size, hi - before)
        return (s0, s1), (p0, p1), (z0, z1)

    (ry, py, zyy) = axis(rows[0], rows[1], t, b, zy, h)
    (rx, px, zxx) = axis(cols[0], cols[1], l, r, zx, w)
    tile = x[..., ry[0]:ry[1], rx[0]:rx[1]]
    if any(px + py):
        if pad.mode == "constant":
            tile = F.pad(tile, (px[0], px[1], py[0], py[1]))
        else:
            tile = F.pad(tile, (px[0], px[1], py[0], py[1]), mode=pad.mode)
    if any(zxx + zyy):
        tile = F.pad(tile, (zxx[0], zxx[1], zyy[0], zyy[1]))
    return tile


def _pad_of(layer: nn.Module) -> _Pad | None:
    if isinstance(layer, (nn.ReflectionPad2d, nn.ReplicationPad2d)):
        mode = "reflect" if isinstance(layer, nn.ReflectionPad2d) else "replicate"
        return _Pad(tuple(layer.padding), mode)
    if isinstance(layer, (nn.ZeroPad2d, nn.ConstantPad2d)) and float(layer.value) == 0.0:
        return _Pad(tuple(layer.padding), "constant")
    return None


def fire_pre_hooks(module: nn.Module, x: torch.Tensor) -> None:
    """The layer is about to be computed functionally: its forward pre-hooks (where timing
    starts; fire_hooks runs the forward hooks after)."""
    for hook in list(module._forward_pre_hooks.values()):
        hook(module, (x,))


def fire_hooks(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
    """The layer was computed functionally: still run its forward hooks (engines report progress
    and honour cancellation from them)."""
    for hook in list(module._forward_hooks.values()):
        hook(module, (x,), out)


class LayerwiseRunner:
    """Executes a network layer by layer with full activations on the host (CPU) and tiled
    convolutions on `device`, each tile's working set within `budget` bytes (on CPU: within
    its tile share, the whole layers within the rest; see the module docstring)."""

    def __init__(self, device: torch.device, budget: int, stats: TileStats | None = None,
                 max_side: int | None = None, host_budget: int | None = None,
                 channels_last: bool = False) -> None:
        self.device = torch.device(device)
        self.channels_last = channels_last      # whole layers in the network's own layout
        self.stats = stats or TileStats()
        self.max_side = max_side
        if self.device.type == "cpu":
            self.budget = max(1, min(int(budget * CPU_TILE_SHARE), CPU_TILE_CAP))
            default_host = budget - self.budget
        else:
            self.budget = budget
            default_host = MemoryBudget.for_device("cpu").bytes()
        self.host = HostArena(default_host if host_budget is None else host_budget)

    # ---------------------------------------------------------------- structure
    def run(self, module: nn.Module, x: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """`owned`: x may be overwritten (nobody else holds it)."""
        name = type(module).__name__
        if isinstance(module, nn.Sequential):
            return self._sequence(list(module), x, owned)
        if name in ("ResnetGenerator", "UnetGenerator") and isinstance(
                getattr(module, "model", None), nn.Module):
            return self.run(module.model, x, owned)
        if name in ("ResnetBlock", "StyleResidualBlock") \
                and isinstance(getattr(module, "conv_block", None), nn.Module):
            y = self.run(module.conv_block, x, owned=False)
            return y.add_(x)
        if name == "UnetSkipBlock" and isinstance(getattr(module, "model", None), nn.Sequential):
            layers = list(module.model)
            if module.outermost:
                return self._sequence(layers, x, owned)
            skip = self._leaf(layers[0], x, owned)
            out = self._sequence(layers[1:], skip, owned=False)
            joined = self.host.empty((skip.shape[0], skip.shape[1] + out.shape[1])
                                     + tuple(skip.shape[2:]), skip.dtype, self.channels_last)
            joined[:, :skip.shape[1]] = skip
            joined[:, skip.shape[1]:] = out
            return joined
        if callable(getattr(module, "normalise_", None)):
            # a norm whose gamma/beta come from bound styles (networks/style_norm.py): it takes
            # the whole layer's statistics itself, in place on the host tensor
            self.stats.layers += 1
            out = module.normalise_(x if owned else self.host.copy(x))
            fire_hooks(module, x, out)              # (progress counts these norms too)
            return out
        if len(module._modules) == 0:
            return self._leaf(module, x, owned)
        # an unknown composite: its forward may do anything; run it whole on the device
        return self._whole(module, x)

    def _sequence(self, layers: list[nn.Module], x: torch.Tensor, owned: bool) -> torch.Tensor:
        index = 0
        while index < len(layers):
            layer = layers[index]
            pad = _pad_of(layer)
            if pad is not None and index + 1 < len(layers) \
                    and isinstance(layers[index + 1], nn.Conv2d) \
                    and not isinstance(layers[index + 1], nn.ConvTranspose2d):
                x = self._conv(layers[index + 1], x, pad)
                index += 2
            else:
                x = self.run(layer, x, owned)
                index += 1
            owned = True
        return x

    def _whole(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # the class's forward: a guarded module's own (instance) forward would tile again
        return type(module).forward(module, x.to(self.device)).cpu()

    # ---------------------------------------------------------------- leaves
    def _leaf(self, layer: nn.Module, x: torch.Tensor, owned: bool) -> torch.Tensor:
        self.stats.layers += 1
        if isinstance(layer, nn.ConvTranspose2d):
            return self._conv_transpose(layer, x)
        if isinstance(layer, nn.Conv2d):
            return self._conv(layer, x, _Pad())
        if isinstance(layer, nn.InstanceNorm2d):
            return self._norm(x, owned, (2, 3), layer.eps, layer.weight if layer.affine else None,
                              layer.bias if layer.affine else None, None)
        if isinstance(layer, nn.BatchNorm2d):
            image_stats = getattr(layer, "use_image_stats", None)
            if image_stats is None:
                image_stats = layer.training or layer.running_mean is None
            running = None if image_stats else (layer.running_mean, layer.running_var)
            return self._norm(x, owned, (0, 2, 3), layer.eps, layer.weight, layer.bias, running)
        if isinstance(layer, nn.ReLU):
            return x.clamp_min_(0) if owned else torch.clamp_min(x, 0, out=self.host.empty_like(x))
        if isinstance(layer, nn.LeakyReLU):
            return F.leaky_relu_(x if owned else self.host.copy(x), layer.negative_slope)
        if isinstance(layer, nn.Tanh):
            return x.tanh_() if owned else torch.tanh(x, out=self.host.empty_like(x))
        if isinstance(layer, nn.Identity):
            return x
        if isinstance(layer, nn.Dropout):
            if not layer.training or layer.p == 0:
                return x
            return F.dropout(x if owned else self.host.copy(x), layer.p, True, inplace=True)
        pad = _pad_of(layer)
        if pad is not None:
            l, r, t, b = pad.pre
            return F.pad(x, (l, r, t, b), mode=pad.mode) if pad.mode != "constant" \
                else F.pad(x, (l, r, t, b))
        return self._whole(layer, x)

    def _norm(self, x: torch.Tensor, owned: bool, dims: tuple[int, ...], eps: float,
              weight: torch.Tensor | None, bias: torch.Tensor | None,
              running: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Statistics over the whole tensor, then normalise (in place when allowed)."""
        if running is None and weight is None and dims == (2, 3) and is_channels_last(x):
            ops = native.cpu_ops_for(x)       # PyTorch reduces channels_last tensors slowly
            if ops is not None:
                y = x if owned else self.host.copy(x)
                return ops.instance_norm_cl_(y, eps)
        if running is None:
            var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        else:
            shape = (1, -1, 1, 1)
            mean, var = running[0].cpu().view(shape), running[1].cpu().view(shape)
        scale = torch.rsqrt(var + eps)
        shift = -mean * scale
        if weight is not None:
            w = weight.detach().cpu().view(1, -1, 1, 1)
            scale = scale * w
            shift = shift * w + bias.detach().cpu().view(1, -1, 1, 1)
        y = x if owned else self.host.copy(x)
        return y.mul_(scale).add_(shift)

    # ---------------------------------------------------------------- convolutions
    def _tile_side(self, c_in: int, c_out: int, batch: int, stride: int, extent: int) -> int:
        factor = WORKSPACE_FACTOR.get(self.device.type, 2.0) * 4 * batch
        side = int(math.sqrt(self.budget / (factor * (c_in * stride * stride + c_out)))) \
            - extent
        side = max(MIN_TILE, side)
        if self.max_side is not None:
            side = min(side, self.max_side)
        return side

    def _tiles(self, height: int, width: int, side: int) -> Iterator[tuple[int, int, int, int]]:
        count = 0
        for y0 in range(0, height, side):
            for x0 in range(0, width, side):
                count += 1
                yield y0, min(height, y0 + side), x0, min(width, x0 + side)
        self.stats.tiles = max(self.stats.tiles, count)

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor, pad: _Pad) -> torch.Tensor:
        if conv.padding_mode != "zeros":          # the conv pads itself with reflect etc.
            if any(pad.pre):
                x = F.pad(x, pad.pre, mode=pad.mode) if pad.mode != "constant" \
                    else F.pad(x, pad.pre)
            mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
            pad = _Pad((conv.padding[1],) * 2 + (conv.padding[0],) * 2, mode)
            zero = (0, 0)
        else:
            zero = (conv.padding[0], conv.padding[1])
        n, _, h, w = x.shape
        l, r, t, b = pad.pre
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        dh, dw = conv.dilation
        full_h = h + t + b + 2 * zero[0]
        full_w = w + l + r + 2 * zero[1]
        out_h = (full_h - dh * (kh - 1) - 1) // sh + 1
        out_w = (full_w - dw * (kw - 1) - 1) // sw + 1
        out = self.host.empty((n, conv.out_channels, out_h, out_w), x.dtype, self.channels_last)
        side = self._tile_side(conv.in_channels, conv.out_channels, n, sh, dh * (kh - 1))
        weight = conv.weight
        bias = conv.bias
        valid_conv = getattr(conv, "valid_conv", None)
        for oy0, oy1, ox0, ox1 in self._tiles(out_h, out_w, side):
            rows = (oy0 * sh, (oy1 - 1) * sh + dh * (kh - 1) + 1)
            cols = (ox0 * sw, (ox1 - 1) * sw + dw * (kw - 1) + 1)
            tile = _gather(x, rows, cols, pad, zero).to(self.device)
            if valid_conv is not None:          # e.g. WinogradConv2d: its fast kernel
                y = valid_conv(tile)
            else:
                y = F.conv2d(tile, weight, bias, conv.stride, 0, conv.dilation, conv.groups)
            out[:, :, oy0:oy1, ox0:ox1] = y
        norm_eps = getattr(conv, "norm_eps", None)
        if norm_eps is not None:                # an InstanceNorm fused into the convolution
            out = self._norm(out, True, (2, 3), norm_eps, None, None, None)
        fire_hooks(conv, x, out)
        return out

    def _conv_transpose(self, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        (ph, pw), (oph, opw) = conv.padding, conv.output_padding
        if conv.dilation != (1, 1) or conv.groups != 1:
            return self._whole(conv, x)
        out_h = (h - 1) * sh - 2 * ph + kh + oph
        out_w = (w - 1) * sw - 2 * pw + kw + opw
        out = self.host.empty((n, conv.out_channels, out_h, out_w), x.dtype, self.channels_last)
        side = self._tile_side(conv.in_channels, conv.out_channels, n, 1, 2)
        side = max(MIN_TILE, side // sh * sh)

        def needed(o0: int, o1: int, k: int, s: int, p: int, size: int) -> tuple[int, int]:
            i0 = max(0, -(-(o0 + p - (k - 1)) // s))
            i1 = min(size - 1, (o1 - 1 + p) // s)
            return i0, i1

        for oy0, oy1, ox0, ox1 in self._tiles(out_h, out_w, side):
            iy0, iy1 = needed(oy0, oy1, kh, sh, ph, h)
            ix0, ix1 = needed(ox0, ox1, kw, sw, pw, w)
            tile = torch.empty(n, conv.out_channels, oy1 - oy0, ox1 - ox0, device=self.device,
                               dtype=x.dtype, memory_format=torch.channels_last
                               if self.channels_last else torch.contiguous_format).zero_()
            if iy1 >= iy0 and ix1 >= ix0:
                piece = x[:, :, iy0:iy1 + 1, ix0:ix1 + 1].to(self.device)
                z = F.conv_transpose2d(piece, conv.weight, None, conv.stride, 0)
                zy0, zx0 = iy0 * sh - ph, ix0 * sw - pw      # output coords of z[0, 0]
                ya, yb = max(oy0, zy0), min(oy1, zy0 + z.shape[2])
                xa, xb = max(ox0, zx0), min(ox1, zx0 + z.shape[3])
                if yb > ya and xb > xa:
                    tile[:, :, ya - oy0:yb - oy0, xa - ox0:xb - ox0] = \
                        z[:, :, ya - zy0:yb - zy0, xa - zx0:xb - zx0]
            if conv.bias is not None:
                tile += conv.bias.view(1, -1, 1, 1)
            out[:, :, oy0:oy1, ox0:ox1] = tile
        fire_hooks(conv, x, out)
        return out


def run_layerwise(network: nn.Module, x: torch.Tensor, budget: int,
                  stats: TileStats | None = None, max_side: int | None = None,
                  host_budget: int | None = None) -> torch.Tensor:
    """network(x) computed layer by layer with tiled convolutions (see module docstring)."""
    device = x.device
    channels_last = any(p.dim() == 4 and is_channels_last(p) for p in network.parameters())
    runner = LayerwiseRunner(device, budget, stats, max_side, host_budget, channels_last)
    try:
        with torch.inference_mode():
            host = x.detach().to("cpu", torch.float32)
            if channels_last:
                host = host.contiguous(memory_format=torch.channels_last)
            out = runner.run(network, host, owned=False)
            if runner.host.stats.spilled:          # hand back RAM, not a view of disk pages
                out = out.clone()
    finally:
        runner.stats.spilled = runner.host.stats.spilled
        runner.stats.host_peak = runner.host.stats.resident_peak
    return out.to(device=device, dtype=x.dtype)
