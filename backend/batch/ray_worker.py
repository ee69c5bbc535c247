"""The Ray actor of a distributed batch: one process that loads the model once and stylizes one
image per call with the local batch's own per-image code (steps.ImageSteps).

It is a plain class; ray_runner.py turns it into an actor with ray.remote(...) so this module
imports without Ray. Calls:
    ready() -> Ready              load the model (a FATAL error comes back, it is not raised)
    process(planned, retry) -> Reply
    stats() -> dict               the Runtime's counters (style_encodes: once per worker)
A Runtime keeps the style features it encoded, so the style encoder runs once per worker.
Several calls may run at once (max_concurrency): reading and writing overlap the network,
which the Runtime runs one image at a time.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from stclient.errors import BAD_REQUEST, StyleTransferError

from .spec import OK, BatchSpec, ItemResult
from .steps import FATAL_CODES, ImageSteps, JobTemplate, PlannedItem


def source_digest(root: Optional[Path] = None) -> str:
    """A digest of the backend's Python sources: a worker with other code than the driver's
    (an old checkout on one node) is refused instead of writing different pixels."""
    root = root or Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class WorkerSetup:
    """What every worker of one batch gets once, at its start."""

    spec: BatchSpec
    options: dict[str, Any]           # resolved engine options
    styles: list[Any]                 # style pixels, read once by the driver
    input_root: str                   # resolved; the same path on every node (shared storage)
    output_root: str
    models_dir: str                   # resolved on the driver
    device: str                       # "cuda" for a GPU worker, else the spec's device
    threads: Optional[int] = None     # torch CPU threads (CPU workers: their reserved CPUs)
    compile: Optional[bool] = None
    code: str = ""                    # the driver's source_digest()


@dataclass
class Ready:
    """A worker's answer to ready(): where it runs, or the batch-wide error it hit."""

    host: str = ""
    node: str = ""
    pid: int = 0
    device: str = ""
    error: Optional[tuple[str, str]] = None     # (code, message): stops the whole batch


@dataclass
class Reply:
    """A worker's answer to process(): the image's result, or a batch-wide error."""

    result: Optional[ItemResult] = None
    error: Optional[tuple[str, str]] = None
    pid: int = 0


class BatchWorker:
    """One long-lived worker process (a Ray actor) of a distributed batch."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.runtime: Any = None
        self.steps: Optional[ImageSteps] = None
        self._lock = threading.Lock()         # calls run on several threads (max_concurrency)

    def ready(self) -> Ready:
        """Load the model now, so a missing one stops the batch before any image."""
        where = Ready(host=socket.gethostname(), node=_node_id(), pid=os.getpid())
        try:
            self._start()
        except StyleTransferError as error:
            where.error = (error.code, error.message)
            return where
        where.device = str(self.runtime.device)
        return where

    def process(self, planned: PlannedItem, retry: bool = False) -> Reply:
        """Stylize one image into OUTPUT_DIR. On a retry, an output that exists now was
        written by the attempt that died (writes are atomic: it is complete)."""
        self._start()
        assert self.steps is not None
        if retry and not self.setup.spec.overwrite and os.path.lexists(planned.target):
            return Reply(ItemResult(planned.rel, OK, planned.item.output_rel.as_posix()),
                         pid=os.getpid())
        try:
            result = self.steps.process(self.runtime, planned)
        except StyleTransferError as error:
            if error.code not in FATAL_CODES:
                raise
            return Reply(error=(error.code, error.message), pid=os.getpid())
        return Reply(result, pid=os.getpid())

    def stats(self) -> dict[str, int]:
        """The Runtime's counters, plus this process's CPU time so far (cpu_ms)."""
        import resource
        usage = resource.getrusage(resource.RUSAGE_SELF)
        counters = dict(self.runtime.stats) if self.runtime is not None else {}
        counters["cpu_ms"] = int(round((usage.ru_utime + usage.ru_stime) * 1000))
        return counters

    def _start(self) -> None:
        with self._lock:
            if self.steps is None:
                self._load()

    def _load(self) -> None:
        setup = self.setup
        if setup.code and setup.code != source_digest():
            raise StyleTransferError(
                BAD_REQUEST, f"The project on {socket.gethostname()} is not the driver's "
                "version (its backend sources differ); install the same commit on every node.")
        from backend import imageio
        from backend.runtime import Runtime
        runtime = Runtime(device=setup.device, models_dir=setup.models_dir,
                          threads=setup.threads, compile=setup.compile)
        spec = setup.spec
        runtime.load_model(spec.engine, spec.model, spec.checkpoints or None)
        self.runtime = runtime
        self.steps = ImageSteps(spec, imageio, JobTemplate(spec, setup.options, setup.styles),
                                Path(setup.output_root), Path(setup.input_root))


def _node_id() -> str:
    try:
        import ray
        return ray.get_runtime_context().get_node_id()
    except Exception:              # not in a Ray worker (unit tests of this class)
        return ""


__all__ = ["BatchWorker", "Ready", "Reply", "WorkerSetup", "source_digest"]
