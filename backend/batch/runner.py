"""run_batch: stylize every image of a folder, overlapping file I/O with compute, losing nothing.

Used by the daemon's `batch` op and by `python -m backend batch --in-process`. Everything
around the images (checks, OUTPUT_DIR lock, scan, skip-existing, temp clean-up, report) is
run_planned, which other executors reuse (ray_runner.py); one image's steps are steps.py.

Pipeline: a small pool of reader threads decodes the next images while the calling thread runs
the network, and a writer thread encodes and atomically writes finished images (imageio's
write_image: temp file in the output folder + rename), so a kill at any moment leaves only complete
outputs. Style images are read once per batch; the Runtime caches their features, so the style
encoder runs once. A bad input (corrupt, truncated, empty, not an image, too many pixels,
unreadable, a symlink loop) is recorded in the report with its error code and the batch goes on.

Callbacks (all optional):
- progress(fraction, text): text is `progress_text(done, total, name)`, e.g. "12/200 sub/a.jpg",
  which the CLI parses for its count, rate and ETA.
- cancelled(): polled between images; once True the batch finishes the image in hand, writes
  it, marks the rest `cancelled` and returns the report (no exception): "stop after the current
  image".
- abort(): passed to the Runtime as its `cancelled`; True stops even the image in hand (that
  image is not written). For daemon shutdown or a vanished client.
- between_images(): called before each image is computed, on the calling thread. The daemon uses
  it to run waiting interactive jobs first (batch yields to GIMP filters between images).
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import re
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from stclient import registry
from stclient.errors import BAD_REQUEST, BUSY, WRITE_FAILED, Cancelled, StyleTransferError
from stclient.registry import resolve_options

from backend.atomicfile import check_writable
from backend.engines.job import CancelledFn, ProgressFn, never_cancelled, no_progress

from . import scan as scanning
from .spec import (CANCELLED, FAILED, REPORT_VERSION, SKIPPED, BatchReport, BatchSpec,
                   ItemResult, progress_text)
from .steps import FATAL_CODES, ImageSteps, JobTemplate, LoadedInput, PlannedItem, read_image

# write_image's temp files: mkstemp(prefix=".<name>.", suffix=".tmp") -> ".<name>.<8 chars>.tmp"
# (tests/unit/test_batch_runner.py checks this against a real write_image call).
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


@dataclass
class BatchPlan:
    """A checked, scanned and locked batch: what is left to do and what is already decided.

    Handed to an executor (the local pipeline, or the Ray runner), which fills `results` with
    one ItemResult per entry of `todo`.
    """

    spec: BatchSpec
    job: JobTemplate
    input_root: Path
    output_root: Path
    todo: list[PlannedItem]
    results: dict[str, ItemResult]
    targets: list[Path]               # every output this batch may write (temp-file clean-up)

    def steps(self, imageio: Any) -> ImageSteps:
        return ImageSteps(self.spec, imageio, self.job, self.output_root, self.input_root)

    def remove_stale_temp_files(self) -> int:
        """Delete write_image temp files next to this batch's outputs (left by a killed
        writer); only safe while no writer of this batch is running."""
        return _remove_stale_temp_files(self.targets)


Executor = Callable[[BatchPlan, ProgressFn], None]


def run_batch(spec: BatchSpec, runtime: Any, progress: ProgressFn = no_progress,
              cancelled: CancelledFn = never_cancelled, *,
              abort: CancelledFn = never_cancelled,
              between_images: Optional[Callable[[], None]] = None,
              readers: int = 2, prefetch: int = 2,
              confine: tuple[Path, ...] = (),
              read_style: Optional[Callable[[str], Any]] = None) -> BatchReport:
    """Run `spec` with `runtime` (a backend.runtime.Runtime); return the report.

    `confine` (the daemon, for a remote client): inputs reached through links that leave these
    folders are reported, not read. `read_style(path) -> pixels` replaces the plain read of the
    spec's style images (the daemon reads them with a timeout, off its worker thread).

    Raises StyleTransferError only for problems that concern the whole batch (bad spec, refused
    folders, unknown/missing model, unreadable style image, another batch writing to the same
    OUTPUT_DIR); per-file problems end up in the report.
    """
    from backend import imageio  # heavy (numpy, Pillow): imported when a batch runs

    def execute(plan: BatchPlan, progress: ProgressFn) -> None:
        if plan.todo and hasattr(runtime, "load_model"):
            # a missing or mismatched model fails the batch here, once, not every file
            progress(0.0, "loading model")
            runtime.load_model(spec.engine, spec.model, spec.checkpoints or None)
        _Pipeline(plan.steps(imageio), runtime, progress, cancelled, abort, between_images,
                  max(1, readers), max(1, prefetch)).run(plan.todo, plan.results)

    return run_planned(spec, execute, progress, confine=confine, read_style=read_style)


def run_planned(spec: BatchSpec, execute: Executor, progress: ProgressFn = no_progress, *,
                confine: tuple[Path, ...] = (),
                read_style: Optional[Callable[[str], Any]] = None) -> BatchReport:
    """Everything of a batch around the images: checks, OUTPUT_DIR lock, scan, skip-existing,
    temp clean-up, the report. `execute(plan, progress)` stylizes plan.todo into plan.results;
    any executor gets the same semantics and the same report (`confine`, `read_style`: see
    run_batch)."""
    from backend import imageio

    started = time.monotonic()
    spec.validate()
    options = resolve_options(spec.engine, spec.options)
    # every image gets the same styles and no mask
    registry.check_inputs(spec.engine, len(spec.styles), False, options)
    input_root, output_root = scanning.resolve_roots(spec)
    if spec.report:
        _check_report_target(output_root, spec.report)   # refused before any work, not after
    try:
        check_writable(output_root)     # a read-only destination fails now, not per image
    except OSError as error:
        raise StyleTransferError(WRITE_FAILED, f"Cannot write to OUTPUT_DIR {output_root}: "
                                               f"{error.strerror or error}.") from None
    report = BatchReport(spec=spec, started=_dt.datetime.now(_dt.timezone.utc)
                         .isoformat(timespec="seconds"))
    with _exclusive(output_root):
        progress(0.0, "scanning " + str(input_root))
        scanned = scanning.scan(spec, input_root, output_root, tuple(confine))
        report.ignored = scanned.ignored
        styles = [read_style(path) if read_style is not None
                  else _read_style(imageio, path, spec.max_pixels) for path in spec.styles]
        results: dict[str, ItemResult] = {p.input: p for p in scanned.problems}
        todo: list[PlannedItem] = []
        targets: list[Path] = []
        for item in scanned.items:
            rel = item.rel.as_posix()
            try:
                target = scanning.output_target(output_root, input_root, item)
            except StyleTransferError as error:
                results[rel] = ItemResult(rel, FAILED, item.output_rel.as_posix(), error.code,
                                          error.message)
                continue
            targets.append(target)
            if not spec.overwrite and os.path.lexists(target):
                results[rel] = ItemResult(rel, SKIPPED, item.output_rel.as_posix(),
                                          message="The output already exists.")
                continue
            todo.append(PlannedItem(item, target))
        _remove_stale_temp_files(targets)
        plan = BatchPlan(spec, JobTemplate(spec, options, styles), input_root, output_root,
                         todo, results, targets)
        execute(plan, progress)
        report.items = sorted(results.values(), key=lambda r: tuple(r.input.split("/")))
        report.cancelled = any(r.status == CANCELLED for r in report.items)
        report.elapsed_s = time.monotonic() - started
        if spec.report:
            _write_report(report, output_root, spec.report)
    finished = len(todo) - sum(1 for item in report.items if item.status == CANCELLED)
    progress(1.0, progress_text(finished, len(todo), "done"))
    return report


class _Pipeline:
    """Readers ahead of the compute thread, one writer behind it."""

    def __init__(self, steps: ImageSteps, runtime: Any, progress: ProgressFn,
                 cancelled: CancelledFn, abort: CancelledFn,
                 between_images: Optional[Callable[[], None]], readers: int,
                 prefetch: int) -> None:
        self.steps, self.runtime = steps, runtime
        self.progress, self.cancelled, self.abort = progress, cancelled, abort
        self.between_images = between_images
        self.readers, self.prefetch = readers, prefetch

    def run(self, todo: list[PlannedItem], results: dict[str, ItemResult]) -> None:
        total = len(todo)
        reads: collections.deque[tuple[PlannedItem, Future]] = collections.deque()
        writes: collections.deque[Future] = collections.deque()
        next_read = 0
        done = 0
        read_pool = ThreadPoolExecutor(self.readers, thread_name_prefix="batch-read")
        write_pool = ThreadPoolExecutor(1, thread_name_prefix="batch-write")
        try:
            for index, planned in enumerate(todo):
                rel = planned.rel
                if self.cancelled() or self.abort():
                    mark_cancelled(todo[index:], results)
                    break
                while next_read < total and next_read < index + self.prefetch:
                    ahead = todo[next_read]
                    reads.append((ahead, read_pool.submit(self.steps.read, ahead)))
                    next_read += 1
                _, future = reads.popleft()
                loaded: LoadedInput = future.result()
                if loaded.error is not None:
                    results[rel] = loaded.error
                    done += 1
                    self.progress(done / total, progress_text(done, total, rel))
                    continue
                if self.between_images is not None:
                    self.between_images()
                    if self.cancelled() or self.abort():
                        mark_cancelled(todo[index:], results)
                        break
                try:
                    result, pixels = self.steps.stylize(
                        self.runtime, planned, loaded,
                        progress=self._sub_progress(done, total, rel), cancelled=self.abort)
                except Cancelled:
                    mark_cancelled(todo[index:], results)
                    break
                results[rel] = result
                if pixels is not None:
                    while len(writes) >= 2:      # bound memory: at most two results waiting
                        writes.popleft().result()
                    writes.append(write_pool.submit(self.steps.write, result, planned, pixels,
                                                    loaded))
                done += 1
                self.progress(done / total, progress_text(done, total, rel))
            while writes:
                writes.popleft().result()
        finally:
            for _, future in reads:
                future.cancel()
            read_pool.shutdown(wait=True)
            for future in writes:  # only left when an exception is on its way out
                future.result()
            write_pool.shutdown(wait=True)

    def _sub_progress(self, done: int, total: int, rel: str) -> ProgressFn:
        def report(fraction: float, text: str) -> None:
            self.progress((done + min(max(fraction, 0.0), 1.0)) / total,
                          progress_text(done, total, rel))
        return report


def mark_cancelled(rest: list[PlannedItem], results: dict[str, ItemResult]) -> None:
    """Record `rest` as not done because the batch was cancelled first."""
    for planned in rest:
        results[planned.rel] = ItemResult(planned.rel, CANCELLED,
                                          planned.item.output_rel.as_posix(),
                                          message="Not done: the batch was cancelled first.")


def _read_style(imageio: Any, path: str, max_pixels: Optional[int]) -> Any:
    try:
        return read_image(imageio, Path(path), max_pixels).pixels
    except StyleTransferError as error:
        raise StyleTransferError(error.code, f"Style image {path}: {error.message}") from None
    except OSError as error:
        raise StyleTransferError(BAD_REQUEST, f"Cannot read the style image {path}: "
                                              f"{error.strerror or error}.") from None


@contextmanager
def _exclusive(output_root: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUTPUT_DIR so two batches never write the same folder.

    The lock is on the folder itself (flock on a directory descriptor, nothing left behind) and
    the kernel drops it when the process dies, so it also tells us that any temp file found in
    the folder belongs to a dead run.
    """
    try:
        import fcntl
    except ImportError:       # Windows: no advisory folder locks; run unguarded
        yield
        return
    fd = os.open(output_root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StyleTransferError(
                BUSY, f"Another batch is writing to {output_root}; wait for it to finish or "
                      "choose another output folder.") from None
        except OSError:
            pass              # a file system without flock: run unguarded
        yield
    finally:
        os.close(fd)


def temp_target_name(name: str) -> Optional[str]:
    """The output name a write_image temp file was for, or None if `name` is not one."""
    match = _TEMP_NAME.match(name)
    return match.group("target") if match else None


def _remove_stale_temp_files(planned: list[Path]) -> int:
    """Delete temp files a killed run left next to this batch's outputs.

    Safe because we hold OUTPUT_DIR's lock (no other batch writes there) and only temp files
    whose target is one of this batch's own outputs are touched.
    """
    by_folder: dict[Path, set[str]] = collections.defaultdict(set)
    for target in planned:
        by_folder[target.parent].add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            with os.scandir(folder) as entries:
                leftovers = [entry for entry in entries
                             if temp_target_name(entry.name) in names
                             and entry.is_file(follow_symlinks=False)]
        except OSError:
            continue                       # folder not made yet: nothing left there
        for entry in leftovers:
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def _check_report_target(output_root: Path, name: str) -> Path:
    """OUTPUT_DIR/NAME.json, where nothing but an earlier report may be in the way."""
    from .spec import check_report_name
    target = output_root / check_report_name(name)
    if os.path.lexists(target) and not is_earlier_report(target):
        raise StyleTransferError(BAD_REQUEST, f"Refusing to write the report {target}: a file "
                                              "that is not an earlier batch report is in the "
                                              "way; choose another report name.")
    return target


def _write_report(report: BatchReport, output_root: Path, name: str) -> None:
    """Write the spec's report into OUTPUT_DIR, replacing nothing but an earlier report."""
    write_report_file(report, _check_report_target(output_root, name))


REPORT_READ_LIMIT = 256 << 20      # an earlier report larger than this is not ours to replace


def is_earlier_report(path: Path) -> bool:
    """True when `path` is a regular file of ours (not a link) holding a batch report's JSON."""
    from stclient.paths import read_own_file
    data = read_own_file(path, REPORT_READ_LIMIT)
    try:
        report = json.loads(data.decode("utf-8")) if data is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return (isinstance(report, dict) and report.get("version") == REPORT_VERSION
            and isinstance(report.get("items"), list) and isinstance(report.get("spec"), dict)
            and isinstance(report.get("counts"), dict))


def report_text(report: BatchReport) -> str:
    """The report's JSON, with `$` and backquotes written as \\u escapes: the same JSON to any
    parser, but text a shell would never expand (file names and messages are free text)."""
    text = json.dumps(report.to_json(), indent=1)
    return text.replace("$", "\\u0024").replace("`", "\\u0060") + "\n"


def write_report_file(report: BatchReport, path: Path) -> None:
    """Write the JSON report atomically (a fresh temp file next to it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise StyleTransferError(WRITE_FAILED, f"Cannot write the report {path}: "
                                               f"{error.strerror or error}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(report_text(report))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as error:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise StyleTransferError(WRITE_FAILED, f"Cannot write the report {path}: "
                                               f"{error.strerror or error}.") from None


__all__ = ["BatchPlan", "FATAL_CODES", "mark_cancelled", "run_batch", "run_planned",
           "write_report_file"]
