"""Where users feel it: seconds through the `stylize` command, against the bare network.

For each engine and size, in one run:
- cold: one `python -m backend stylize` process on one PNG (torch import, model load, PNG
  decode/encode included): the time to the first result;
- marginal: (T(1 + N images) - T(1 image)) / N for one process given several PNGs: what each
  further image costs through the CLI (decode, conversions, progress, memory estimate, encode);
- bare network: the same engine's network call in this process, optimized as the Runtime does.
Calls alternate between the variants (interleaved rounds); medians; the load average is printed.
Random weights in the released layouts (which changes no timing).

    python bench/bench_stylize.py [--engines cyclegan adain] [--sizes 512 1024] [--extra 3]
                                  [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench_engines import write_checkpoints  # noqa: E402


def load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def write_images(folder: Path, side: int, count: int) -> list[Path]:
    rng = np.random.default_rng(side)
    base = np.asarray(Image.open(ROOT / "examples" / "content" / "city.jpg").convert("RGB")
                      .resize((side, side), Image.BICUBIC))
    paths = []
    for index in range(count):
        noise = rng.integers(-8, 9, base.shape)
        path = folder / f"in{side}_{index}.png"
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def cli_args(engine: str, checkpoints: dict, style: Path) -> list[str]:
    args = ["--engine", engine]
    for role, path in checkpoints[engine].items():
        args += ["--checkpoint", f"{role}={path}"]
    if engine == "adain":
        args += ["--style", str(style)]
    return args


def run_cli(images: list[Path], out: Path, extra: list[str], threads: int) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "backend", "stylize", *map(str, images),
                           "-o", str(out), "--threads", str(threads), "--quiet", *extra],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"stylize failed: {done.stderr[-2000:]}")
    return seconds


def bare_network(engine: str, checkpoints: dict, side: int, threads: int):
    """The engine's network call as the Runtime prepares it (one image, float32 input)."""
    import torch
    from backend.engines.job import StylizeJob
    from backend.runtime import Runtime
    torch.set_num_threads(threads)
    rt = Runtime(device="cpu", threads=threads)
    rng = np.random.default_rng(side)
    content = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    styles = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)] if engine == "adain" else []
    job = StylizeJob(engine=engine, content=content, styles=styles,
                     checkpoints=checkpoints[engine])
    rt.stylize(job)                                  # load, warm up, style cache filled

    def call() -> float:
        start = time.perf_counter()
        rt.stylize(job)
        return time.perf_counter() - start
    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["cyclegan", "adain"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--extra", type=int, default=3, help="further images per call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = [f"# Through `stylize` (bench/bench_stylize.py), {datetime.datetime.now():%Y-%m-%dT%H:%M}",
             "", f"- command: `python bench/bench_stylize.py {' '.join(sys.argv[1:])}`",
             f"- {os.cpu_count()} logical CPUs, {args.threads} threads; PNG in and out",
             f"- load average at start (1/5/15 min): {load()}", "",
             "| engine | size | cold stylize, 1 image s | marginal s per image (CLI) | "
             "Runtime.stylize in process s | bare share of marginal |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoints = write_checkpoints(folder)
        style = write_images(folder, 256, 1)[0]
        for engine in args.engines:
            extra = cli_args(engine, checkpoints, style)
            for side in args.sizes:
                images = write_images(folder, side, 1 + args.extra)
                bare = bare_network(engine, checkpoints, side, args.threads)
                one, many, inproc = [], [], []
                for round_ in range(args.repeat):
                    one.append(run_cli(images[:1], folder / f"o1_{round_}", extra, args.threads))
                    many.append(run_cli(images, folder / f"on_{round_}", extra, args.threads))
                    inproc.append(bare())
                cold = statistics.median(one)
                marginal = (statistics.median(many) - cold) / args.extra
                network = statistics.median(inproc)
                lines.append(f"| {engine} | {side}² | {cold:.2f} | {marginal:.2f} | "
                             f"{network:.2f} | {network / marginal:.0%} |")
                print(lines[-1], flush=True)
    lines += ["", f"- load average at the end (1/5/15 min): {load()}"]
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
