"""The one thread that owns the device: builds the Runtime, then runs queued jobs one by one.

Replies go back to the server thread over an inproc PUSH socket (ZeroMQ sockets are not
thread-safe, so only the server thread touches the ROUTER). Progress is throttled; every
progress call also checks the job's cancel flag and raises, so an engine that reports progress
inside a long stage stops there, not only between stages.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any, Callable, Optional

import numpy as np
import zmq

from stclient import settings
from stclient.errors import BAD_IMAGE, OUT_OF_MEMORY, UNAVAILABLE, Cancelled, StyleTransferError
from stclient.protocol import Error, Intermediate, Progress, Result

from .config import DaemonConfig
from .images import array_to_frame
from .jobs import Job, JobQueue
from .logsetup import get_logger
from .stylefiles import StyleFileReader
from .validation import (BatchPayload, EstimatePayload, SamplePayload, StylizePayload,
                         check_stylize_sizes)

PROGRESS_MIN_INTERVAL = 0.05     # at most ~20 progress messages a second per job
ABORT_REASONS = ("shutdown", "deadline")   # stop a batch even inside the image in hand

RuntimeFactory = Callable[[DaemonConfig], Any]


def default_runtime_factory(config: DaemonConfig) -> Any:
    from backend.runtime import Runtime
    return Runtime(device=config.device,
                   models_dir=str(config.models_dir) if config.models_dir else None,
                   threads=config.threads, compile=config.compile)


class Worker(threading.Thread):
    def __init__(self, config: DaemonConfig, queue: JobQueue, context: zmq.Context,
                 outbox: str, finished: Callable[[Job], None],
                 runtime_factory: RuntimeFactory = default_runtime_factory) -> None:
        super().__init__(name="worker", daemon=True)
        self.config = config
        self.queue = queue
        self.context = context
        self.outbox = outbox
        self.finished = finished
        self.runtime_factory = runtime_factory
        self.runtime: Any = None
        self.ready = threading.Event()
        self.startup_error: Optional[BaseException] = None
        self.current: Optional[Job] = None
        self.jobs_done = 0
        self._halt = threading.Event()
        self._push: Optional[zmq.Socket] = None
        self.style_files = StyleFileReader(config.max_style_bytes, config.style_read_timeout)
        self.log = get_logger()

    # ------------------------------------------------------------------------------ thread

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        self._push = self.context.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 1000)
        self._push.connect(self.outbox)
        try:
            started = time.monotonic()
            self.runtime = self.runtime_factory(self.config)
            self.log.info("runtime ready on %s in %.1f s", _device_name(self.runtime),
                          time.monotonic() - started)
        except BaseException as error:   # reported by the server, which then exits
            self.startup_error = error
            self.log.error("cannot create the runtime: %s", error)
            self.ready.set()
            self._push.close()
            return
        self.ready.set()
        try:
            while not self._halt.is_set():
                job = self.queue.get(0.2)
                if job is not None:
                    self.run_job(job)
        finally:
            self._push.close()

    # -------------------------------------------------------------------------------- jobs

    def run_job(self, job: Job) -> None:
        self.current = job
        job.started = time.monotonic()
        job.text = "starting"
        self.log.info("job %s (%s) started after %.2f s in the queue", job.id, job.op,
                      job.started - job.received)
        reply: Any
        try:
            if job.should_stop():
                raise job.stop_error()
            if job.op == "stylize":
                reply = self._stylize(job)
            elif job.op == "batch":
                reply = self._batch(job)
            elif job.op == "sample":
                reply = self._sample(job)
            elif job.op == "estimate":
                reply = self._estimate(job)
            else:
                raise StyleTransferError(UNAVAILABLE, f"The worker cannot run {job.op!r}.")
            self.log.info("job %s done in %.2f s", job.id, time.monotonic() - job.started)
        except BaseException as error:   # never let one job take the worker down
            if job.reason is not None and (isinstance(error, Cancelled) or job.should_stop()):
                error = job.stop_error()
            elif is_out_of_memory(error):
                error = out_of_memory_error(job, error)
            if not isinstance(error, StyleTransferError):
                self.log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            else:
                self.log.info("job %s ended: %s (%s)", job.id, error.code, error.message)
            reply = Error.from_exception(job.id, error)
        job.close_intermediates()
        # Free the worker before answering, so a client that reacts to the reply (status, the
        # next job) already sees it idle.
        self.current = None
        self.jobs_done += 1
        self.finished(job)
        if job.claim_answer():           # else the server already answered it (deadline)
            self.send(job, reply)

    def send(self, job: Job, reply: Any) -> None:
        assert self._push is not None
        self._push.send_multipart([job.identity, *reply.to_frames()], copy=False)

    def _callbacks(self, job: Job) -> tuple[Callable[[float, str], None], Callable[[], bool]]:
        last = [0.0, ""]

        def progress(fraction: float, text: str) -> None:
            try:
                fraction = float(fraction)
            except (TypeError, ValueError):
                fraction = 0.0
            job.fraction, job.text = fraction, str(text)
            if job.should_stop():
                raise job.stop_error()
            now = time.monotonic()
            if job.answered:
                return
            if now - last[0] >= PROGRESS_MIN_INTERVAL or text != last[1] or fraction >= 1.0:
                last[0], last[1] = now, str(text)
                self.send(job, Progress(id=job.id, fraction=fraction, text=str(text)))

        return progress, job.should_stop

    def _stylize(self, job: Job) -> Result:
        from backend.engines.job import CheckedJob
        payload: StylizePayload = job.payload
        progress, cancelled = self._callbacks(job)
        styles = list(payload.styles)
        for path in payload.style_paths:
            styles.append(self._read_style(path, job))
        if payload.style_paths:      # now their sizes are known: the limits again
            check_stylize_sizes(payload.engine, payload.options, payload.content.shape[:2],
                                [style.shape[:2] for style in styles], self.config)
        # validate_stylize checked the request (options resolved, frames, mask, input rules,
        # sizes) and the style files were decoded and sized above: the job is checked
        request = CheckedJob(engine=payload.engine, content=payload.content, model=payload.model,
                             styles=styles, mask=payload.mask, options=dict(payload.options))
        started = time.monotonic()
        extra: dict[str, Any] = {}     # only when asked (a runtime_factory's may not take it)
        if getattr(job.request, "intermediates", False):
            def intermediate(pixels: np.ndarray, text: str) -> None:
                reply = Intermediate(id=job.id, fraction=job.fraction, text=text,
                                     image=array_to_frame(np.asarray(pixels)))
                if job.offer_intermediate(reply) and not job.answered:
                    self.send(job, reply)

            extra["intermediate"] = intermediate
        output = self.runtime.stylize(request, progress=progress, cancelled=cancelled, **extra)
        seconds = time.monotonic() - started
        frame = array_to_frame(np.asarray(output))
        data = {"engine": payload.engine, "model": payload.model, "options": payload.options,
                "compute_s": round(seconds, 4), "precision": settings.current().precision}
        return Result(id=job.id, op="stylize", data=data, images=[frame])

    def _estimate(self, job: Job) -> Result:
        payload: EstimatePayload = job.payload
        progress, cancelled = self._callbacks(job)
        estimate = self.runtime.estimate(payload.engine, payload.shape, payload.styles,
                                         payload.mask, options=dict(payload.options),
                                         model=payload.model, progress=progress,
                                         cancelled=cancelled)
        return Result(id=job.id, op="estimate", data={"engine": payload.engine,
                                                      "model": payload.model,
                                                      **estimate.to_json()})

    def _read_style(self, path: str, job: Job) -> np.ndarray:
        """A style file's pixels: its bytes come from the reader (helper thread, size cap,
        timeout), the decoding happens here."""
        from backend import imageio
        data = self.style_files.read(path, job.should_stop,
                                     lambda: job.deadline - time.monotonic())
        if job.should_stop():
            raise job.stop_error()
        try:
            loaded = imageio.decode_image_bytes(data, max_pixels=self.config.max_pixels,
                                                name=os.path.basename(path))
        except StyleTransferError:
            raise
        except MemoryError:
            raise
        except Exception as error:
            raise StyleTransferError(BAD_IMAGE, f"Cannot read the style image {path}: "
                                                f"{error}.") from None
        return loaded.pixels

    def _batch(self, job: Job) -> Result:
        from backend.batch.runner import run_batch
        progress, cancelled = self._callbacks(job)

        def abort() -> bool:
            return job.should_stop() and (job.reason in ABORT_REASONS or job.urgent)

        def between_images() -> None:
            """Let waiting interactive jobs (a GIMP filter) run before the next image."""
            while not job.should_stop():
                waiting = self.queue.get_interactive()
                if waiting is None:
                    return
                self.run_job(waiting)
                self.current = job

        def batch_progress(fraction: float, text: str) -> None:
            try:
                progress(fraction, text)
            except Cancelled:
                pass           # a batch stops at its own pace: cancelled() is polled per image

        payload: BatchPayload = job.payload
        report = run_batch(payload.spec, self.runtime, batch_progress, cancelled,
                           abort=abort, between_images=between_images,
                           confine=payload.confine,
                           read_style=lambda path: self._read_style(path, job))
        return Result(id=job.id, op="batch", data=report.to_json())

    def _sample(self, job: Job) -> Result:
        payload: SamplePayload = job.payload
        progress, cancelled = self._callbacks(job)
        started = time.monotonic()
        images = self.runtime.sample(payload.model, count=payload.count, seed=payload.seed,
                                     options=dict(payload.options), progress=progress,
                                     cancelled=cancelled, engine=payload.engine)
        arrays = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 \
            else [images]
        frames = [array_to_frame(np.asarray(a)) for a in arrays]
        data = {"model": payload.model, "count": len(frames), "seed": payload.seed,
                "compute_s": round(time.monotonic() - started, 4)}
        return Result(id=job.id, op="sample", data=data, images=frames)


def is_out_of_memory(error: BaseException) -> bool:
    """MemoryError, or an allocator's out-of-memory error (torch's CPU/CUDA allocators)."""
    from backend.perf.budget import is_out_of_memory as allocator_oom
    return not isinstance(error, StyleTransferError) and allocator_oom(error)


def out_of_memory_error(job: Job, error: BaseException) -> StyleTransferError:
    get_logger().warning("job %s ran out of memory: %s: %s", job.id, type(error).__name__,
                         str(error)[:300])
    return StyleTransferError(OUT_OF_MEMORY, f"The {job.op} job ran out of memory and was "
                                             "stopped; the daemon serves on. Use a smaller "
                                             "image or working_size, or fewer images.")


def _device_name(runtime: Any) -> str:
    return str(getattr(runtime, "device", "?"))
