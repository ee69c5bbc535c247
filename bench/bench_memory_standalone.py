"""Peak memory of one CycleGAN image as a user gets it, each tool in a process of its own: our
`python -m backend stylize --in-process` (Python, torch, the model file, PNG in and out) against
a Python process that imports only OpenVINO (f32) or ONNX Runtime and runs the same network's
ONNX graph once. Peak RSS is the child's ru_maxrss; seconds are the child's wall time.

    python bench/bench_memory_standalone.py [--size 2048] [--threads 2] [--rounds 1]
                                            [--out FILE]

"project, streaming off" is the same command with backend/perf/streamed.py's resampling layers
run whole (the A/B of that change). Rounds are interleaved (every tool once per round); cells
are the largest peak and the median seconds.

The network: resnet_9blocks with random weights in the released layout (tests/helpers), which
cost what the released file costs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import finish, load  # noqa: E402

PEER_RUN = r"""
import sys, time
import numpy as np
kind, path, size, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32) * 2 - 1
if kind == "openvino f32":
    import openvino as ov
    core = ov.Core()
    model = core.read_model(path)
    model.reshape([1, 3, size, size])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                  "INFERENCE_NUM_THREADS": threads})
    run = lambda: compiled(x)
else:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda: session.run(None, {name: x})
run()
"""

# the project's stylize with its resampling layers run whole (no streaming), for the A/B
PROJECT_WHOLE = r"""
import runpy, sys
from backend.perf import streamed
streamed.MIN_STREAM_BYTES = 1 << 62
sys.argv = ["backend", *sys.argv[1:]]
runpy.run_module("backend", run_name="__main__")
"""


def child(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of one child process; each child is measured alone (the
    children's ru_maxrss is the largest so far, so one process per call of this script's
    --child mode)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", "--", *command],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.split()[-1]), seconds


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--child", "--"]:
        subprocess.run(argv[2:], check=True, stdout=subprocess.DEVNULL)
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from backend.imageio import write_image
    from backend.networks.checkpoints import build_network
    from tests.helpers.checkpoints import make_models_dir
    lines = ["# Peak memory, one process per tool (bench/bench_memory_standalone.py), "
             + time.strftime("%Y-%m-%dT%H:%M"), "",
             f"- command: `python bench/bench_memory_standalone.py {' '.join(argv)}`",
             f"- {os.cpu_count()} logical CPUs, {args.threads} threads; CycleGAN resnet_9blocks "
             f"on a {args.size}² image",
             f"- load average at start (1/5/15 min): {load()}", "",
             "| tool | peak RSS MiB | seconds (whole process) |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = make_models_dir(folder / "models")
        picture = folder / "in.png"
        rng = np.random.default_rng(0)
        write_image(picture, rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
        network = build_network("cyclegan", "resnet_9blocks").eval()
        onnx = folder / "cyclegan.onnx"
        torch.onnx.export(network, (torch.zeros(1, 3, 256, 256),), str(onnx),
                          input_names=["image"], output_names=["out"], dynamo=False,
                          dynamic_axes={"image": {2: "h", 3: "w"}})
        env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=models,
                   STYLE_TRANSFER_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        stylize = ["stylize", str(picture), "-o", str(folder / "out.png"), "--engine",
                   "cyclegan", "--model", "style_monet", "--in-process"]
        env["PYTHONPATH"] = str(ROOT)
        runs = {
            "project: stylize --in-process": ([sys.executable, "-m", "backend", *stylize], env),
            "project, streaming off": ([sys.executable, "-c", PROJECT_WHOLE, *stylize], env),
            "OpenVINO f32 (openvino + numpy only)": (
                [sys.executable, "-c", PEER_RUN, "openvino f32", str(onnx), str(args.size),
                 str(args.threads)], None),
            "ONNX Runtime (onnxruntime + numpy only)": (
                [sys.executable, "-c", PEER_RUN, "onnxruntime", str(onnx), str(args.size),
                 str(args.threads)], None),
        }
        measured: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
        for _ in range(args.rounds):
            for label, (command, environment) in runs.items():
                measured[label].append(child(command, environment))
                print(label, measured[label][-1], flush=True)
        for label, results in measured.items():
            peak = max(p for p, _ in results)
            seconds = statistics.median(s for _, s in results)
            lines.append(f"| {label} | {peak:.0f} | {seconds:.1f} |")
    print("\n".join(lines))
    return finish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
