"""What the photorealism options cost and do: Colour Transfer (a whole job) and the photorealistic
smoothing (the guided filter after the network) against the feed-forward network itself, at
several sizes, through the Runtime as a user's job runs.

    python bench/bench_photo.py [--models-dir DIR] [--engine magenta] [--sizes 512,1024,2048]
                                [--radius 8] [--repeats 3] [--device cpu]
                                [--markdown bench/results/photo-cpu-DATE.md]

Content: examples/content/city.jpg scaled to each size; style: examples/styles/swirls.jpg. Per
size, the best and median of --repeats runs after a warm-up (models loaded first) of: the network
job, the same job with --photo-radius, the guided filter alone (exact with a colour and a grey
guide, and the subsampled fast one the smoothing step uses), and a colour-transfer job. "edges" is the correlation of the result's gradient magnitudes with the
content's (higher: the result follows the photo's edges more).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from backend.engines.job import StylizeJob  # noqa: E402
from backend.engines.smoothing import subsampling  # noqa: E402
from backend.optim.guided_filter import guided_filter  # noqa: E402
from backend.runtime import Runtime, cpu_name  # noqa: E402
from bench._report import finish, load  # noqa: E402


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(best, median, last result) of `repeats` calls after a warm-up."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def edges(image: np.ndarray, content: np.ndarray) -> float:
    def magnitude(pixels: np.ndarray) -> np.ndarray:
        gy, gx = np.gradient(pixels[..., :3].astype(np.float64).mean(axis=2))
        return np.hypot(gx, gy).ravel()
    return float(np.corrcoef(magnitude(image), magnitude(content))[0, 1])


def picture(name: str, side: int) -> np.ndarray:
    with Image.open(ROOT / "examples" / name) as image:
        return np.asarray(image.convert("RGB").resize((side, side), Image.BICUBIC))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--engine", default="magenta")
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--radius", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    rt = Runtime(device=args.device, models_dir=args.models_dir)
    device = rt.device
    processor = cpu_name() if device.type == "cpu" else rt.status()["device_name"]
    lines = [f"# Photorealism options, {args.device} ({dt.date.today().isoformat()})", "",
             f"- machine: {platform.node()}, {processor}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}",
             f"- command: `python bench/bench_photo.py {' '.join(argv or sys.argv[1:])}`",
             f"- load average at the start (1/5/15 min): {load()}",
             f"- network: {args.engine} (its default model); smoothing radius {args.radius}, "
             "eps 0.01; best / median of "
             f"{args.repeats} after a warm-up", "",
             "| size | network s | + smoothing s | smoothing share | exact filter s | "
             "fast filter s (used) | exact, grey guide s | colour transfer s | edges off | "
             "edges on |", "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    style = picture("styles/swirls.jpg", 256)
    for side in [int(s) for s in args.sizes.split(",")]:
        content = picture("content/city.jpg", side)

        def job(**options) -> np.ndarray:
            return rt.stylize(StylizeJob(engine=args.engine, content=content, styles=[style],
                                         options=options))

        net_best, net_med, off = timed(job, args.repeats)
        on_best, on_med, on = timed(lambda: job(photo_radius=args.radius), args.repeats)
        guide = torch.from_numpy(content.astype(np.float32) / 255).permute(2, 0, 1)[None] \
            .to(device)
        src = torch.from_numpy(off.astype(np.float32) / 255).permute(2, 0, 1)[None].to(device)

        def run_filter(g: torch.Tensor, subsample: int = 1) -> torch.Tensor:
            out = guided_filter(g, src, args.radius, 1e-2, subsample=subsample)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        colour_best, colour_med, _ = timed(lambda: run_filter(guide), args.repeats)
        fast_best, fast_med, _ = timed(lambda: run_filter(guide, subsampling(args.radius)),
                                       args.repeats)
        grey_best, grey_med, _ = timed(lambda: run_filter(guide.mean(1, keepdim=True)),
                                       args.repeats)
        ct_best, ct_med, _ = timed(lambda: rt.stylize(StylizeJob(
            engine="colortransfer", content=content, styles=[style])), args.repeats)
        share = (on_best - net_best) / on_best
        row = (f"| {side}² | {net_best:.3f} / {net_med:.3f} | {on_best:.3f} / {on_med:.3f} | "
               f"{share:.0%} | {colour_best:.3f} / {colour_med:.3f} | "
               f"{fast_best:.3f} / {fast_med:.3f} | {grey_best:.3f} / {grey_med:.3f} | {ct_best:.3f} / {ct_med:.3f} | "
               f"{edges(off, content):.3f} | {edges(on, content):.3f} |")
        lines.append(row)
        print(row, flush=True)
    return finish(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
