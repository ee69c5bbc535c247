"""Ray overhead: the local batch versus `batch --ray` with 1 and 2 workers, on the same folder.

    python bench/bench_ray.py [--sets 96x60,256x16] [--blocks 6|9] [--markdown FILE]

Every variant runs in a fresh Python process (as a user's command would) and stylizes the same
folder into its own OUTPUT_DIR; the outputs are checked byte for byte against the first local
run's, so a fast wrong answer cannot win. Per variant:
  wall s       from before the Runtime / the Ray start to the report (no imports)
  start s      from there to the first finished image: model load(s), Ray start-up, warm-up
  steady img/s images 2..n over the time between the first and the last finished image
  CPU s        CPU time of every process involved, start-up included (Ray: the driver, the
               workers and Ray's own processes), which other load on the machine disturbs far
               less than wall time; "per image, warm": the CPU time spent after every worker
               finished its first image, per later image (the per-image cost of Ray shows here)
Variants: local batch (run_batch, the code of `batch --in-process`) with 1 and 2 torch threads;
Ray (RayBatch, the code of `batch --ray`, a private local Ray) with 1 worker x 1 thread,
1 worker x 2 threads and 2 workers x 1 thread. Each variant runs --repeats times, interleaved with
the others, and the table keeps its best run (the one least disturbed by other load on a
shared machine). The overhead ratio compares one Ray worker with the local batch on the same
threads: Ray steady img/s / local steady img/s (1.0 = no overhead).
The network is a CycleGAN generator with random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Variant:
    name: str
    kind: str                # local | ray
    workers: int
    threads: int


VARIANTS = [
    Variant("local batch, 1 thread", "local", 1, 1),
    Variant("--ray, 1 worker x 1 thread", "ray", 1, 1),
    Variant("local batch, 2 threads", "local", 1, 2),
    Variant("--ray, 1 worker x 2 threads", "ray", 1, 2),
    Variant("--ray, 2 workers x 1 thread", "ray", 2, 1),
]


@dataclass
class Measured:
    images: int
    wall_s: float
    start_s: float
    steady: float            # images/s after the first image
    cpu_s: float             # CPU seconds of every process of the variant, start-up included
    cpu_per_image: float     # CPU seconds per image once every worker is warm


def child(args: argparse.Namespace) -> int:
    """One variant in this process; prints a Measured as JSON."""
    from backend.batch.spec import BatchSpec, parse_progress_text

    spec = BatchSpec(input_dir=args.input, output_dir=args.output, engine="cyclegan",
                     checkpoints={"generator": args.checkpoint}, device="cpu")
    times: list[float] = []
    ray_temp = os.environ.get("RAY_TMPDIR", "")
    # steady window: from the image by which every worker has finished its first (warm-up) one
    warm = args.workers if args.kind == "ray" else 1
    cpu_at_warm: list[float] = []

    def cpu_now(exclude: frozenset[int] = frozenset()) -> float:
        return own_cpu_s() + (ray_processes_cpu_s(ray_temp, exclude) if args.kind == "ray"
                              else 0.0)

    def progress(fraction: float, text: str) -> None:
        parsed = parse_progress_text(text)
        if parsed is not None and parsed[2] != "done" and parsed[0] > len(times):
            times.append(time.monotonic())
            if len(times) == warm:
                cpu_at_warm.append(cpu_now())

    if args.kind == "ray":
        import logging

        import ray

        from backend.batch.ray_runner import RayBatch, RayOptions
        start = time.monotonic()
        # connected here (as `--ray` would: a private local Ray) so that the Ray processes'
        # CPU time can be read before they end
        ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        batch = RayBatch(RayOptions(workers=args.workers, cpus_per_worker=args.threads))
        report = batch.run(spec, progress)
        end = time.monotonic()
        # the workers have ended (their own last count came back with their stats); the rest
        # of Ray (raylet, GCS, idle workers) is still up
        workers = frozenset(w.pid for w in batch.stats.workers)
        cpu = cpu_now(workers) + sum(w.stats.get("cpu_ms", 0)
                                     for w in batch.stats.workers) / 1000
        ray.shutdown()
    else:
        from backend.batch.runner import run_batch
        from backend.runtime import Runtime
        start = time.monotonic()
        report = run_batch(spec, Runtime(device="cpu", threads=args.threads), progress)
        end = time.monotonic()
        cpu = cpu_now()
    if report.count("ok") != len(times) or report.exit_status() != 0:
        raise SystemExit(f"variant failed: {report.to_json()['counts']}")
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    after_warm = len(times) - warm
    cpu_per_image = (cpu - cpu_at_warm[0]) / after_warm if after_warm > 0 else 0.0
    print(json.dumps(asdict(Measured(len(times), end - start, times[0] - start, steady, cpu,
                                     cpu_per_image))))
    return 0


def own_cpu_s() -> float:
    """CPU seconds of this whole process (imports included: a Ray worker's count them too)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ray_processes_cpu_s(ray_temp: str, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of the live processes of the Ray started with RAY_TMPDIR=ray_temp."""
    marker = f"RAY_TMPDIR={ray_temp}".encode()
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude | {os.getpid()}:
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks      # utime, stime
    return total


def run_variant(variant: Variant, inp: Path, out: Path, checkpoint: Path,
                ray_temp: Path) -> Measured:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS=str(variant.threads),
               RAY_TMPDIR=str(ray_temp))
    command = [sys.executable, __file__, "--child", "--kind", variant.kind, "--workers",
               str(variant.workers), "--threads", str(variant.threads), "--input", str(inp),
               "--output", str(out), "--checkpoint", str(checkpoint)]
    result = subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{variant.name} failed:\n{result.stderr[-3000:]}")
    return Measured(**json.loads(result.stdout.strip().splitlines()[-1]))


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    other = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    return names == other and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def render(title: str, rows: list[tuple[Variant, Measured]]) -> str:
    by_threads = {v.threads: m for v, m in rows if v.kind == "local"}
    lines = [f"### {title}", "",
             "| variant | images | wall s | images/s (wall) | start s | steady img/s | "
             "steady vs local, same CPUs | CPU s in all | CPU s per image, warm | "
             "per image vs local 1 thread |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    single = by_threads.get(1)
    for variant, m in rows:
        local = by_threads.get(variant.threads * variant.workers)
        ratio = f"{m.steady / local.steady:.3f}" if local and local.steady else "-"
        cpu_ratio = (f"{m.cpu_per_image / single.cpu_per_image:.3f}"
                     if single and single.cpu_per_image else "-")
        lines.append(f"| {variant.name} | {m.images} | {m.wall_s:.1f} | "
                     f"{m.images / m.wall_s:.2f} | {m.start_s:.1f} | {m.steady:.2f} | {ratio} | "
                     f"{m.cpu_s:.1f} | {m.cpu_per_image:.3f} | {cpu_ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="96x60,256x16",
                        help="comma list of SIDExCOUNT folders (default 96x60,256x16)")
    parser.add_argument("--blocks", type=int, choices=(6, 9), default=6)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per variant, interleaved; the table keeps each variant's "
                             "best (least disturbed by other load) run (default 2)")
    parser.add_argument("--markdown", type=Path, help="append the tables to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from tests.helpers.batch_folders import make_plain_folder
    from tests.helpers.checkpoints import make_cyclegan_file

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    ray_temp = Path(tempfile.mkdtemp(prefix="st-bray-", dir="/tmp"))   # short socket paths
    tables = []
    try:
        checkpoint = make_cyclegan_file(work / f"resnet_{args.blocks}blocks.pth",
                                        n_blocks=args.blocks)
        for item in args.sets.split(","):
            side, count = (int(x) for x in item.split("x"))
            inp = work / f"in_{side}"
            make_plain_folder(inp, count, side, seed=3)
            best: dict[int, Measured] = {}
            reference = None
            for repeat in range(args.repeats):          # interleaved: A B C .. A B C ..
                for index, variant in enumerate(VARIANTS):
                    out = work / f"out_{side}_{index}_{repeat}"
                    measured = run_variant(variant, inp, out, checkpoint, ray_temp)
                    if reference is None:
                        reference = out
                    elif not same_files(out, reference):
                        raise SystemExit(f"{variant.name}: outputs differ from the local "
                                         "batch's")
                    if index not in best or measured.steady > best[index].steady:
                        best[index] = measured
                    print(f"{side}² x{count} #{repeat + 1}: {variant.name}: {measured}",
                          flush=True)
            rows = [(variant, best[index]) for index, variant in enumerate(VARIANTS)]
            tables.append(render(f"{count} images of {side}x{side}, CycleGAN resnet_"
                                 f"{args.blocks}blocks (outputs byte-identical in every row)",
                                 rows))
        header = (f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
                  f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                  f"load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; "
                  f"`python bench/bench_ray.py --sets {args.sets} --blocks {args.blocks} "
                  f"--repeats {args.repeats}` (best of {args.repeats} per row)")
        text = header + "\n\n" + "\n\n".join(tables) + "\n"
        print()
        print(text)
        if args.markdown:
            with open(args.markdown, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
