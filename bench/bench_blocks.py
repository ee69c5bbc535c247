"""The fused end blocks (backend/perf/fused_blocks.py) on and off, in one process: the project's
CycleGAN and AdaIN networks (bench_peers' builders: random weights calibrated to unit
activations) with their blocks' fused forward, and the same modules with it removed for the
call, interleaved rounds, medians; both outputs against plain PyTorch in 8-bit levels.

    python bench/bench_blocks.py [--networks cyclegan adain] [--sizes 512 1024] [--repeat 5]
                                 [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from backend.perf import fused_blocks, native  # noqa: E402
from _report import finish, load  # noqa: E402
from bench_peers import BUILDERS, Network  # noqa: E402
from bench_suite import test_image  # noqa: E402


def without_blocks(network: Network) -> Callable[[torch.Tensor], torch.Tensor]:
    """The project's forward with every BlockFusedForward taken off for the call."""
    holders = [module for top in network.extra.get("modules", []) for module in top.modules()
               if isinstance(module.__dict__.get("forward"), fused_blocks.BlockFusedForward)]

    def run(x: torch.Tensor) -> torch.Tensor:
        saved = [module.__dict__.pop("forward") for module in holders]
        try:
            return network.project(x)
        finally:
            for module, forward in zip(holders, saved):
                module.forward = forward
    run.blocks = sum(len(m.__dict__["forward"].starts) for m in holders)  # type: ignore
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["cyclegan", "adain"],
                        choices=["cyclegan", "adain"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if native.kernel(native.CPU_LIBRARY, build="now") is None:
        print("the native kernels are not built: " + native.state(native.CPU_LIBRARY))
        return 1
    lines = ["# Fused end blocks on and off (bench/bench_blocks.py), "
             + time.strftime("%Y-%m-%dT%H:%M"), "",
             f"- command: `python bench/bench_blocks.py {' '.join(argv or sys.argv[1:])}`",
             f"- {os.cpu_count()} logical CPUs, {args.threads} threads, torch {torch.__version__}",
             f"- load average at start (1/5/15 min): {load()}", "",
             "| network | size | blocks | with blocks s | without s | gain | max levels off "
             "plain torch (with / without) |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            network = BUILDERS[name](Path(tmp))
            off = without_blocks(network)
            for size in args.sizes:
                x = network.to_input(test_image(size))
                variants = {"with": lambda: network.project(x), "without": lambda: off(x)}
                times: dict[str, list[float]] = {key: [] for key in variants}
                with torch.inference_mode():
                    reference = network.plain(x)
                    outputs = {key: run() for key, run in variants.items()}
                    for _ in range(args.repeat):
                        for key, run in variants.items():
                            start = time.perf_counter()
                            run()
                            times[key].append(time.perf_counter() - start)
                levels = 255.0 / network.span
                off_by = [float((outputs[key] - reference).abs().max()) * levels
                          for key in ("with", "without")]
                on_s, off_s = (statistics.median(times[key]) for key in ("with", "without"))
                row = (f"| {network.label} | {size}² | {off.blocks} | {on_s:.3f} | {off_s:.3f} | "
                       f"{off_s / on_s:.2f}x | {off_by[0]:.4f} / {off_by[1]:.4f} |")
                lines.append(row)
                print(row, flush=True)
    return finish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
