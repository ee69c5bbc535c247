"""Seconds per image for each engine at given sizes, through the same Runtime the CLI and the
daemon use (padding, conversions and all), printed as a Markdown table.

Weights are random (PyTorch's default initialisation) in the released layouts: speed does not
depend on the weight values. Models are loaded once and warmed up before timing; each cell is the
median of --repeat runs (min and max shown too).

    python bench/bench_engines.py                       # 512 and 1024, all engines, this device
    python bench/bench_engines.py --sizes 256 --repeat 1 --engines cyclegan
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.engines.job import StylizeJob  # noqa: E402
from backend.networks.checkpoints import build_network  # noqa: E402
from backend.runtime import Runtime, cpu_name  # noqa: E402

ENGINES = ("adain", "adain_cached_style", "cyclegan", "pix2pix")


def write_checkpoints(folder: Path) -> dict[str, dict[str, str]]:
    """Random-weight files in the released layouts; returns engine -> {role: path}."""
    files = {
        "vgg": ("adain", "vgg_normalised"), "decoder": ("adain", "adain_decoder"),
        "cyclegan": ("cyclegan", "resnet_9blocks"), "pix2pix": ("pix2pix", "unet_256"),
    }
    paths = {}
    torch.manual_seed(0)
    for name, (engine, arch) in files.items():
        paths[name] = str(folder / f"{name}.pth")
        torch.save(build_network(engine, arch).state_dict(), paths[name])
    return {"adain": {"vgg": paths["vgg"], "decoder": paths["decoder"]},
            "cyclegan": {"generator": paths["cyclegan"]},
            "pix2pix": {"generator": paths["pix2pix"]}}


def make_job(engine: str, side: int, checkpoints: dict[str, dict[str, str]]) -> StylizeJob:
    rng = np.random.default_rng(side)
    content = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    family = "adain" if engine.startswith("adain") else engine
    styles = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8)] if family == "adain" else []
    return StylizeJob(engine=family, content=content, styles=styles,
                      checkpoints=checkpoints[family])


def time_engine(rt: Runtime, engine: str, side: int, checkpoints, repeat: int) -> list[float]:
    job = make_job(engine, side, checkpoints)
    rt.stylize(job)                               # load + warm up (and fill the style cache)
    times = []
    for _ in range(repeat):
        if engine == "adain":
            rt.style_cache.clear()                # the style is encoded in every run
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        rt.stylize(job)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def machine() -> str:
    return (f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def _load() -> str:
    """Other processes on the machine slow every number down; say how busy it was."""
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,1024", help="square sides, comma separated")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    rt = Runtime(device=args.device, threads=args.threads)
    device = f"{rt.device} ({rt.status()['device_name']})"
    print(f"# Engine speed, {datetime.date.today().isoformat()}")
    print(f"device: {device}; machine: {machine()}")
    print("random weights (speed does not depend on them); median of "
          f"{args.repeat} runs after a warm-up; seconds per image\n")
    print(f"load average at start (1/5/15 min): {_load()}\n")
    print("| engine | size | median s | min s | max s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = write_checkpoints(Path(folder))
        for engine in engines:
            for side in sizes:
                times = time_engine(rt, engine, side, checkpoints, args.repeat)
                print(f"| {engine} | {side}x{side} | {statistics.median(times):.2f} | "
                      f"{min(times):.2f} | {max(times):.2f} |", flush=True)
    print(f"\nload average at the end (1/5/15 min): {_load()}")
    print("\nadain = style encoded in every run; adain_cached_style = the style's statistics "
          "come from the Runtime's cache (the daemon's usual case); pix2pix = unet_256 "
          "(1024x1024 needs no padding), norm=image.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
