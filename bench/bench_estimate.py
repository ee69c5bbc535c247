"""How close the optimisation engine's run-time estimate is to the run, through the real engine
path (Runtime.estimate, then Runtime.stylize, as the daemon and the CLI do), printed as a
Markdown table: per size the estimate said before the run (after the first run it includes the
correction finished runs make), the run's seconds and their ratio, with the load average.

Weights are random in the released VGG layout unless --models-dir holds the real `adain` model:
speed does not depend on the values. The profile cache goes to a fresh folder, so the first row
pays for the measurement (its seconds are in the header).

    python bench/bench_estimate.py                                  # 96,128,192 px, this CPU
    python bench/bench_estimate.py --sizes 128,256 --iterations 20 --out bench/results/x.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _report import finish, load  # noqa: E402
from bench_engines import machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="96,128,192", help="longest sides, comma separated")
    parser.add_argument("--iterations", type=int, default=12, help="at the final size")
    parser.add_argument("--coarse-iterations", type=int, default=12)
    parser.add_argument("--scales", type=int, default=2)
    parser.add_argument("--engine", default="optimize", help="an engine whose card estimates")
    parser.add_argument("--models-dir", help="with the adain model (default: random weights)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    os.environ["STYLE_TRANSFER_CACHE"] = str(scratch / "cache")     # a fresh profile
    os.environ.setdefault("STYLE_TRANSFER_NATIVE", "0")            # no kernel build there

    from backend.engines.job import StylizeJob
    from backend.runtime import Runtime
    from tests.unit.test_cin_engine import photo
    models = args.models_dir
    if models is None:
        from tests.helpers.checkpoints import make_models_dir
        models = make_models_dir(scratch / "models")
    runtime = Runtime(device="cpu", models_dir=models, threads=args.threads)
    runtime.load_model(args.engine)
    sizes = [int(part) for part in args.sizes.split(",") if part]
    lines = [f"# Run-time estimate vs run ({args.engine}), {datetime.date.today()}", "",
             f"- machine: {machine()}",
             f"- command: python bench/bench_estimate.py {' '.join(argv or sys.argv[1:])}",
             f"- load average at the start (1/5/15 min): {load()}"]
    rows = []
    for number, side in enumerate(sizes):
        options = {"size": side, "scales": args.scales, "iterations": args.iterations,
                   "coarse_iterations": args.coarse_iterations, "update_every": 0}
        started = time.perf_counter()
        estimate = runtime.estimate(args.engine, (side, side), 1, options=options)
        asked = time.perf_counter() - started
        if number == 0:
            lines.append(f"- the first estimate measured the speed profile: {asked:.1f} s")
        job = StylizeJob(engine=args.engine, content=photo(side, side, seed=side),
                         styles=[photo(side, side, seed=side + 1)], options=options)
        started = time.perf_counter()
        runtime.stylize(job)
        seconds = time.perf_counter() - started
        rows.append(f"| {side} | {estimate.summary} | {estimate.seconds:.2f} | {seconds:.2f} | "
                    f"{seconds / estimate.seconds:.2f} | {load()} |")
        print(rows[-1], flush=True)
    lines += ["", "| side | what | estimate s | run s | run / estimate | load 1/5/15 |",
              "|---|---|---|---|---|---|", *rows]
    print("\n".join(lines))
    return finish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
