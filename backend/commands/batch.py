"""`python -m backend batch INPUT_DIR OUTPUT_DIR --engine ENGINE ...`: stylize a whole folder.

By default the daemon does the work (models stay loaded between batches, GIMP filters can run in
between, the daemon is started when none answers); `--in-process` runs the same runner here,
`--endpoint URL` picks the daemon, `--ray [ADDRESS]` runs it on Ray workers (backend/batch/
ray_runner.py). Exit status: 0 when every image was written (or already there), 1 when some
failed or were left undone (the rest are still written), 2 on a usage error, 130 when stopped
with Ctrl-C (after the image in hand).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from stclient.errors import BAD_REQUEST, StyleTransferError

from backend.batch.spec import FAILED, OK, SKIPPED, OUTPUT_FORMATS, BatchReport, BatchSpec
from backend.commands import _engine_args
from backend.commands._runtime_args import (add_compile_argument, add_precision_argument,
                                            apply_precision)

USAGE_ERROR = 2
INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch", help="stylize every image of a folder (resumable)",
        description="Stylize every image of INPUT_DIR into OUTPUT_DIR, keeping sub-folders, "
                    "alpha, ICC profiles and EXIF. Finished outputs are skipped on a rerun, so an "
                    "interrupted batch resumes where it stopped. Bad files are reported and do "
                    "not stop the batch.",
        epilog="Exit status: 0 all written, 1 some failed, 2 usage error, 130 Ctrl-C.")
    parser.add_argument("input_dir", metavar="INPUT_DIR")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR")
    _engine_args.add_engine_arguments(parser)
    parser.add_argument("--recursive", "-r", action="store_true",
                        help="also stylize images in sub-folders (the structure is kept)")
    parser.add_argument("--pattern", action="append", default=[], metavar="GLOB",
                        help="only files matching GLOB, case-insensitive, e.g. '*.jpg' "
                             "(repeatable; default: every image file: PNG, JPEG, WebP, TIFF, "
                             "BMP, GIF, ...; hidden files are skipped)")
    parser.add_argument("--format", choices=list(OUTPUT_FORMATS), default="same",
                        help="output format (default: same as each input)")
    parser.add_argument("--quality", type=int, default=95, metavar="1-100",
                        help="JPEG/WebP quality (default 95)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="redo images whose output already exists")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep outputs that already exist (the default; resumes a batch)")
    parser.add_argument("--report", metavar="FILE.json",
                        help="write a JSON report: every file with its status, error code and "
                             "message")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse inputs with more pixels than this (default: the backend's "
                             "limit)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--endpoint", metavar="URL",
                       help="the daemon to use (default: this user's local daemon)")
    where.add_argument("--in-process", action="store_true",
                       help="run here instead of in the daemon")
    where.add_argument("--ray", nargs="?", const="local", type=_ray_address, metavar="ADDRESS",
                       help="run on Ray workers: no ADDRESS starts a Ray on this machine, 'auto' "
                            "joins this machine's cluster (ray start), 'ray://HOST:10001' connects "
                            "as a Ray client; folders must be at the same path on every node "
                            "(needs: python3 install.py --with ray)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --ray: number of workers (default: one per GPU, else one per "
                             "--ray-cpus CPUs)")
    parser.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                        help="with --ray on CPUs: CPUs (and torch threads) per worker (default: "
                             "4, or all when fewer)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="with --in-process or --ray: where the networks run (default auto; "
                             "with --ray: GPUs when the cluster has them)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="with --in-process: CPU threads (default: all)")
    add_compile_argument(parser, "with --in-process or --ray (the daemon has serve --compile): ")
    add_precision_argument(parser, "with --in-process (the daemon has serve --precision): ")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar (the summary and failures are still printed)")
    parser.set_defaults(func=run)


def build_spec(args: argparse.Namespace) -> BatchSpec:
    """The spec the arguments ask for, with absolute paths (the daemon has its own cwd)."""
    spec = BatchSpec(
        input_dir=os.path.abspath(args.input_dir), output_dir=os.path.abspath(args.output_dir),
        engine=args.engine, model=args.model,
        options=_engine_args.options_from_args(args, args.engine),
        styles=[os.path.abspath(path) for path in (args.style or [])],
        checkpoints=_engine_args.checkpoints_from_args(args),
        recursive=args.recursive, patterns=list(args.pattern), format=args.format,
        quality=args.quality, overwrite=args.overwrite, max_pixels=args.max_pixels,
        device=args.device)
    spec.validate()
    return spec


def run(args: argparse.Namespace) -> int:
    apply_precision(args)
    from backend.batch.progressbar import ProgressBar

    try:
        spec = build_spec(args)
        from stclient import registry
        registry.check_inputs(spec.engine, len(spec.styles), False,
                              registry.resolve_options(spec.engine, spec.options))
        if args.threads is not None and args.threads < 1:
            raise StyleTransferError(BAD_REQUEST, "--threads must be at least 1.")
        on_ray = args.ray is not None
        if not args.in_process and not on_ray and (args.threads is not None
                                                   or args.device != "auto" or args.compile
                                                   or args.precision is not None):
            raise StyleTransferError(BAD_REQUEST, "--device, --threads, --compile and "
                                                  "--precision apply to --in-process; the daemon "
                                                  "has its own (serve --device, --compile, "
                                                  "--precision).")
        if on_ray and args.threads is not None:
            raise StyleTransferError(BAD_REQUEST, "With --ray, --ray-cpus sets the CPUs and "
                                                  "threads of each worker, not --threads.")
        if not on_ray and (args.ray_workers is not None or args.ray_cpus is not None):
            raise StyleTransferError(BAD_REQUEST, "--ray-workers and --ray-cpus apply to --ray.")
        ray_batch = _ray_batch(args) if on_ray else None
        from backend.batch.scan import resolve_roots
        resolve_roots(spec)       # refused folders fail here, before a daemon is started
        if not args.endpoint:     # a daemon elsewhere sees its own file system
            _check_output_dir(spec.output_dir)
            for style in spec.styles:
                if not os.path.isfile(style):
                    raise StyleTransferError(BAD_REQUEST, f"The style image {style} does not "
                                                          "exist or is not a file.")
        if args.in_process and not spec.checkpoints:
            from backend.modelstore.choice import model_for
            model_for(spec.engine, spec.model)     # before torch and the scan
    except StyleTransferError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return USAGE_ERROR
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    stop = _Stop(bar)
    try:
        with stop.installed():
            if ray_batch is not None:
                report = ray_batch.run(spec, progress=bar.update, cancelled=stop.soft.is_set,
                                       abort=stop.hard.is_set, notify=bar.message)
            elif args.in_process:
                report = _run_in_process(spec, bar, stop, args.threads, args.compile)
            else:
                report = _run_in_daemon(spec, args.endpoint, bar, stop)
    except StyleTransferError as error:
        bar.finish()
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return USAGE_ERROR if error.code == BAD_REQUEST else 1
    bar.finish()
    print_summary(report)
    if ray_batch is not None:
        print(ray_batch.stats.summary())
    if args.report:
        from backend.batch.runner import write_report_file
        write_report_file(report, args.report)
    if stop.requested:
        return INTERRUPTED
    return report.exit_status()


def _ray_address(text: str) -> str:
    """argparse type of --ray ADDRESS (lazy: the Ray runner imports the engines)."""
    from backend.batch.ray_runner import check_address
    try:
        return check_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _ray_batch(args: argparse.Namespace) -> Any:
    """The RayBatch for --ray; a missing Ray or bad numbers are usage errors (exit 2)."""
    from backend.batch.ray_runner import RayBatch, RayOptions, import_ray
    import_ray()
    options = RayOptions(address=args.ray, workers=args.ray_workers,
                         cpus_per_worker=args.ray_cpus, compile=args.compile)
    options.validate()
    return RayBatch(options)

def _check_output_dir(folder: str) -> None:
    """OUTPUT_DIR can be created and written, found before any model loads."""
    from pathlib import Path

    from backend.atomicfile import check_writable
    try:
        check_writable(Path(folder))
    except OSError as error:
        blocker = next((p for p in Path(folder).parents if p.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None and \
            not blocker.is_dir() else error.strerror or str(error)
        raise StyleTransferError(BAD_REQUEST, f"Cannot write to OUTPUT_DIR {folder}: {why}.") \
            from None


def _run_in_process(spec: BatchSpec, bar: Any, stop: "_Stop",
                    threads: Optional[int], compile: Optional[bool] = None) -> BatchReport:
    from backend.batch.runner import run_batch
    from backend.runtime import Runtime

    bar.update(0.0, "loading")
    runtime = Runtime(device=spec.device, threads=threads, compile=compile)
    return run_batch(spec, runtime, progress=bar.update, cancelled=stop.soft.is_set,
                     abort=stop.hard.is_set)


def _run_in_daemon(spec: BatchSpec, endpoint: Optional[str], bar: Any,
                   stop: "_Stop") -> BatchReport:
    """The daemon reads and writes the files; Ctrl-C sends `cancel` and the report still comes
    back once the daemon has finished the image in hand."""
    from stclient.client import Client

    with Client(endpoint=endpoint) as client:
        data = client.batch(spec.to_json(), on_progress=bar.update, cancel_event=stop.soft)
    return BatchReport.from_json(data)


class _Stop:
    """Ctrl-C once: finish the image in hand, then stop. Twice: stop now."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.soft = threading.Event()
        self.hard = threading.Event()

    @property
    def requested(self) -> bool:
        return self.soft.is_set()

    def handle(self, signum: int, frame: Any) -> None:
        if not self.soft.is_set():
            self.soft.set()
            self.bar.message("Stopping after the current image (Ctrl-C again to stop at once)...")
            return
        self.hard.set()
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def print_summary(report: BatchReport) -> None:
    """One summary line on stdout; each failure on stderr with its code and message."""
    from backend.batch.progressbar import format_duration
    from backend.batch.spec import CANCELLED

    parts = [f"{report.count(OK)} written"]
    if report.count(SKIPPED):
        parts.append(f"{report.count(SKIPPED)} skipped (output already there)")
    parts.append(f"{report.count(FAILED)} failed")
    if report.count(CANCELLED):
        parts.append(f"{report.count(CANCELLED)} not done (cancelled)")
    rate = report.images_per_s
    print(f"batch: {', '.join(parts)} in {format_duration(report.elapsed_s)}"
          f" ({rate:.2f} images/s)" + (f"; {report.ignored} other files ignored"
                                       if report.ignored else ""))
    for item in report.failures:
        print(f"  failed: {item.input}: [{item.code}] {item.message}", file=sys.stderr)
