"""Where the time of a GIMP filter goes: GIMP pixel I/O, transfer, compute (1024² and 4096² layers).

Runs the real GIMP 3.0 headless (the trixie chroot of tests/gimp; needs root) with the plug-in
installed by install.py and the daemon on the host (CPU), calls the filter from Python-Fu as a
script would, and reads the plug-in's own timing line (STYLE_TRANSFER_TIMING=1):
  read      GIMP -> plug-in: Gegl buffer get of the layer (+ selection when used)
  transfer  request wall time minus the daemon's compute: (de)serialising, ZeroMQ both ways,
            daemon-side validation/conversion and queueing
  compute   the daemon's Runtime.stylize (network incl. resizing to/from the working size)
  write     new layer, Gegl buffer set + flush, insertion (+ selection mask) in one undo group
  call      the whole PDB call seen from the script: also the plug-in process start-up
Weights are random (the test checkpoints): timings do not depend on weight values.

    sudo .venv/bin/python bench/bench_gimp.py [--sizes 1024,4096] [--repeat 2]
                                              [--engine pix2pix] [--big-working-size 512]
"""

from __future__ import annotations

import argparse
import json
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

from tests.gimp.harness import GimpSession, ImageSpec  # noqa: E402
from tests.helpers.checkpoints import make_models_dir  # noqa: E402
from tests.helpers.daemon import start_daemon  # noqa: E402

MODELS = {"pix2pix": "pix2pix_facades_label2photo", "cyclegan": "style_monet"}
RESULTS = ROOT / "bench" / "results" / "gimp-filter.md"
PREFIX = "STYLE_TRANSFER_TIMING "


def picture(size: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (17 + 5 * c) + y / (29 + 3 * c)) for c in range(channels)]
    image = np.stack(planes, axis=2) + rng.normal(0, 0.05, (size, size, channels))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--engine", default="pix2pix", choices=sorted(MODELS))
    parser.add_argument("--big-working-size", type=int, default=512,
                        help="working size for layers above 1024 px (0 = full size; CPU "
                             "compute at 4096² full size takes many minutes and > 20 GB)")
    parser.add_argument("--channels", type=int, default=4, choices=(3, 4))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = MODELS[args.engine]
    procedure = f"python-fu-style-transfer-{args.engine}"

    with GimpSession() as session, tempfile.TemporaryDirectory() as models:
        daemon = start_daemon(make_models_dir(models), runtime_dir=session.shared / "run")
        try:
            cases, plan = [], []
            warm = picture(64, args.channels, 0)
            cases.append(session.case("warm-up", procedure, ImageSpec(64, 64).add("l", warm),
                                      args={"model": model, "endpoint": daemon.endpoint},
                                      dump=False))
            for size in sizes:
                working = args.big_working_size if size > 1024 else 0
                layer = picture(size, args.channels, size)
                for repeat in range(args.repeat):
                    name = f"{size}-{repeat}"
                    cases.append(session.case(
                        name, procedure, ImageSpec(size, size).add("layer", layer),
                        args={"model": model, "endpoint": daemon.endpoint,
                              "working-size": working}, dump=False))
                    plan.append((name, size, working))
            started = time.monotonic()
            results = session.run(cases, env={"STYLE_TRANSFER_TIMING": "1"}, timeout=3000,
                                  tag="bench")
            wall = time.monotonic() - started
        finally:
            daemon.stop()
    timings = [json.loads(line[len(PREFIX):]) for line in session.last_run.stderr.splitlines()
               if line.startswith(PREFIX)]
    failed = [name for name, result in results.items() if result.status != "success"]
    if failed or len(timings) != len(cases):
        print(session.last_run.describe()[-4000:], file=sys.stderr)
        print(f"failed cases: {failed}", file=sys.stderr)
        return 1
    rows = []
    for (name, size, working), timing in zip(plan, timings[1:]):
        rows.append((size, working, timing, results[name].raw["call_s"]))
    table = render(rows, args, model, wall)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(f"written to {args.output}")
    return 0


def render(rows, args, model: str, wall: float) -> str:
    by_size: dict[tuple[int, int], list] = {}
    for size, working, timing, call in rows:
        by_size.setdefault((size, working), []).append((timing, call))
    lines = [
        "# GIMP filter: where the time goes",
        "",
        f"`sudo .venv/bin/python bench/bench_gimp.py --sizes {args.sizes} --repeat {args.repeat}"
        f" --engine {args.engine} --big-working-size {args.big_working_size} --channels "
        f"{args.channels}`",
        "",
        f"Load average when it finished: {os.getloadavg()[0]:.1f} (shared machine; compute is "
        "the column that suffers most from other load).",
        "",
        f"Real GIMP 3.0.4 (Debian trixie chroot), plug-in -> daemon on the same machine over "
        f"ipc://, CPU, {platform.processor() or platform.machine()}, "
        f"{_cpu_count()} cores. Engine {args.engine} ({model}, random weights), "
        f"{'RGBA' if args.channels == 4 else 'RGB'} 8-bit layer. Median of {args.repeat} runs "
        "after a warm-up call (models loaded).",
        "",
        "| layer | network at | read (GIMP→plug-in) | transfer | compute | write (new layer) "
        "| plug-in total | PDB call | I/O+transfer share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (size, working), runs in by_size.items():
        med = {key: statistics.median(t[key] for t, _ in runs)
               for key in ("read_s", "transfer_s", "compute_s", "write_s", "total_s")}
        call = statistics.median(c for _, c in runs)
        overhead = med["read_s"] + med["transfer_s"] + med["write_s"]
        lines.append(
            f"| {size}² | {working or size}² | {med['read_s']:.3f} s | "
            f"{med['transfer_s']:.3f} s | {med['compute_s']:.2f} s | {med['write_s']:.3f} s | "
            f"{med['total_s']:.2f} s | {call:.2f} s | {overhead / med['total_s']:.0%} |")
    lines += _observations(by_size)
    lines += [
        "",
        "- read/write: Gegl buffer get/set in the layer's own format; write includes creating "
        "and inserting the layer inside one undo group.",
        "- transfer: request wall time minus the daemon's compute (serialising, ZeroMQ both "
        "ways, validation and array conversion in the daemon).",
        "- PDB call: as a script sees it, including the plug-in process start (GIMP starts a "
        "new Python process per call).",
        f"- Layers above 1024 px ran with working-size {args.big_working_size} (the network at "
        f"{args.big_working_size} px, result scaled back to full size): full-size CPU compute "
        "of a 4096² layer takes many minutes, while the I/O and transfer columns are for the "
        "full-size layer either way.",
        f"- Whole GIMP run (start-up, image creation, all calls): {wall:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def _observations(by_size: dict) -> list[str]:
    """Sentences derived from the numbers (only when the runs to compare exist)."""
    medians = {key: statistics.median(t["compute_s"] for t, _ in runs)
               for key, runs in by_size.items()}
    full = [(size, value) for (size, working), value in medians.items() if working == 0]
    scaled = [(size, working, value) for (size, working), value in medians.items() if working]
    lines = []
    for size, working, value in scaled:
        for full_size, full_value in full:
            if full_size >= working and value > full_value * (working / full_size) ** 2 * 2:
                lines += ["", f"Compute for {size}² with the network at {working}² ({value:.1f} s)"
                          f" is far above what the network alone needs at that size (the "
                          f"{full_size}² run took {full_value:.1f} s for "
                          f"{(full_size / working) ** 2:.0f}x the pixels): the daemon's "
                          f"resampling of the full {size}² layer to {working}² and back and its "
                          "float conversion are counted as compute. GIMP's own pixel I/O and the "
                          "transfer stay well under a second even at 4096²."]
    return lines


def _cpu_count() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
