"""Performance suite: every engine, plain baseline vs optimized, in one run on one machine.

Prints (and with --out writes as Markdown) these tables:
- reference: throughput of a large 3x3 convolution (256->256 channels on 256x256, fp32) here;
- per engine and size: median latency of the PLAIN networks (float32, NCHW, module by module as
  the reference code, no caching) and the OPTIMIZED ones (backend.perf.optimize), their ratio,
  achieved GFLOP/s against a FLOP count computed from the network shapes, peak memory (RSS rise
  on CPU, torch.cuda.max_memory_allocated on CUDA) and the largest output difference in 8-bit
  levels; images/s for a batch;
- AdaIN with a new style (style encoded every call) and a cached style (statistics reused);
- the style cache measured through the Runtime's counters;
- scaling 512..4096: time and peak memory, tiled (memory guard) where the budget requires;
- with --daemon / --batch: the daemon round trip and batch throughput (bench_daemon.py and
  bench_batch.py, run as they are).
Weights are random (the released files cannot be downloaded here), which changes no timing.

    python bench/bench_suite.py [--sizes 512 1024] [--repeat 3] [--scaling 512 1024 2048 4096]
                                [--engines adain cyclegan pix2pix mixgan] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


from backend.networks import adain as adain_net  # noqa: E402
from backend.networks.checkpoints import build_network  # noqa: E402
from backend.perf import FastOptions, MemoryBudget, guard, guard_of, optimize  # noqa: E402
from backend.perf import native  # noqa: E402
from backend.perf.flops import count_flops  # noqa: E402


# ----------------------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(device: torch.device) -> int:
    """Start a peak-memory window; returns the baseline it is measured against."""
    gc.collect()
    try:                                 # hand freed heap back, so the peak is this run's own
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")            # resets VmHWM (peak RSS) of this process
    except OSError:
        pass
    return rss_bytes("VmRSS")


def peak_since(device: torch.device, baseline: int) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - baseline
    return rss_bytes("VmHWM") - baseline


@dataclass
class Timing:
    times: list[float]
    peak: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> str:
        return f"{min(self.times):.2f}-{max(self.times):.2f}"


def interleaved(variants: dict[str, Callable[[], torch.Tensor]], repeat: int,
                device: torch.device) -> tuple[dict[str, Timing], dict[str, torch.Tensor]]:
    """Each variant once per round (warm-up round first), so load changes hit all alike."""
    outputs = {}
    with torch.inference_mode():
        for name, fn in variants.items():           # warm-up, and the outputs to compare
            outputs[name] = fn().float().cpu()
        times = {name: [] for name in variants}
        peaks = {name: 0 for name in variants}
        for _ in range(repeat):
            for name, fn in variants.items():
                base = reset_peak(device)
                sync(device)
                start = time.perf_counter()
                out = fn()
                sync(device)
                times[name].append(time.perf_counter() - start)
                del out
                peaks[name] = max(peaks[name], peak_since(device, base))
    return {name: Timing(times[name], peaks[name]) for name in variants}, outputs


def levels(a: torch.Tensor, b: torch.Tensor, span: float) -> float:
    return float((a - b).abs().max()) * 255.0 / span


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}"


def test_image(size: int, batch: int = 1) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size),
                            indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * yy),
                         0.5 + 0.4 * torch.cos(9 * xx * yy),
                         ((xx > 0.4) ^ (yy > 0.6)).float() * 0.6 + 0.2])[None]
    image = image + 0.03 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    return image.clamp(0, 1).repeat(batch, 1, 1, 1)


# ----------------------------------------------------------------------------- networks

def calibrate(network: nn.Module, x: torch.Tensor) -> None:
    """Random weights scaled so every conv's output has unit std on a real-ish image (then
    outputs span a real range and level differences mean something)."""
    def hook(module, inputs, output):
        std = output.std().clamp_min(1e-6)
        module.weight.data /= std
        if module.bias is not None:
            module.bias.data /= std
        return output / std

    handles = [m.register_forward_hook(hook) for m in network.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels > 3]
    with torch.no_grad():
        network(x)
    for handle in handles:
        handle.remove()


@dataclass
class Engine:
    name: str
    label: str
    span: float                       # output value range (for 8-bit levels)
    plain: Callable[[torch.Tensor], torch.Tensor]
    fast: Callable[[torch.Tensor], torch.Tensor]
    flops: Callable[[tuple[int, ...]], int]
    to_input: Callable[[torch.Tensor], torch.Tensor]
    min_size: int = 8
    compiled: Callable[[torch.Tensor], torch.Tensor] | None = None   # optimized + torch.compile


COMPILED = FastOptions(compile=True)


def adain_engines(device: torch.device, with_compile: bool = False) -> list[Engine]:
    torch.manual_seed(0)
    encoder = build_network("adain", "vgg_normalised")[:adain_net.RELU4_1 + 1].eval()
    decoder = build_network("adain", "adain_decoder").eval()
    sample = test_image(128)
    calibrate(encoder, sample)
    calibrate(decoder, encoder(sample))
    style = test_image(512).flip(-1)
    encoder, decoder = encoder.to(device), decoder.to(device)
    f_enc = optimize(copy.deepcopy(encoder), "adain", device)
    f_dec = optimize(copy.deepcopy(decoder), "adain", device)
    style = style.to(device)
    c_enc = optimize(copy.deepcopy(encoder), "adain", device, options=COMPILED) \
        if with_compile else None
    c_dec = optimize(copy.deepcopy(decoder), "adain", device, options=COMPILED) \
        if with_compile else None
    with torch.inference_mode():
        cached = adain_net.mean_std(f_enc.encode(style))

    def plain_new(x):                    # the reference test: encode style and content each time
        return decoder(adain_net.adain(encoder(x), *adain_net.mean_std(encoder(style))))

    def fast_new(x):
        return f_dec(adain_net.adain(f_enc.encode(x), *adain_net.mean_std(f_enc.encode(style))))

    def fast_cached(x):
        return f_dec(adain_net.adain(f_enc.encode(x), *cached))

    def compiled_new(x):
        return c_dec(adain_net.adain(c_enc.encode(x), *adain_net.mean_std(c_enc.encode(style))))

    def compiled_cached(x):
        return c_dec(adain_net.adain(c_enc.encode(x), *cached))

    def flops_new(shape):                # content + the 512² style + decoder
        feats = (shape[0], 512, shape[2] // 8, shape[3] // 8)
        return count_flops(encoder, shape) + count_flops(encoder, (1, 3, 512, 512)) \
            + count_flops(decoder, feats)

    def flops_cached(shape):
        feats = (shape[0], 512, shape[2] // 8, shape[3] // 8)
        return count_flops(encoder, shape) + count_flops(decoder, feats)

    ident = lambda x: x  # noqa: E731
    return [Engine("adain", "AdaIN, new style (512² style)", 1.0, plain_new, fast_new,
                   flops_new, ident, compiled=compiled_new if with_compile else None),
            Engine("adain", "AdaIN, cached style", 1.0, plain_new, fast_cached, flops_cached,
                   ident, compiled=compiled_cached if with_compile else None)]


def generator_engine(engine: str, arch: str, label: str, device: torch.device,
                     with_compile: bool = False) -> Engine:
    torch.manual_seed(0)
    network = build_network(engine, arch).eval()
    if hasattr(network, "set_norm_mode"):
        network.set_norm_mode("image")
    calibrate(network, test_image(256) * 2 - 1)  # unet_256 needs 256² at least
    network = network.to(device)
    fast = optimize(copy.deepcopy(network), engine, device)
    compiled = optimize(copy.deepcopy(network), engine, device, options=COMPILED) \
        if with_compile else None
    return Engine(engine, label, 2.0, network, fast, lambda s: count_flops(network, s),
                  lambda x: x * 2 - 1, int(getattr(network, "multiple", 8)), compiled)


def mixgan_engine(device: torch.device) -> Engine | None:
    """The bundled MIXGAN starter (conv architecture, trained weights): grey image -> mixture,
    at the image's own size, as the engine runs it."""
    path = ROOT / "models" / "starter" / "mixgan_glyphs.pth"
    if not path.exists():
        return None
    from backend.networks.mixgan import load_model
    network = load_model(path).eval().to(device)
    fast_network = optimize(copy.deepcopy(network), "mixgan", device)
    return Engine("mixgan", f"MIXGAN conv (starter, width {network.config.width})", 2.0,
                  lambda g: network(g)[1], lambda g: fast_network(g)[1],
                  lambda s: count_flops(_MixtureOnly(network), s),
                  lambda x: (x * 2 - 1).mean(1, keepdim=True), 32)


class _MixtureOnly(nn.Module):
    """Single-output wrapper so the FLOP counter can trace MixGAN.forward."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return self.network(grey)[1]


# ----------------------------------------------------------------------------- tables

def reference_conv(device: torch.device, repeat: int) -> tuple[float, float]:
    """GFLOP/s of a large 3x3 convolution (256->256 on 256²), NCHW and channels_last."""
    x = torch.randn(1, 256, 258, 258, device=device)
    w = torch.randn(256, 256, 3, 3, device=device) * 0.02
    xc, wc = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    flops = 2 * 256 * 256 * 9 * 256 * 256
    timing, _ = interleaved({"nchw": lambda: F.conv2d(x, w),
                             "cl": lambda: F.conv2d(xc, wc)}, repeat, device)
    return flops / timing["nchw"].median / 1e9, flops / timing["cl"].median / 1e9


def reference_gemm(device: torch.device, repeat: int) -> float:
    """GFLOP/s of a 2048³ float32 matrix product (the BLAS's best case on this machine)."""
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    timing, _ = interleaved({"mm": lambda: a @ b}, repeat, device)
    return 2 * 2048 ** 3 / timing["mm"].median / 1e9


def _variants(engine: Engine, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    variants = {"plain": lambda: engine.plain(x), "fast": lambda: engine.fast(x)}
    if engine.compiled is not None:
        variants["compiled"] = lambda: engine.compiled(x)
    return variants


def engine_table(engines: list[Engine], sizes: list[int], repeat: int, device: torch.device,
                 conv_gflops: float, batch: int, peak_gflops: float) -> list[str]:
    lines = ["| engine | size | plain s (min-max) | optimized s (min-max) | speed-up | "
             "GFLOP | plain GFLOP/s | opt. GFLOP/s | % of ref. conv | fp32 bound | "
             "plain peak MiB | opt. peak MiB | max diff (8-bit levels) | "
             "compiled s (min-max) | compiled speed-up | compiled max diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for engine in engines:
        for size in sizes:
            if size < engine.min_size:
                continue
            x = engine.to_input(test_image(size)).to(device)
            timings, outs = interleaved(_variants(engine, x), repeat, device)
            plain, fast = timings["plain"], timings["fast"]
            flops = engine.flops(tuple(x.shape))
            best = fast
            compiled = "| - | - | - |"
            if "compiled" in timings:
                comp = timings["compiled"]
                best = min(fast, comp, key=lambda t: t.median)
                compiled = (f"| {comp.median:.2f} ({comp.spread}) | "
                            f"{plain.median / comp.median:.2f}x | "
                            f"{levels(outs['plain'], outs['compiled'], engine.span):.3f} |")
            lines.append(
                f"| {engine.label} | {size}² | {plain.median:.2f} ({plain.spread}) | "
                f"{fast.median:.2f} ({fast.spread}) | {plain.median / fast.median:.2f}x | "
                f"{flops / 1e9:.0f} | {flops / plain.median / 1e9:.0f} | "
                f"{flops / best.median / 1e9:.0f} | "
                f"{100 * flops / best.median / 1e9 / conv_gflops:.0f}% | "
                f"{plain.median * peak_gflops * 1e9 / flops:.2f}x | {mib(plain.peak)} | "
                f"{mib(fast.peak)} | {levels(outs['plain'], outs['fast'], engine.span):.3f} "
                + compiled)
            print(lines[-1], flush=True)
            del x
        if batch > 1:
            x = engine.to_input(test_image(512, batch)).to(device)
            timings, _ = interleaved(_variants(engine, x), max(1, repeat - 1), device)
            compiled = "| - | - | - |"
            if "compiled" in timings:
                compiled = (f"| images/s {batch / timings['compiled'].median:.2f} | "
                            f"{timings['plain'].median / timings['compiled'].median:.2f}x | |")
            lines.append(
                f"| {engine.label} | batch {batch}x512² | images/s "
                f"{batch / timings['plain'].median:.2f} | images/s "
                f"{batch / timings['fast'].median:.2f} | "
                f"{timings['plain'].median / timings['fast'].median:.2f}x | | | | | | "
                f"{mib(timings['plain'].peak)} | {mib(timings['fast'].peak)} | " + compiled)
            print(lines[-1], flush=True)
    return lines


def style_cache_table(device: torch.device) -> list[str]:
    """Two Runtime calls with the same style, other alpha and other content: encodes counted."""
    import numpy as np

    from backend.engines.job import StylizeJob
    from backend.runtime import Runtime
    from tests.helpers.checkpoints import make_adain_files

    with tempfile.TemporaryDirectory() as folder:
        vgg, decoder = make_adain_files(folder)
        runtime = Runtime(device=str(device))
        files = {"vgg": vgg, "decoder": decoder}
        style = (test_image(256).flip(-1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        times = []
        for index, (alpha, size) in enumerate([(1.0, 384), (0.5, 384), (0.8, 320)]):
            content = (test_image(size)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            if index == 2:
                content = content[::-1].copy()
            job = StylizeJob("adain", content, styles=[style], options={"alpha": alpha},
                             checkpoints=files)
            before = dict(runtime.stats)
            start = time.perf_counter()
            runtime.stylize(job)
            times.append((time.perf_counter() - start,
                          runtime.stats["style_encodes"] - before.get("style_encodes", 0),
                          runtime.stats["style_cache_hits"] - before.get("style_cache_hits", 0)))
    lines = ["| call | what changed | seconds | style encodes | style cache hits |",
             "|---|---|---|---|---|"]
    what = ["first call (384², α=1)", "same style, α=0.5", "same style, other content 320², α=0.8"]
    for index, (seconds, encodes, hits) in enumerate(times):
        lines.append(f"| {index + 1} | {what[index]} | {seconds:.2f} | {encodes} | {hits} |")
    return lines


def scaling_table(sizes: list[int], device: torch.device, engines: list[str]) -> list[str]:
    """Optimized + memory-guarded networks from 512² up; one run per size (a long table)."""
    lines = ["| engine | size | seconds | s per Mpx | peak MiB | MiB per Mpx | mode (tiles) |",
             "|---|---|---|---|---|---|---|"]
    torch.manual_seed(0)
    networks = {}
    if "adain" in engines:
        enc = build_network("adain", "vgg_normalised")[:adain_net.RELU4_1 + 1].eval().to(device)
        dec = build_network("adain", "adain_decoder").eval().to(device)
        networks["adain"] = (optimize(enc, "adain", device), optimize(dec, "adain", device))
    if "cyclegan" in engines:
        gen = build_network("cyclegan", "resnet_9blocks").eval().to(device)
        networks["cyclegan"] = (optimize(gen, "cyclegan", device),)
    budget = MemoryBudget.for_device(device)
    for name, nets in networks.items():
        for net in nets:
            guard(net, name, device, budget)
        for size in sizes:
            x = test_image(size).to(device)
            base = reset_peak(device)
            start = time.perf_counter()
            with torch.inference_mode():
                if name == "adain":
                    feats = nets[0].run_guarded(x)
                    out = nets[1].run_guarded(adain_net.adain(feats, *adain_net.mean_std(feats)))
                else:
                    out = nets[0](x * 2 - 1)
            sync(device)
            seconds = time.perf_counter() - start
            peak = peak_since(device, base)
            modes = [guard_of(n).stats for n in nets]
            mode = ", ".join((f"{s.mode} ({s.tiles})" if s.mode != "untiled" else "untiled")
                             + (f", {s.spilled / 2**30:.1f} GiB of layers on disk pages"
                                if s.spilled else "") for s in modes)
            mpx = size * size / 1e6
            lines.append(f"| {name} | {size}² | {seconds:.1f} | {seconds / mpx:.2f} | "
                         f"{mib(peak)} | {peak / 2**20 / mpx:.0f} | {mode} |")
            print(lines[-1], flush=True)
            del out, x
    lines.append(f"\nbudget: {budget.bytes() / 2**30:.1f} GiB "
                 f"(${'STYLE_TRANSFER_MEMORY_BUDGET'} or 60% of MemAvailable)")
    return lines


def tiling_table(size: int, device: torch.device, engines: list[str]) -> list[str]:
    """Tiled (budget forcing >= 4 tiles) vs untiled on a size² image: PSNR, tiles, time."""
    import math

    from backend.perf.budget import estimate_activations
    from backend.perf.tiling import plan_chain

    def psnr(a, b, span):
        mse = float(((a.double() - b.double()) ** 2).mean())
        return math.inf if mse == 0 else 10 * math.log10(span * span / mse)

    lines = ["| network | size | budget MiB | mode | tiles | untiled s | tiled s | PSNR dB |",
             "|---|---|---|---|---|---|---|---|"]
    torch.manual_seed(0)
    cases = []
    if "adain" in engines:
        enc = build_network("adain", "vgg_normalised")[:adain_net.RELU4_1 + 1].eval()
        calibrate(enc, test_image(128))
        cases.append(("AdaIN encoder (relu4_1)", enc.to(device), test_image(size), 1.0, "chain"))
        dec = build_network("adain", "adain_decoder").eval()
        with torch.inference_mode():
            feats = enc(test_image(size).to(device))
        calibrate(dec, feats[..., :32, :32].cpu())
        cases.append(("AdaIN decoder", dec.to(device), feats, 1.0, "chain"))
    for engine, arch in (("cyclegan", "resnet_9blocks"), ("pix2pix", "unet_256")):
        if engine in engines:
            net = build_network(engine, arch).eval()
            if hasattr(net, "set_norm_mode"):
                net.set_norm_mode("image")
            calibrate(net, test_image(256) * 2 - 1)
            cases.append((f"{engine} {arch}", net.to(device), test_image(size) * 2 - 1, 2.0,
                          "layerwise"))
    for label, net, x, span, mode in cases:
        x = x.to(device)
        need = estimate_activations(net, tuple(x.shape)).with_workspace(device)
        budget = need // 4
        if mode == "chain":
            for tenths in range(9, 0, -1):
                budget = need * tenths // 10
                if plan_chain(list(net), tuple(x.shape), budget, device).tiles >= 4:
                    break
        with torch.inference_mode():
            start = time.perf_counter()
            expected = net(x)
            untiled = time.perf_counter() - start
            guard(net, "bench", device, MemoryBudget(device, budget))
            start = time.perf_counter()
            got = net(x)
            tiled = time.perf_counter() - start
        stats = guard_of(net).stats
        lines.append(f"| {label} | {'x'.join(map(str, x.shape[-2:]))} | {mib(budget)} | "
                     f"{stats.mode} | {stats.tiles} | {untiled:.1f} | {tiled:.1f} | "
                     f"{psnr(got.cpu(), expected.cpu(), span):.1f} |")
        print(lines[-1], flush=True)
    return lines


def machine(device: torch.device) -> list[str]:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    lines = [f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
             f"- machine: {platform.node()}, {cpu}, {os.cpu_count()} logical CPUs, "
             f"capability {torch.backends.cpu.get_cpu_capability()}",
             f"- torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}",
             f"- load average at start: {load}"]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return lines


def run_script(args: list[str]) -> list[str]:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    text = (result.stdout + ("\n" + result.stderr if result.returncode else "")).strip()
    return ["```", text, "```"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="batch size for images/s (0: skip)")
    parser.add_argument("--engines", nargs="+",
                        default=["adain", "cyclegan", "pix2pix", "mixgan"])
    parser.add_argument("--scaling", type=int, nargs="*", default=[512, 1024, 2048, 4096])
    parser.add_argument("--scaling-engines", nargs="+", default=["adain", "cyclegan"])
    parser.add_argument("--tiling-check", type=int, default=1024, metavar="SIZE",
                        help="tiled vs untiled PSNR on a SIZE² image (0: skip)")
    parser.add_argument("--daemon", action="store_true", help="run bench_daemon.py too")
    parser.add_argument("--batch-folder", action="store_true", help="run bench_batch.py too")
    parser.add_argument("--compile", action="store_true",
                        help="also time the optimized networks under torch.compile "
                             "($STYLE_TRANSFER_COMPILE=1; compiling is not timed)")
    parser.add_argument("--out", type=Path, help="write the report as Markdown")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    report = ["# Performance suite (bench/bench_suite.py)", ""] + machine(device)
    print("\n".join(report), flush=True)
    conv_nchw, conv_cl = reference_conv(device, 5)
    conv = max(conv_nchw, conv_cl)        # the better layout is the reference the target uses
    gemm = reference_gemm(device, 5)
    peak = max(conv, gemm)
    section = [f"- reference: 3x3 conv 256->256 on 256², fp32: NCHW {conv_nchw:.0f} / "
               f"channels_last "
               f"{conv_cl:.0f} GFLOP/s; '% of ref.' uses the faster, **{conv:.0f} GFLOP/s**",
               f"- float32 matrix product 2048³: {gemm:.0f} GFLOP/s",
               "- weights: random (calibrated to unit activations), which changes no timing; "
               "MIXGAN uses the bundled starter's trained weights",
               "- 'fp32 bound': plain seconds / (GFLOP at the better of those two rates): the "
               "largest speed-up any float32 direct-convolution implementation could reach "
               "over the plain run, if every convolution ran as fast as the reference and "
               "everything else took no time",
               "- 'opt. GFLOP/s' and '% of ref.' use the faster of the optimized and the "
               "compiled run (when --compile is given); they count the FLOPs of direct "
               "convolution, so Winograd convolutions (fewer products) can pass 100%",
               f"- native CPU kernels (Winograd 3x3, channels_last instance norm): "
               f"{native.describe(device.type)} (the optimized runs use them when ready)", ""]
    print("\n".join(section), flush=True)
    report += section
    engines: list[Engine] = []
    wanted = set(args.engines) if args.sizes else set()
    if "adain" in wanted:
        engines += adain_engines(device, args.compile)
    if "cyclegan" in wanted:
        engines.append(generator_engine("cyclegan", "resnet_9blocks", "CycleGAN resnet_9blocks",
                                        device, args.compile))
    if "pix2pix" in wanted:
        engines.append(generator_engine("pix2pix", "unet_256", "pix2pix unet_256 (image norm)",
                                        device, args.compile))
    if "mixgan" in wanted:
        mix = mixgan_engine(device)
        if mix is not None:
            engines.append(mix)
        else:
            report.append("- MIXGAN: no image-to-image MIXGAN network to time (skipped)")
    if args.sizes:
        report += ["", "## Plain vs optimized", ""]
        report += engine_table(engines, args.sizes, args.repeat, device, conv, args.batch, peak)
    if "adain" in args.engines and args.sizes:
        report += ["", "## Style cache (Runtime counters)", ""]
        lines = style_cache_table(device)
        print("\n".join(lines), flush=True)
        report += lines
    if args.tiling_check:
        report += ["", "## Tiling fidelity (budget forcing >= 4 tiles)", ""]
        report += tiling_table(args.tiling_check, device, args.engines)
    if args.scaling:
        report += ["", "## Scaling (optimized, memory-guarded)", ""]
        report += scaling_table(args.scaling, device, args.scaling_engines)
    if args.daemon:
        report += ["", "## Daemon round trip (bench/bench_daemon.py)", ""]
        report += run_script(["bench/bench_daemon.py", "--sizes", "1024", "--repeat", "3"])
    if args.batch_folder:
        report += ["", "## Batch throughput (bench/bench_batch.py)", ""]
        report += run_script(["bench/bench_batch.py", "--count", "24"])
    report += ["", f"total suite time: {time.perf_counter() - started:.0f} s",
               f"command: python bench/bench_suite.py {' '.join(argv or sys.argv[1:])}"]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n", encoding="utf-8")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
