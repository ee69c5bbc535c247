"""Batch throughput: `batch` over a folder versus stylizing the files one at a time.

    python bench/bench_batch.py [--count 200] [--sizes 512|mixed|mixed-small|N] [--blocks 6|9]
                                [--per-process N] [--markdown bench/results/batch.md]

Variants, all on the same folder, same network, same thread count, in one run:
  batch CLI        `python -m backend batch IN OUT --in-process` (one process: start-up and model
                   load once, reads/writes on threads overlapped with compute)
  batch API        run_batch() in this process with a warm Runtime
  batch daemon     the CLI's default path: client.batch() to a running daemon (models loaded)
  per-call API     read_image -> Runtime.stylize -> write_image per file, one after the other,
                   in this process with the same warm Runtime (no overlap of I/O and compute)
  per-process      `python -m backend stylize FILE -o OUT` once per file, as a shell loop does
                   (start-up + model load every time); run on the first --per-process files
Images/s = files / wall seconds of that variant. The network is a CycleGAN generator with random
weights in the released layout (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))



SIZE_SETS = {
    "mixed": [(512, 512), (384, 512), (512, 384), (640, 480), (256, 256)],
    "mixed-small": [(128, 128), (96, 128), (160, 120), (64, 64), (200, 150)],
}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    if text in SIZE_SETS:
        return SIZE_SETS[text]
    side = int(text)
    return [(side, side)]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_cli(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "backend", *args], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(args[:2])} ...` failed ({result.returncode}):\n"
                         f"{result.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--sizes", default="mixed",
                        help="512 (any side), mixed (256..640) or mixed-small (64..200)")
    parser.add_argument("--blocks", type=int, choices=(6, 9), default=9,
                        help="CycleGAN resnet_6blocks or resnet_9blocks")
    parser.add_argument("--per-process", type=int, default=None, metavar="N",
                        help="run the process-per-file variant on the first N files "
                             "(default: all)")
    parser.add_argument("--skip", default="", help="comma list of variants to leave out: "
                        "batch-cli,batch-api,daemon,per-call,per-process")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for every variant (default: all CPUs)")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()

    import torch

    from backend import imageio
    from backend.batch.runner import run_batch
    from backend.batch.spec import BatchSpec
    from backend.engines.job import StylizeJob
    from backend.runtime import Runtime
    from tests.helpers.batch_folders import make_plain_folder
    from tests.helpers.checkpoints import make_cyclegan_file

    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    sizes = parse_sizes(args.sizes)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        checkpoint = make_cyclegan_file(work / f"resnet_{args.blocks}blocks.pth",
                                        n_blocks=args.blocks)
        inp = work / "in"
        names = make_plain_folder(inp, args.count, sizes, seed=1)
        pixels = sum(h * w for h, w in (sizes[i % len(sizes)] for i in range(args.count)))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        engine_args = ["--engine", "cyclegan", "--checkpoint", str(checkpoint), "--device", "cpu"]
        if args.threads:
            engine_args += ["--threads", str(args.threads)]
        rows: list[tuple[str, int, float]] = []

        runtime = Runtime(device="cpu", threads=args.threads)
        threads = torch.get_num_threads()
        spec = BatchSpec(input_dir=str(inp), output_dir=str(work / "warmup"), engine="cyclegan",
                         checkpoints={"generator": str(checkpoint)}, files=names[:2])
        run_batch(spec, runtime)                      # warm the model cache and the allocator

        if "batch-cli" not in skip:
            seconds, _ = timed(lambda: run_cli(
                ["batch", str(inp), str(work / "out_cli"), *engine_args, "--in-process",
                 "--quiet"], env))
            rows.append(("batch CLI (one process, --in-process)", args.count, seconds))
            print(f"batch CLI: {seconds:.1f} s", flush=True)

        if "batch-api" not in skip:
            spec = BatchSpec(input_dir=str(inp), output_dir=str(work / "out_api"),
                             engine="cyclegan", checkpoints={"generator": str(checkpoint)})
            seconds, report = timed(lambda: run_batch(spec, runtime))
            assert report.count("ok") == args.count, report.to_json()["counts"]
            rows.append(("batch API (run_batch, warm Runtime)", args.count, seconds))
            print(f"batch API: {seconds:.1f} s", flush=True)

        if "daemon" not in skip:
            from tests.helpers.daemon import start_daemon
            spec = BatchSpec(input_dir=str(inp), output_dir=str(work / "out_daemon"),
                             engine="cyclegan", checkpoints={"generator": str(checkpoint)})
            serve_args = ["--threads", str(args.threads)] if args.threads else []
            with start_daemon(None, extra_args=serve_args) as daemon:
                with daemon.client() as client:     # warm its model cache like the others
                    client.batch({**spec.to_json(), "output_dir": str(work / "warm_daemon"),
                                  "files": names[:2]})
                    seconds, data = timed(lambda: client.batch(spec.to_json()))
            assert data["counts"]["ok"] == args.count, data["counts"]
            rows.append(("batch via the daemon (client.batch, warm daemon)", args.count, seconds))
            print(f"daemon: {seconds:.1f} s", flush=True)

        if "per-call" not in skip:
            out = work / "out_calls"
            out.mkdir()

            def per_call() -> None:
                for name in names:
                    loaded = imageio.read_image(inp / name)
                    result = runtime.stylize(StylizeJob(
                        engine="cyclegan", content=loaded.pixels,
                        checkpoints={"generator": str(checkpoint)}))
                    imageio.write_image(out / name, result, icc_profile=loaded.icc_profile,
                                        exif=loaded.exif)

            seconds, _ = timed(per_call)
            rows.append(("per-call API (sequential, warm Runtime)", args.count, seconds))
            print(f"per-call: {seconds:.1f} s", flush=True)

        if "per-process" not in skip:
            subset = names[: args.per_process or len(names)]
            out = work / "out_procs"
            out.mkdir()
            per_file: list[float] = []
            for name in subset:
                seconds, _ = timed(lambda name=name: run_cli(
                    ["stylize", str(inp / name), "-o", str(out / name), *engine_args,
                     "--quiet"], env))
                per_file.append(seconds)
            rows.append(("per-process `stylize FILE` (shell loop)", len(subset), sum(per_file)))
            print(f"per-process: {sum(per_file):.1f} s for {len(subset)} files (median "
                  f"{statistics.median(per_file):.2f} s per file)", flush=True)

        table = render(rows, args, sizes, pixels, threads)
        print()
        print(table)
        if args.markdown:
            with open(args.markdown, "a", encoding="utf-8") as handle:
                handle.write(table + "\n")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def render(rows: list[tuple[str, int, float]], args: argparse.Namespace,
           sizes: list[tuple[int, int]], pixels: int, threads: int) -> str:
    best_single = None
    for name, files, seconds in rows:
        if name.startswith("per-process"):
            best_single = files / seconds
    size_text = ", ".join(f"{w}x{h}" for h, w in sizes)
    lines = [
        f"### {args.count} images ({size_text}{' cycled' if len(sizes) > 1 else ''}; "
        f"{pixels / args.count / 1e6:.3f} MP average), CycleGAN resnet_{args.blocks}blocks",
        "",
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} CPUs, torch {__import__('torch').__version__}, {threads} threads, "
        "float32, random weights in the released layout.",
        "",
        "| variant | files | wall s | images/s | vs per-process |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, files, seconds in rows:
        rate = files / seconds
        ratio = f"{rate / best_single:.2f}x" if best_single else "-"
        lines.append(f"| {name} | {files} | {seconds:.1f} | {rate:.3f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
