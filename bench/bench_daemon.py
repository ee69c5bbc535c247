"""Round-trip overhead of the daemon versus calling the Runtime in-process.

Two measurements, each printed as a table (and, with --out, written as Markdown):

1. transport: a daemon (the real DaemonServer: ROUTER socket, protocol decode, validation,
   queue, worker thread, numpy conversion, reply) whose Runtime is an "echo" that returns a copy
   of the content, versus that same echo called in-process. The difference is exactly what the
   daemon adds to every stylize call: socket transfer both ways + validation + conversions.
2. --real: the real `python -m backend serve` with the real Runtime (CycleGAN resnet_9blocks,
   random weights, working_size 256 so the network is cheap while full-size pixels still travel)
   versus Runtime.stylize in-process on the same machine.

    python bench/bench_daemon.py [--sizes 1024 4096] [--repeat 5] [--real] [--out FILE]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import backend  # noqa: E402,F401
from backend.daemon.images import array_to_frame, frame_to_array  # noqa: E402
from stclient.client import Client  # noqa: E402

THREADS = 1        # the same torch thread count in-process and in the daemon
CASES = [("RGB uint8", 3, np.uint8), ("RGBA uint16", 4, np.uint16), ("RGB float32", 3, np.float32)]


class EchoRuntime:
    """Stands in for the network: returns a copy (an engine allocates its output, too)."""

    device = "cpu"

    def stylize(self, job, progress=None, cancelled=None):
        if progress is not None:
            progress(0.5, "echo")
        return np.array(job.content, copy=True)

    def status(self):
        return {"device": "cpu", "engine": "echo"}


def serve_echo(endpoint: str) -> None:
    """Child process: the real server with the echo runtime, model lookup bypassed."""
    from backend.daemon import validation
    from backend.daemon.config import DaemonConfig
    from backend.daemon.server import DaemonServer
    validation.resolve_model = lambda engine, model, config: model or "echo"
    # the socket's own 0700 folder is the runtime dir: a private endpoint, no token
    config = DaemonConfig(endpoint=endpoint, runtime_dir=Path(endpoint[len("ipc://"):]).parent,
                          max_pixels=1 << 26)
    server = DaemonServer(config, runtime_factory=lambda _: EchoRuntime())
    server.bind()
    server.wait_ready(60)
    print("ready", flush=True)
    server.serve_forever()


def image(size: int, channels: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(size + channels)
    if dtype == np.float32:
        return rng.random((size, size, channels), dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, (size, size, channels), dtype=dtype)


def interleaved(first, second, repeat: int) -> tuple[list[float], list[float]]:
    """Time two variants alternately, so load changes on a shared machine hit both alike."""
    first()
    second()
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return a, b


def fmt(times: list[float]) -> str:
    low, high = 1000 * min(times), 1000 * max(times)
    return f"{1000 * statistics.median(times):.1f} ({low:.0f}-{high:.0f})"


def bench_transport(sizes: list[int], repeat: int) -> list[str]:
    from backend.engines.job import StylizeJob
    directory = Path(tempfile.mkdtemp(prefix="st-bench-", dir="/tmp"))
    endpoint = f"ipc://{directory}/bench.sock"
    child = subprocess.Popen([sys.executable, __file__, "--serve-echo", endpoint],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        client = Client(endpoint, autostart=False, timeout=120)
        echo = EchoRuntime()
        rows = ["| image | MiB each way | in-process ms | daemon ms | overhead ms, medians | "
                "overhead ms, minima | MiB/s through the daemon (best) |",
                "|---|---|---|---|---|---|---|"]
        for size in sizes:
            for name, channels, dtype in CASES:
                pixels = image(size, channels, dtype)
                frame = array_to_frame(pixels)
                mib = pixels.nbytes / 2**20
                def through_daemon():
                    out, _ = client.stylize(frame, "cyclegan", "echo")
                    assert frame_to_array(out).shape == pixels.shape

                local, remote = interleaved(
                    lambda: echo.stylize(StylizeJob("cyclegan", pixels)), through_daemon, repeat)
                overhead = statistics.median(remote) - statistics.median(local)
                best = min(remote) - min(local)
                rows.append(f"| {size}² {name} | {mib:.0f} | {fmt(local)} | {fmt(remote)} | "
                            f"{1000 * overhead:.1f} | {1000 * best:.1f} | "
                            f"{2 * mib / max(best, 1e-6):.0f} |")
                print(rows[-1], flush=True)
        client.close()
        return rows
    finally:
        child.terminate()
        child.wait(30)


def bench_real(sizes: list[int], repeat: int) -> list[str]:
    from backend.engines.job import StylizeJob
    from backend.runtime import Runtime
    from stclient.registry import resolve_options
    from tests.helpers.checkpoints import make_models_dir
    from tests.helpers.daemon import start_daemon
    models = make_models_dir(tempfile.mkdtemp(prefix="st-bench-models-"))
    options = {"working_size": 256}
    runtime = Runtime(device="cpu", models_dir=models, threads=THREADS)
    rows = ["| image | in-process ms | daemon ms | overhead ms, medians | overhead ms, minima "
            "| ratio of medians |", "|---|---|---|---|---|---|"]
    with start_daemon(models, threads=THREADS) as daemon:
        client = daemon.client(timeout=300)
        for size in sizes:
            pixels = image(size, 3, np.uint8)
            frame = array_to_frame(pixels)
            job = StylizeJob("cyclegan", pixels, "style_monet",
                             options=resolve_options("cyclegan", options))
            local, remote = interleaved(
                lambda: runtime.stylize(job),
                lambda: client.stylize(frame, "cyclegan", "style_monet", options), repeat)
            out, _ = client.stylize(frame, "cyclegan", "style_monet", options)
            assert np.array_equal(frame_to_array(out), runtime.stylize(job))
            overhead = statistics.median(remote) - statistics.median(local)
            rows.append(f"| {size}² RGB uint8, CycleGAN working_size 256 | {fmt(local)} | "
                        f"{fmt(remote)} | {1000 * overhead:.1f} | "
                        f"{1000 * (min(remote) - min(local)):.1f} | "
                        f"{statistics.median(remote) / statistics.median(local):.2f} |")
            print(rows[-1], flush=True)
        client.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="also measure with the real Runtime")
    parser.add_argument("--out", type=Path, help="write the tables as Markdown here")
    parser.add_argument("--serve-echo", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return 0
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
               f"{platform.python_version()}, {platform.system()}")
    print(f"# daemon round trip ({machine}); times: median (min-max) of {args.repeat}")
    print("\n## transport + validation (echo runtime)")
    transport = bench_transport(args.sizes, args.repeat)
    real = []
    if args.real:
        print("\n## real Runtime")
        real = bench_real(args.sizes, args.repeat)
    if args.out:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        text = ["# Daemon round-trip overhead\n",
                f"Command: `python bench/bench_daemon.py --sizes {' '.join(map(str, args.sizes))}"
                f" --repeat {args.repeat}{' --real' if args.real else ''}`  ",
                f"Machine: {machine}, shared with other work (load average {load}). Times in "
                f"ms: median (min-max) of {args.repeat} runs after one warm-up, in-process and "
                "daemon runs interleaved. Endpoint: ipc socket.\n",
                "## Transport + validation (echo runtime)\n",
                "The real DaemonServer (ROUTER, protocol decode, validation, queue, worker "
                "thread, numpy conversion, reply) with a Runtime that returns a copy of the "
                "content, versus that copy in-process: the difference is what the daemon adds "
                "to every call. The machine is shared and noisy: the difference of the minima "
                "is the steadier estimate. MiB/s counts both directions.\n", *transport]
        if real:
            text += ["\n## Real Runtime (CycleGAN, random weights, working_size 256)\n",
                     "`python -m backend serve --threads 1` versus `Runtime(threads=1).stylize` "
                     "in the bench process (results checked equal).\n", *real]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
