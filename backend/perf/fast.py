"""Inference transforms: a loaded network in, an equivalent faster one out (same state_dict).

Every transform keeps the parameter tensors and their names, so `state_dict()` of the optimized
network equals the original's; derived tensors (re-arranged weights) are non-persistent buffers
that are rebuilt when the source weight changes. What each transform buys was measured on the
project's CPU machine (bench/bench_suite.py, results in bench/results/perf-cpu-*.md):

- on the CPU, 3x3 convolutions with 32+ channels through the native Winograd F(4x4,3x3) kernel
  (winograd.py, kernels/winograd.cpp): 4x fewer products; with it the network runs in
  channels_last, a following InstanceNorm is done in place by the convolution, and oneDNN's own
  transposed convolution (fast in channels_last) replaces the sub-pixel form;
- channels_last weights for AdaIN (oneDNN's NHWC kernels; the 3-channel first convolutions gain
  most); InstanceNorm has a layout-agnostic rewrite (FastInstanceNorm2d: the native channels_last
  kernel when built), in place after a layer that allocates its output;
- transposed convolutions as one sub-pixel convolution + pixel shuffle in NCHW (oneDNN's NCHW
  transposed convolution runs at a fraction of its forward-convolution speed);
- in-place activations after layers that produce a fresh tensor (fewer page-faulting allocations);
- networks that describe their pass as `conv_steps` (the conditional-norm networks: CIN, Magenta)
  run through the fused native layer kernel (fused.py, kernels/fused_conv.cpp): pad, upsample,
  conv, statistics, norm and activation in one read and one write per layer.

Tried and left out because they did not pay or broke fidelity here: NNPACK Winograd (its
convolution fails for all but tiny shapes on this Xeon build), a pad-free reflect convolution
(zero-padded conv + recomputed border: slower, oneDNN re-prepares weights per call), a
Winograd F(4x4,3x3) written with torch matmuls (unfused transforms: memory-bound, 0.45-1.1x;
the fused native kernel is what pays), glibc heap-only allocation to avoid page faults (no
gain), PyTorch's transparent huge pages for large tensors (THP_MEM_ALLOC_ENABLE=1: ~5% on
CycleGAN 1024², but the daemon's RSS then grew in 24-32 MB steps between identical job rounds),
bf16 as the default (AMX makes convs 7x faster but AdaIN outputs moved by up to 60 levels on
8-bit): it is the opt-in precision "fast" instead (--precision fast, $STYLE_TRANSFER_PRECISION):
with AMX, oneDNN's bf16 convolutions under CPU autocast, float32 at the network's boundary, so
AdaIN's statistics and blend and the instance norms' statistics stay float32; without AMX
(AVX512-BF16 only) "fast" keeps the float32 path, which is faster there.

On CUDA: cudnn.benchmark, channels_last and optional fp16/bf16 autocast ("fast" = bf16; opt-in
with $STYLE_TRANSFER_PRECISION; its fidelity must be measured on the card before it becomes
default).

Opt-in with $STYLE_TRANSFER_COMPILE=1: torch.compile (Inductor) of the forward passes, with
dynamic shapes so one compilation serves every image size; the Winograd kernel enters the graph
as a torch.library operator when it is built. Measured at 1024² (bench/results/perf-cpu-*.md):
without the native kernels compile gave 1.45-1.74x (AdaIN) and 1.62x (CycleGAN) against 1.12-1.58x
eager; with them the eager path is faster (2.63-2.98x, 2.73x) than the compiled one (2.48-2.68x,
2.17x). Its price is the first call: ~30-70 s of compiling per network and process, and
progress/cancellation per call instead of per layer. When compiling fails (no C++ compiler) the
networks run eagerly, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from stclient import registry, settings

from . import fused, fused_blocks, native
from .adopt import adopt
from .winograd import WinogradConv2d, fuse_instance_norms, use_winograd

PLAIN_ENV = settings.ENV["plain"]           # "1": run the networks exactly as loaded
COMPILE_ENV = settings.ENV["compile"]       # "1": torch.compile the forward passes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FastOptions:
    """Which transforms to apply; None means "the measured default for this engine/device"."""

    subpixel_transpose: bool = True
    inplace_activations: bool = True
    fast_instance_norm: bool = True
    channels_last: Optional[bool] = None
    precision: str = "fp32"
    compile: Optional[bool] = None          # None: $STYLE_TRANSFER_COMPILE
    winograd: Optional[bool] = None         # None: on the CPU unless $STYLE_TRANSFER_NATIVE=0
    fused_blocks: bool = True               # few-channel end blocks by the fused kernel
    streamed: bool = True                   # resampling layers in strips, input given back


def plain_requested() -> bool:
    return settings.current().plain


def compile_requested() -> bool:
    return settings.current().compile


# ----------------------------------------------------------------------------- conv modules

def _phase_taps(kernel: int, stride: int, padding: int) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """For out[s*m + a] = sum in[m + d] * w[kk]: per phase a the (d, kk) pairs, and d's range."""
    phases: list[list[tuple[int, int]]] = []
    for a in range(stride):
        taps = [((a + padding - kk) // stride, kk) for kk in range(kernel)
                if (a + padding - kk) % stride == 0]
        phases.append(taps)
    ds = [d for taps in phases for d, _ in taps]
    return min(ds), max(ds), phases


def _waste(convt: nn.ConvTranspose2d) -> float:
    """Multiply-adds of the sub-pixel form per multiply-add of the transposed conv: for k=3,s=2
    it is 16/9 and pays (measured); for pix2pix's k=4,s=2 it is 36/16 and did not."""
    k, s, p = convt.kernel_size[0], convt.stride[0], convt.padding[0]
    dmin, dmax, _ = _phase_taps(k, s, p)
    return (dmax - dmin + 1) ** 2 * s * s / (k * k)


class SubpixelConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d computed as one ordinary convolution with stride² x out channels followed
    by pixel_shuffle: the same products, summed in another order, at forward-conv speed."""

    @classmethod
    def from_module(cls, convt: nn.ConvTranspose2d) -> "SubpixelConvTranspose2d":
        new = adopt(cls, convt)
        new.register_buffer("sub_weight", None, persistent=False)
        new._source_version = (-1, -1)
        return new

    @staticmethod
    def applies(module: nn.Module) -> bool:
        return (type(module) is nn.ConvTranspose2d and module.groups == 1
                and module.dilation == (1, 1) and module.stride[0] == module.stride[1] > 1
                and module.kernel_size[0] == module.kernel_size[1]
                and module.padding[0] == module.padding[1]
                and module.output_padding[0] == module.output_padding[1]
                and _waste(module) <= 1.8)

    def _derived(self) -> torch.Tensor:
        weight = self.weight
        key = (weight.data_ptr(), -1 if weight.is_inference() else weight._version)
        if self.sub_weight is None or self._source_version != key \
                or self.sub_weight.device != self.weight.device:
            self.sub_weight = self._build_weight()
            self._source_version = key
        return self.sub_weight

    def _build_weight(self) -> torch.Tensor:
        s, k, p = self.stride[0], self.kernel_size[0], self.padding[0]
        dmin, dmax, phases = _phase_taps(k, s, p)
        length = dmax - dmin + 1
        w = self.weight.detach()                     # (Cin, Cout, k, k)
        c_in, c_out = w.shape[:2]
        sub = w.new_zeros(c_out, s, s, c_in, length, length)
        for a, taps_a in enumerate(phases):
            for b, taps_b in enumerate(phases):
                for da, ka in taps_a:
                    for db, kb in taps_b:
                        sub[:, a, b, :, da - dmin, db - dmin] = w[:, :, ka, kb].t()
        sub = sub.reshape(c_out * s * s, c_in, length, length).contiguous()
        if self.weight.is_contiguous(memory_format=torch.channels_last):
            sub = sub.contiguous(memory_format=torch.channels_last)
        return sub

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D401
        if output_size is not None:
            return super().forward(x, output_size)
        s, k, p = self.stride[0], self.kernel_size[0], self.padding[0]
        dmin, dmax, _ = _phase_taps(k, s, p)
        h, w = x.shape[-2:]
        out_h = (h - 1) * s - 2 * p + k + self.output_padding[0]
        out_w = (w - 1) * s - 2 * p + k + self.output_padding[1]
        rows, cols = -(-out_h // s), -(-out_w // s)      # m = 0 .. rows-1 per phase
        # in[m + d] for m in [0, rows), d in [dmin, dmax]: zero-pad to cover that range
        pad = (-dmin, max(0, cols - 1 + dmax - (w - 1)), -dmin, max(0, rows - 1 + dmax - (h - 1)))
        if dmin > 0:
            raise ValueError("unexpected transposed-conv geometry")
        y = F.conv2d(F.pad(x, pad), self._derived())
        y = F.pixel_shuffle(y[..., :rows, :cols], s)[..., :out_h, :out_w]
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


class FastInstanceNorm2d(nn.InstanceNorm2d):
    """InstanceNorm2d (no affine, no running stats) as one statistics pass and one fused
    multiply-add, in whatever memory format the input has (PyTorch's own kernel copies a
    channels_last input to NCHW first)."""

    @staticmethod
    def applies(module: nn.Module) -> bool:
        return (type(module) is nn.InstanceNorm2d and not module.affine
                and not module.track_running_stats)

    inplace = False      # set by optimize() where the input is a fresh tensor nobody else holds

    @classmethod
    def from_module(cls, norm: nn.InstanceNorm2d) -> "FastInstanceNorm2d":
        new = cls(norm.num_features, eps=norm.eps, momentum=norm.momentum, affine=False,
                  track_running_stats=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        in_place = self.inplace and not torch.compiler.is_compiling() \
            and not torch.is_grad_enabled()
        ops = native.cpu_ops_for(x) if x.is_contiguous(memory_format=torch.channels_last) \
            else None
        if ops is not None:
            return ops.instance_norm_cl_(x, self.eps) if in_place \
                else ops.instance_norm_cl(x, self.eps)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.eps)
        if in_place:
            return x.mul_(scale).sub_(mean * scale)
        return torch.addcmul(-mean * scale, x, scale)


# ----------------------------------------------------------------------------- graph rewrites

_FRESH_OUTPUT = (nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.BatchNorm2d,
                 nn.Upsample, nn.MaxPool2d)


def _inplace_after_fresh(seq: nn.Sequential, kinds: tuple[type, ...]) -> int:
    """Layers of `kinds` (each with an `inplace` switch) right after a layer that allocates its
    output can overwrite that output: no second tensor, whose first touch costs more on the CPU
    than a ReLU's or a normalisation's arithmetic."""
    names = list(seq._modules)
    changed = 0
    for before, name in zip(names, names[1:]):
        layer = seq._modules[name]
        if type(layer) in kinds and not layer.inplace \
                and isinstance(seq._modules[before], _FRESH_OUTPUT):
            layer.inplace = True
            changed += 1
    return changed


def _swap_children(module: nn.Module, applies, build) -> int:
    swapped = 0
    for name, child in list(module._modules.items()):
        if child is not None and applies(child):
            module._modules[name] = build(child)
            swapped += 1
    return swapped


@dataclass
class OptimizeReport:
    """What `optimize` changed (shown by the benchmark and `status`)."""

    engine: str
    device: str
    plain: bool
    subpixel_transposed: int = 0
    inplace_activations: int = 0
    fast_instance_norms: int = 0
    channels_last: bool = False
    precision: str = "fp32"
    compiled: int = 0                 # methods (forward, encode) wrapped by torch.compile
    winograd_convs: int = 0           # 3x3 convolutions routed to the native Winograd kernel
    fused_instance_norms: int = 0     # InstanceNorms done in place by the convolution before
    inplace_norms: int = 0            # FastInstanceNorm2d overwriting a fresh input
    fused_steps: int = 0              # conv_steps networks run by the fused layer kernel
    fused_blocks: int = 0             # few-channel pad/conv/norm/activation blocks, fused
    streamed_layers: int = 0          # stride-2 / transposed convs run in strips (streamed.py)


# Whether channels_last pays on the CPU without the native kernel is the engine card's
# `perf.channels_last_cpu` (measured with bench/bench_suite.py: 1.2-1.5x for the AdaIN networks;
# 0.98-1.04x for CycleGAN with FastInstanceNorm2d, 0.88x without, vs 1.08x for NCHW + sub-pixel
# transposed convs; it slowed pix2pix). On CUDA channels_last is cuDNN's fast layout.
def _channels_last_cpu(engine: str) -> bool:
    return engine in registry.engine_names() and registry.card(engine).perf.channels_last_cpu



def optimize(network: nn.Module, engine: str, device: torch.device | str,
             plain: bool | None = None, options: FastOptions | None = None,
             compile: bool | None = None) -> nn.Module:
    """Rewrite `network` in place into its fast inference form and return it.

    `plain` (default: $STYLE_TRANSFER_PLAIN) returns the module untouched: the baseline the
    benchmark compares against. `compile` (default: options.compile, then
    $STYLE_TRANSFER_COMPILE) wraps the forward passes in torch.compile. The state_dict (keys,
    tensors) is unchanged either way.
    """
    device = torch.device(device)
    if plain is None:
        plain = plain_requested()
    options = options or FastOptions(precision=settings.current().precision)
    report = OptimizeReport(engine, str(device), bool(plain))
    network._perf_report = report  # type: ignore[attr-defined]
    if plain:
        return network
    use_compile = compile if compile is not None else \
        options.compile if options.compile is not None else compile_requested()
    cpu_bf16 = device.type == "cpu" and options.precision in ("fast", "bf16") \
        and cpu_has_bf16()
    use_winograd_kernel = options.winograd
    if cpu_bf16 and not applies_fused(network):
        use_winograd_kernel = False          # oneDNN's bf16 (AMX) convolutions instead
    if use_winograd_kernel is None:
        # a compiled graph is built once, so it can only hold the kernel if it is there now
        use_winograd_kernel = device.type == "cpu" and native.enabled() and \
            (not use_compile or native.kernel(native.CPU_LIBRARY) is not None)
    if use_winograd_kernel and device.type == "cpu" and not use_compile:
        report.fused_steps = fused.install(network)
    if use_winograd_kernel and device.type == "cpu":
        report.winograd_convs = use_winograd(network)
        if report.winograd_convs:
            native.kernel(native.CPU_LIBRARY)   # loads it, or starts its one-off build
        if use_compile:
            for module in network.modules():
                if isinstance(module, WinogradConv2d):
                    module.prepare_for_compile()
    use_cl = options.channels_last
    if use_cl is None:
        # the Winograd kernel reads and writes channels_last: keep the whole network in it
        use_cl = device.type == "cuda" or _channels_last_cpu(engine) \
            or report.winograd_convs > 0 or cpu_bf16
    # Under torch.compile Inductor fuses activations itself, and the sub-pixel module's weight
    # cache check (data_ptr/_version) would break the graph: measured, a second compiled network
    # with such breaks made Dynamo give up on the shared forward code and run both eagerly.
    # In channels_last oneDNN's own transposed convolution is the faster one on the CPU
    # (measured 0.14 vs 0.30 s for 256->128 at 256², 0.18 vs 0.45 s for 128->64 at 512²).
    inplace = options.inplace_activations and not use_compile
    subpixel = options.subpixel_transpose and not use_compile \
        and not (use_cl and device.type == "cpu")
    for module in list(network.modules()):
        if isinstance(module, nn.Sequential):
            if inplace:
                report.inplace_activations += _inplace_after_fresh(module,
                                                                   (nn.ReLU, nn.LeakyReLU))
        if subpixel:
            report.subpixel_transposed += _swap_children(
                module, SubpixelConvTranspose2d.applies, SubpixelConvTranspose2d.from_module)
    if report.winograd_convs:
        report.fused_instance_norms = fuse_instance_norms(network)
    if use_cl and options.fast_instance_norm and not cpu_bf16:
        for module in list(network.modules()):
            report.fast_instance_norms += _swap_children(
                module, FastInstanceNorm2d.applies, FastInstanceNorm2d.from_module)
        if inplace:
            for module in list(network.modules()):
                if isinstance(module, nn.Sequential):
                    report.inplace_norms += _inplace_after_fresh(module, (FastInstanceNorm2d,))
    if use_cl:
        network.to(memory_format=torch.channels_last)
        report.channels_last = True
    blocks = options.fused_blocks and use_winograd_kernel and not cpu_bf16
    stream = options.streamed and not cpu_bf16
    if device.type == "cpu" and not use_compile and not report.fused_steps \
            and (blocks or stream):
        # last: a block holds the modules it found, so no swap may follow
        report.fused_blocks, report.streamed_layers = fused_blocks.install(
            network, blocks=blocks, stream=stream)
    if use_compile:
        report.compiled = _install_compile(network)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if options.precision in ("bf16", "fp16", "fast"):
            report.precision = "bf16" if options.precision == "fast" else options.precision
            _install_autocast(network, torch.float16 if options.precision == "fp16"
                              else torch.bfloat16, "cuda")
    elif cpu_bf16 and not report.fused_steps:
        report.precision = "bf16"
        _install_autocast(network, torch.bfloat16, "cpu")
    return network


def cpu_has_bf16() -> bool:
    """AMX-BF16: there oneDNN's bf16 convolutions are several times faster than float32 (7x
    measured). With AVX512-BF16 alone they are at most 2x the float32 FMA rate, less than the
    float32 Winograd kernel gains (measured on a model-207 Xeon without AMX: bf16 brgemm conv
    slower than our float32 path), so "fast" stays float32 there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "amx_bf16" in flags
    except OSError:
        pass
    return False


def applies_fused(network: nn.Module) -> bool:
    return fused.applies(network)


def _is_compiler_failure(error: BaseException) -> bool:
    """Dynamo/Inductor's own errors (a C++ compile error arrives as BackendCompilerFailed);
    anything else (bad input, out of memory, cancellation) is the job's error, not the
    compiler's, and must not switch compilation off."""
    from torch._dynamo.exc import TorchDynamoException
    module = type(error).__module__ or ""
    return isinstance(error, TorchDynamoException) \
        or module.startswith(("torch._dynamo", "torch._inductor"))


class CompiledOrEager:
    """A method compiled by torch.compile (dynamic shapes) that falls back to the eager method
    for good if compiling fails (no C++ compiler, an unsupported operation): never a failed job
    for the sake of speed. Other errors (out of memory, bad input) are passed on unchanged."""

    def __init__(self, eager: Callable[..., Any]) -> None:
        self.eager = eager
        self.compiled = torch.compile(eager, dynamic=True)
        self.failed: Optional[str] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - only compiler failures are handled
                if not _is_compiler_failure(error):
                    raise
                self.failed = f"{type(error).__name__}: {error}"[:500]
                log.warning("torch.compile failed, running eagerly from now on: %s", self.failed)
        return self.eager(*args, **kwargs)


def _install_compile(network: nn.Module) -> int:
    """Wrap the network's forward (and AdaIN's encode) in CompiledOrEager, per instance."""
    wrappers = []
    for name in ("forward", "encode"):
        if getattr(type(network), name, None) is None:
            continue
        wrapper = CompiledOrEager(getattr(network, name))
        setattr(network, name, wrapper)
        wrappers.append(wrapper)
    network._perf_compiled = wrappers  # type: ignore[attr-defined]
    return len(wrappers)


def is_compiled(network: nn.Module) -> bool:
    """True while forward runs through torch.compile (engines then skip per-layer hooks, which
    would split the compiled graph at every layer)."""
    wrappers = getattr(network, "_perf_compiled", [])
    return any(wrapper.failed is None for wrapper in wrappers)


def _install_autocast(network: nn.Module, dtype: torch.dtype, device_type: str) -> None:
    """Run forward (and AdaIN's encode) under autocast and hand back float32, so callers see no
    difference and their own arithmetic (AdaIN's statistics and blend) stays float32.
    Convolutions run in `dtype` with float32 accumulation (oneDNN/cuDNN); instance norms
    compute their statistics in float32 (PyTorch's CPU and CUDA norm kernels accumulate
    reduced-precision inputs in float)."""
    for name in ("forward", "encode"):
        inner = getattr(network, name, None)
        if inner is None or (name == "encode" and not isinstance(network, nn.Sequential)):
            continue

        def wrapped(*args, _inner=inner, **kwargs):
            with torch.autocast(device_type, dtype=dtype):
                out = _inner(*args, **kwargs)
            return out.float() if isinstance(out, torch.Tensor) else out

        setattr(network, name, wrapped)


def report_of(network: nn.Module) -> Optional[OptimizeReport]:
    return getattr(network, "_perf_report", None)
