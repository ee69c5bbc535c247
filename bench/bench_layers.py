"""Where the project's CPU time goes, layer by layer: per-layer time shares of one network pass
(the project's float32 path, as bench_peers.py runs it), grouped by layer kind, with GFLOP/s
(direct-convolution FLOPs) and, for the Winograd F(4x4,3x3) convolutions, their own arithmetic
(a quarter of the direct products: 36 instead of 144 per 4x4 output tile and channel pair) as a
share of the FMA peak.

- cyclegan / adain: forward hooks on the leaf modules of the optimized networks;
- magenta / cin: the fused layer kernel's calls (backend/perf/fused.py's Runner), each timed.

Medians over --repeat passes (after one warm-up); the rest of a pass (Python, allocation,
what no hook sees) is its own row. The load average is printed at the start and the end.

    python bench/bench_layers.py [--networks cyclegan adain magenta cin] [--size 1024]
                                 [--repeat 5] [--threads 2] [--peak GFLOPS] [--out FILE]
    python bench/bench_layers.py --threads 1 --clock cpu     # load-proof shares on a busy machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import backend  # noqa: E402,F401  (before torch: OpenMP's wait policy)
import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.perf import fused, native  # noqa: E402
from backend.perf.winograd import WinogradConv2d  # noqa: E402
from _report import finish, load  # noqa: E402
from bench_peers import BUILDERS, header  # noqa: E402
from bench_suite import test_image  # noqa: E402

WINOGRAD_SHARE = 36 / 144          # F(4x4,3x3) products per direct product
# wall time, or (--clock cpu, with one thread) the process's CPU time: on a shared machine the
# CPU seconds of one thread hardly move with the load, the wall seconds do
CLOCK: Callable[[], float] = time.perf_counter


def conv_label(module: nn.Module) -> str:
    k, s = module.kernel_size[0], module.stride[0]
    kind = "Winograd conv" if isinstance(module, WinogradConv2d) else type(module).__name__
    return f"{kind} {k}x{k}/{s} {module.in_channels}->{module.out_channels}"


def label_of(module: nn.Module) -> str:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return conv_label(module)
    if isinstance(module, nn.InstanceNorm2d):
        return f"{type(module).__name__} ({module.num_features} ch)"
    return type(module).__name__


def conv_flops(module: nn.Module, output: torch.Tensor) -> float:
    if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return 0.0
    k = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.ConvTranspose2d):      # per input pixel: all k taps
        pixels = output.shape[-2] * output.shape[-1] / (module.stride[0] * module.stride[1])
    else:
        pixels = output.shape[-2] * output.shape[-1]
    return 2.0 * module.in_channels * module.out_channels * k * pixels * output.shape[0]


class Rows:
    """Per-call records of one pass, kept in call order: (label, seconds, flops)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []


def hooked_pass(modules: list[nn.Module], run: Callable[[], Any]) -> tuple[float, Rows]:
    rows = Rows()
    started: dict[int, float] = {}

    def pre(module, args):
        started[id(module)] = CLOCK()

    def post(module, args, output):
        rows.calls.append((label_of(module), CLOCK() - started.pop(id(module)),
                           conv_flops(module, output)))

    handles = []
    for top in modules:
        for module in top.modules():
            if not list(module.children()) and not isinstance(module, nn.Identity):
                handles += [module.register_forward_pre_hook(pre),
                            module.register_forward_hook(post)]
    try:
        start = CLOCK()
        run()
        total = CLOCK() - start
    finally:
        for handle in handles:
            handle.remove()
    return total, rows


class TimedOps:
    """The native library with each fused_conv / fused_apply call timed (fused.Runner's ops)."""

    def __init__(self, ops: Any, rows: Rows) -> None:
        self.ops, self.rows = ops, rows

    def fused_conv(self, x, scale, shift, relu, residual, weight, stride, upsample, *rest):
        start = CLOCK()
        out = self.ops.fused_conv(x, scale, shift, relu, residual, weight, stride, upsample,
                                  *rest)
        seconds = CLOCK() - start
        k, c, kh, _ = weight.shape
        up = " after x2 upsampling" if upsample == 2 else ""
        self.rows.calls.append((f"fused conv {kh}x{kh}/{stride} {c}->{k}{up}", seconds,
                                2.0 * k * c * kh * kh * out[0][0].numel() / k))
        return out

    def fused_apply(self, raw, *rest):
        start = CLOCK()
        out = self.ops.fused_apply(raw, *rest)
        self.rows.calls.append((f"norm/activation applied ({raw.shape[1]} ch)",
                                CLOCK() - start, 0.0))
        return out


def fused_pass(network: Any, x: torch.Tensor, pool: fused.BufferPool) -> tuple[float, Rows]:
    rows = Rows()
    transformer, args = network.extra["fused"]
    steps = transformer.conv_steps(*args)
    ops = TimedOps(native.kernel(native.CPU_LIBRARY), rows)
    start = CLOCK()
    fused.run_steps(ops, steps, x, pool)
    return CLOCK() - start, rows


def profile(name: str, size: int, repeat: int, peak: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        network = BUILDERS[name](Path(tmp))
    x = network.to_input(test_image(size))
    pool = fused.BufferPool()
    if "fused" in network.extra:
        one = lambda: fused_pass(network, x, pool)                       # noqa: E731
    else:
        one = lambda: hooked_pass(network.extra["modules"], lambda: network.project(x))  # noqa
    passes = []
    with torch.inference_mode():
        one()
        for _ in range(repeat):
            passes.append(one())
    totals = [total for total, _ in passes]
    total = statistics.median(totals)
    calls = len(passes[0][1].calls)
    per_call = [statistics.median(p[1].calls[i][1] for p in passes) for i in range(calls)]
    groups: "OrderedDict[str, list[float]]" = OrderedDict()
    for index, (label, _, flops) in enumerate(passes[0][1].calls):
        group = groups.setdefault(label, [0, 0.0, 0.0])
        group[0] += 1
        group[1] += per_call[index]
        group[2] += flops
    lines = [f"### {network.label}, {size}², pass median {total:.3f} s "
             f"(min {min(totals):.3f}, {repeat} passes)", "",
             "| layers | count | ms | share of the pass | GFLOP/s (direct FLOPs) | "
             "Winograd arithmetic, % of FMA peak |", "|---|---|---|---|---|---|"]
    ordered = sorted(groups.items(), key=lambda item: -item[1][1])
    for label, (count, seconds, flops) in ordered:
        rate = f"{flops / seconds / 1e9:.0f}" if flops else ""
        wino = f"{100 * flops * WINOGRAD_SHARE / seconds / 1e9 / peak:.0f}%" \
            if label.startswith("Winograd") else ""
        lines.append(f"| {label} | {count} | {1000 * seconds:.1f} | "
                     f"{100 * seconds / total:.1f}% | {rate} | {wino} |")
    rest = total - sum(per_call)
    lines.append(f"| rest of the pass (Python, allocation, unhooked ops) | | {1000 * rest:.1f} "
                 f"| {100 * rest / total:.1f}% | | |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["cyclegan", "adain", "magenta"],
                        choices=sorted(BUILDERS))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak", type=float, default=None,
                        help="fp32 FMA peak GFLOP/s of these threads (default: the measured "
                             "461 for 2 threads, 245 for 1: shared/notes/cpu-performance.md)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: CPU seconds of the process (use with --threads 1)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        if args.threads != 1:
            parser.error("--clock cpu needs --threads 1 (CPU seconds of all threads add up)")
        global CLOCK
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    if args.peak is None:
        args.peak = 245.0 * args.threads if args.threads < 2 else 461.0 * args.threads / 2
    native.kernel(native.CPU_LIBRARY, build="now")
    lines = header(args)
    lines[0] = lines[0].replace("Peers benchmark (bench/bench_peers.py)",
                                "Layer profile (bench/bench_layers.py)")
    lines[2] = lines[2].replace("bench_peers.py", "bench_layers.py")
    lines.insert(-1, f"- FMA peak used for the Winograd share: {args.peak:.0f} GFLOP/s; "
                     f"clock: {'CPU seconds of the process' if args.clock == 'cpu' else 'wall'}")
    for line in lines:
        print(line)
    body: list[str] = []
    for name in args.networks:
        part = profile(name, args.size, args.repeat, args.peak)
        print("\n".join(part), flush=True)
        body += part
    return finish(lines + body, args.out)


if __name__ == "__main__":
    sys.exit(main())
