"""Iterations per second of the optimisation methods (backend/optim) on the real-size VGG layout,
printed as a Markdown table: L-BFGS and Adam, with and without the photo regulariser.

Weights are random (AdaIN's VggEncoder layout, normalised like Gatys' VGG on the example images)
unless --vgg names a real vgg_normalised.pth: speed does not depend on the values, only L-BFGS's
extra evaluations do (shown as VGG passes per iteration). Per row: the median interval between
iterations after the first, the VGG passes those iterations made, set-up seconds (features,
matting Laplacian, the first evaluation and the first iteration, whose step length L-BFGS still
has to find), the whole run, and what estimate_seconds predicted for it from a profile measured
at 64 and 128 just before.

    python bench/bench_optimize.py                        # 256 and 512, this device
    python bench/bench_optimize.py --sizes 512,1024 --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench_engines import _load, machine  # noqa: E402
from backend.engines.base import resize  # noqa: E402
from backend.networks.adain import VggEncoder  # noqa: E402
from backend.networks.checkpoints import load_network  # noqa: E402
from backend.optim import OptimizeOptions, estimate_seconds, measure_speed, run_gatys  # noqa
from backend.optim.features import normalise_like_gatys  # noqa: E402

EXAMPLES = ROOT / "examples"
CONFIGS = (("lbfgs", False), ("adam", False), ("lbfgs", True), ("adam", True))


def example(name: str, side: int, device: torch.device) -> torch.Tensor:
    """An example image (examples/content or styles), squashed to side x side."""
    path = next(EXAMPLES.glob(f"*/{name}.jpg"))
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return resize(torch.from_numpy(pixels).permute(2, 0, 1)[None], (side, side)).to(device)


def encoder_for(vgg: Optional[str], device: torch.device) -> torch.nn.Sequential:
    """The real normalised VGG from a file, or the same layout with random weights rescaled the
    way Gatys normalised VGG-19 (mean activation 1 per filter over the example images)."""
    if vgg:
        return load_network("adain", "vgg", vgg)[1].to(device).eval()
    torch.manual_seed(0)
    encoder = VggEncoder().eval()
    images = [example(name, 128, torch.device("cpu")) for name in
              ("city", "landscape", "still_life", "mosaic", "swirls")]
    normalise_like_gatys(encoder, images)
    return encoder.to(device)


def time_run(encoder, side: int, options: OptimizeOptions, device: torch.device) -> dict:
    """One run: median seconds per iteration after the first, set-up seconds (features,
    Laplacian, the first iteration's extra evaluations), VGG passes per iteration after the
    first."""
    passes = [0]
    hook = encoder[1].register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    stamps: list[float] = []
    counts: list[int] = []

    def tick(_progress) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        counts.append(passes[0])

    start = time.perf_counter()
    try:
        run_gatys(example("city", side, device), [example("swirls", side, device)], options,
                  encoder, progress=tick)
    finally:
        hook.remove()
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    step = statistics.median(intervals)
    return {"step": step, "setup": max(0.0, stamps[0] - start - step),
            "total": stamps[-1] - start,
            "passes": (counts[-1] - counts[0]) / (len(counts) - 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512", help="square sides, comma separated")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vgg", default=None, help="a real vgg_normalised.pth (optional)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    encoder = encoder_for(args.vgg, device)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# Optimisation speed, {datetime.date.today().isoformat()}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}); machine: {machine()}")
    print(f"VGG: {'file ' + args.vgg if args.vgg else 'random weights, Gatys-normalised'}; "
          f"content examples/content/city.jpg, style examples/styles/swirls.jpg, squashed to "
          f"the side; {args.iterations} iterations per run, one scale\n")
    print(f"load average at start (1/5/15 min): {_load()}\n")
    print("| optimizer | photo | size | s/iteration | iterations/s | VGG passes/iteration | "
          "set-up s | run s | estimated s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for optimizer, photo in CONFIGS:
        options = OptimizeOptions(optimizer=optimizer, photo=photo, iterations=args.iterations,
                                  scales=1)
        run_gatys(example("city", 64, device), [example("swirls", 64, device)],
                  options.replace(size=64, iterations=2), encoder)        # warm-up
        profile = measure_speed(encoder, options, sides=(64, 128), iterations=4)
        for side in sizes:
            trial = options.replace(size=side)
            result = time_run(encoder, side, trial, device)
            estimate = estimate_seconds(profile, (side, side), trial)
            print(f"| {optimizer} | {'yes' if photo else 'no'} | {side}x{side} | "
                  f"{result['step']:.2f} | {1 / result['step']:.3f} | {result['passes']:.2f} | "
                  f"{result['setup']:.2f} | {result['total']:.1f} | {estimate:.1f} |",
                  flush=True)
    print(f"\nload average at the end (1/5/15 min): {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
