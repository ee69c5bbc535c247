"""Colour Transfer's time and peak memory on a large image, sliced (the default) against one
slice for the whole image (what it did before it worked in slices), each in a fresh process so
the peak RSS is its own.

    python bench/bench_color_slices.py [--size 4200x3000] [--repeat 2] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _report import finish, load  # noqa: E402

ONE_RUN = r"""
import resource, sys, time, torch
sys.path.insert(0, sys.argv[1])
from backend.optim import color
torch.set_num_threads(int(sys.argv[5]))
if sys.argv[4] == "whole":
    color.CHUNK_PIXELS = 1 << 62
width, height = int(sys.argv[2]), int(sys.argv[3])
gen = torch.Generator().manual_seed(0)
content = torch.rand(1, 3, height, width, generator=gen)
style = torch.rand(1, 3, 512, 512, generator=gen) ** 2
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = color.color_transfer(content, style)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, before / 1024, peak / 1024, float(out.double().sum()))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4200x3000", help="WIDTHxHEIGHT (default 12.6 MP)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    lines = ["# Colour Transfer in slices (bench/bench_color_slices.py), "
             + time.strftime("%Y-%m-%dT%H:%M"), "",
             f"- command: `python bench/bench_color_slices.py {' '.join(argv or sys.argv[1:])}`",
             f"- {os.cpu_count()} logical CPUs, {args.threads} threads; a {width}x{height} random "
             "content (float32), a 512² style, lαβ, the symmetric map",
             f"- load average at start (1/5/15 min): {load()}", "",
             "| variant | seconds (median) | peak RSS MiB | RSS before the call MiB | rise MiB |",
             "|---|---|---|---|---|"]
    results: dict[str, list[tuple[float, float, float, float]]] = {"sliced": [], "whole": []}
    for _ in range(args.repeat):
        for variant in results:                  # interleaved: a load change hits both
            done = subprocess.run([sys.executable, "-c", ONE_RUN, str(ROOT), str(width),
                                   str(height), variant, str(args.threads)],
                                  capture_output=True, text=True, check=True)
            results[variant].append(tuple(float(v) for v in done.stdout.split()))
    sums = {variant: runs[0][3] for variant, runs in results.items()}
    for variant, runs in results.items():
        seconds = statistics.median(run[0] for run in runs)
        before = statistics.median(run[1] for run in runs)
        peak = max(run[2] for run in runs)
        lines.append(f"| {variant} | {seconds:.2f} | {peak:.0f} | {before:.0f} | "
                     f"{peak - before:.0f} |")
    lines += ["", f"- same result: {abs(sums['sliced'] - sums['whole']) < 1e-3 * abs(sums['whole'])}"
              f" (sums {sums['sliced']:.4f} / {sums['whole']:.4f})"]
    print("\n".join(lines))
    return finish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
