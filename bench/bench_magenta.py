"""Seconds per image of Magenta arbitrary stylization: our float networks in plain PyTorch (and
the transformer after the project's CPU transforms, perf.optimize) vs onnxruntime on the shipped
int8 graphs and on their Q/DQ-stripped float versions.

    python bench/bench_magenta.py [--wheel PATH] [--sizes 512,1024] [--repeats 3] [--threads N]
                                  [--markdown bench/results/magenta-cpu.md]

Transformer at each size (content N=1, one embedding), predictor once at 256x256: the best and
the median of --repeats timed runs after one warm-up. The wheel defaults to the test cache
(~/.cache/style-transfer/stl-wheel). Needs onnx + onnxruntime (requirements-test.txt).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
import torch  # noqa: E402

from backend.modelstore import onnx_magenta as om  # noqa: E402
from backend.modelstore.stl_wheel import WHEEL, read_member  # noqa: E402
from backend.networks.magenta import MagentaStylePredictor, MagentaTransformer  # noqa: E402
from backend.perf import optimize  # noqa: E402
from tests.helpers import onnx_float  # noqa: E402
from tests.helpers.stl_wheel import cache_dir  # noqa: E402


def seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) of `repeats` timed calls after a warm-up: on a shared machine the best is
    the least disturbed one."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=cache_dir() / WHEEL.filename)
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    predict = read_member(args.wheel, om.PREDICT_MEMBER)
    transform = read_member(args.wheel, om.TRANSFORM_MEMBER)
    predictor, transformer = MagentaStylePredictor().eval(), MagentaTransformer().eval()
    predictor.load_state_dict(om.predictor_state_dict(predict))
    transformer.load_state_dict(om.transformer_state_dict(transform))

    def ort(data: bytes, float_graph: bool):
        model = onnx_float.float_graph(data) if float_graph \
            else onnx_float.free_dims(onnx.load_from_string(data))
        return onnx_float.session(model, args.threads)

    fast = optimize(copy.deepcopy(transformer), "magenta", "cpu")   # Winograd, channels_last
    sessions = {"ort int8": (ort(predict, False), ort(transform, False)),
                "ort float": (ort(predict, True), ort(transform, True))}
    rows: list[tuple[str, str, tuple[float, float]]] = []
    style = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        embedding = predictor(style)
        rows.append(("predictor 256", "torch float",
                     seconds(lambda: predictor(style), args.repeats)))
    for name, (predict_sess, _) in sessions.items():
        rows.append(("predictor 256", name, seconds(
            lambda: onnx_float.run_predictor(predict_sess, style), args.repeats)))
    for side in (int(s) for s in args.sizes.split(",")):
        content = torch.rand(1, 3, side, side)
        with torch.inference_mode():
            rows.append((f"transformer {side}", "torch float", seconds(
                lambda: transformer(content, embedding), args.repeats)))
            rows.append((f"transformer {side}", "torch float, perf.optimize", seconds(
                lambda: fast(content, embedding), args.repeats)))
        for name, (_, transform_sess) in sessions.items():
            rows.append((f"transformer {side}", name, seconds(
                lambda: onnx_float.run_transformer(transform_sess, content, embedding),
                args.repeats)))
    load_after = os.getloadavg()

    lines = [f"# Magenta arbitrary stylization, CPU ({dt.date.today().isoformat()})", "",
             f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{args.threads} threads (torch and onnxruntime), torch {torch.__version__}, "
             f"onnxruntime {__import__('onnxruntime').__version__}",
             f"- load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
             "(1 min; the machine is shared)",
             f"- best and median of {args.repeats} runs after a warm-up; N=1", "",
             "| network | runtime | s / image, best | median |", "|---|---|---|---|"]
    lines += [f"| {what} | {runtime} | {best:.3f} | {median:.3f} |"
              for what, runtime, (best, median) in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
