"""The daemon's server thread: one ROUTER socket, dispatch, liveness of clients, shutdown.

Only this thread touches the ROUTER. It answers status/models/cancel/shutdown itself (so they
stay fast while a job runs), validates job requests and queues them for the worker, forwards the
worker's replies, and watches clients:

- ROUTER_MANDATORY makes a send to a client that disconnected fail with EHOSTUNREACH; the server
  sends each client with queued or running jobs a heartbeat every `heartbeat_interval`, so a
  vanished client (GIMP killed the plug-in) is noticed within that interval and its jobs dropped.
- Clients send heartbeats while they wait; one silent for `client_timeout` is treated as gone
  (a hung or partitioned client).
- Every job has a deadline; queued jobs past it are answered with a timeout error.

Every message is handled inside a try/except: a bad message produces an error reply (or is
dropped when it cannot even be answered), never a crash.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Any, Callable, Optional

import zmq

from backend import PROTOCOL_VERSION, __version__
from stclient import registry
from stclient.errors import (BAD_REQUEST, BUSY, OUT_OF_MEMORY, UNAUTHORIZED, UNAVAILABLE,
                             StyleTransferError)
from stclient.protocol import (BatchRequest, CancelRequest, Error, EstimateRequest, Heartbeat,
                               HeartbeatRequest, IntermediateRequest, ModelsRequest, Progress,
                               ProtocolError, Request, Result, SampleRequest, ShutdownRequest,
                               StatusRequest, StylizeRequest, decode_request, peek_id)
from stclient.status import DaemonStatus

from . import security, validation
from .config import MAX_FRAMES, DaemonConfig
from .filepolicy import FilePolicy
from .jobs import BATCH, INTERACTIVE, Job, JobQueue
from .logsetup import get_logger
from .worker import Worker, default_runtime_factory

OUTBOX = "inproc://style-transfer-worker-replies"
SHUTDOWN_GRACE = 30.0          # seconds the worker may take to stop its current job
DEADLINE_GRACE = 2.0           # a running job this far past its deadline is answered anyway
LISTEN_BACKLOG = 1024          # pending connects (libzmq's default 100 overflowed in a burst)


class DaemonServer:
    """Bind, serve until shutdown, clean up. `runtime_factory` builds the worker's Runtime."""

    def __init__(self, config: DaemonConfig, token: Optional[str] = None,
                 runtime_factory: Callable[[DaemonConfig], Any] = default_runtime_factory,
                 context: Optional[zmq.Context] = None) -> None:
        self.config = config
        self.curve = security.CurveKeys.load(config.curve_keys) if config.curve_keys else None
        security.check_bind_allowed(config.endpoint, self.curve)
        self.mode = security.auth_mode(config.endpoint, config.runtime_dir, self.curve)
        self.token = token if self.mode != security.PRIVATE else None
        self.files = FilePolicy.from_dirs(config.allow_dirs)
        if self.mode != security.PRIVATE and not token:
            raise StyleTransferError(UNAUTHORIZED, f"{config.endpoint} is not a socket in the "
                                                   "private runtime directory: it needs a token.")
        self.context = context or zmq.Context()
        self.log = get_logger()
        self.queue = JobQueue()
        self.jobs: dict[int, Job] = {}              # queued + running, by seq
        self.jobs_lock = threading.Lock()
        self.last_seen: dict[bytes, float] = {}     # identities with jobs -> last message time
        self.started = time.time()
        self.stopping = threading.Event()
        self.outbox = f"{OUTBOX}-{id(self)}"
        self._auth = None
        self.router: Optional[zmq.Socket] = None
        self.inbox: Optional[zmq.Socket] = None
        self.worker = Worker(config, self.queue, self.context, self.outbox, self._job_finished,
                             runtime_factory)
        self.bound_endpoint = config.endpoint
        self.on_ready: Optional[Callable[[], None]] = None   # called once the Runtime exists
        self._announced = False

    # ---------------------------------------------------------------------------- lifecycle

    def bind(self) -> str:
        """Bind the sockets and start the worker; returns the endpoint actually bound."""
        self.inbox = self.context.socket(zmq.PULL)
        self.inbox.bind(self.outbox)
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        router.setsockopt(zmq.SNDHWM, 10000)
        router.setsockopt(zmq.RCVHWM, 10000)
        router.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
        if self.mode != security.PRIVATE:
            self._auth = security.start_authenticator(self.context, self.curve, self.token)
        security.apply_server_auth(router, self.mode, self.curve)
        try:
            security.bind_private(router, self.config.endpoint)
        except (zmq.ZMQError, OSError) as error:
            router.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            raise StyleTransferError(UNAVAILABLE, f"Cannot listen on {self.config.endpoint}: "
                                                  f"{error}.") from None
        self.router = router
        self.bound_endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT) or self.config.endpoint
        self.worker.start()
        self.log.info("listening on %s (pid %d, protocol %d)", self.bound_endpoint, os.getpid(),
                      PROTOCOL_VERSION)
        return self.bound_endpoint

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Block until the Runtime exists; raise its construction error if it failed."""
        self.worker.ready.wait(timeout)
        if self.worker.startup_error is not None:
            error = self.worker.startup_error
            if isinstance(error, StyleTransferError):
                raise error
            raise StyleTransferError(UNAVAILABLE, f"The backend could not start: "
                                                  f"{type(error).__name__}: {error}.")

    def serve_forever(self) -> None:
        assert self.router is not None and self.inbox is not None
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        next_sweep = time.monotonic()
        while not self.stopping.is_set():
            try:
                events = dict(poller.poll(100))
                if self.inbox in events:
                    self._forward_worker_replies()
                if self.router in events:
                    for _ in range(256):        # bounded, so replies and sweeps keep flowing
                        if not self.router.poll(0):
                            break
                        self._handle(self.router.recv_multipart(copy=False))
                if self.worker.startup_error is not None:
                    self.log.error("stopping: the runtime could not be created")
                    self.stopping.set()
                elif not self._announced and self.worker.ready.is_set():
                    self._announced = True
                    if self.on_ready is not None:
                        self.on_ready()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self.config.heartbeat_interval
            except Exception:                    # the loop itself must never die
                self.log.error("server loop error:\n%s", traceback.format_exc())
        self._shutdown()

    def request_stop(self) -> None:
        """Thread/signal-safe: stop serving; running and queued jobs are cancelled."""
        self.stopping.set()

    def _shutdown(self) -> None:
        for job in self._all_jobs():
            job.cancel("shutdown")
        self.worker.stop()
        self.queue.close()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self.worker.is_alive() and time.monotonic() < deadline:
            self.worker.join(0.1)
            self._forward_worker_replies()
        self._forward_worker_replies()
        for job in self.queue.drain():
            self._send(job.identity, Error.from_exception(job.id, job.stop_error()))
        if self.worker.is_alive():
            self.log.warning("the worker did not stop within %.0f s", SHUTDOWN_GRACE)
        for sock in (self.router, self.inbox):
            if sock is not None:
                sock.close(linger=500)
        if self._auth is not None:
            self._auth.stop()
        self.log.info("stopped")

    # ----------------------------------------------------------------------------- helpers

    def _all_jobs(self) -> list[Job]:
        with self.jobs_lock:
            return list(self.jobs.values())

    def _job_finished(self, job: Job) -> None:       # called on the worker thread
        with self.jobs_lock:
            self.jobs.pop(job.seq, None)

    def _send(self, identity: bytes, reply: Any) -> bool:
        """Send to one client; False (and its jobs dropped) when it is gone."""
        return self._send_frames([identity, *reply.to_frames()])

    def _send_frames(self, frames: list) -> bool:
        assert self.router is not None
        try:
            self.router.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as error:
            if error.errno == zmq.EHOSTUNREACH:
                self._client_gone(bytes(frames[0]))
            elif error.errno == zmq.EAGAIN:
                self.log.warning("client %s is not reading; a reply was dropped",
                                 bytes(frames[0]).hex())
            else:
                self.log.warning("send failed: %s", error)
            return False

    def _client_gone(self, identity: bytes) -> None:
        self.last_seen.pop(identity, None)
        for job in self._all_jobs():
            if job.identity == identity and not job.urgent:
                self.log.info("client of job %s went away; dropping it", job.id)
                job.cancel("client_gone")
                if self.queue.remove(job):
                    self._job_finished(job)

    def _forward_worker_replies(self) -> None:
        assert self.inbox is not None
        while self.inbox.poll(0):
            self._send_frames(self.inbox.recv_multipart(copy=False))

    def _sweep(self, now: float) -> None:
        """Heartbeats to clients with jobs; drop silent clients and queued jobs past deadline."""
        identities = {job.identity for job in self._all_jobs()}
        for identity in list(self.last_seen):
            if identity not in identities:
                del self.last_seen[identity]
        for identity in identities:
            seen = self.last_seen.get(identity, now)
            if now - seen > self.config.client_timeout:
                self.log.info("client %s silent for %.1f s", identity.hex(), now - seen)
                self._client_gone(identity)
            else:
                self._send(identity, Heartbeat(id=""))
        for job in self.queue.snapshot():
            if job.should_stop() and self.queue.remove(job):
                self._job_finished(job)
                self._send(job.identity, Error.from_exception(job.id, job.stop_error()))
        self._enforce_running_deadline(time.monotonic())

    def _enforce_running_deadline(self, now: float) -> None:
        """A running job is stopped at its next progress step once past its deadline; one that
        reaches none (a stage that never reports) still gets its timeout answer here, and the
        worker drops its late reply."""
        job = self.worker.current
        if job is None or job.answered or now < job.deadline + DEADLINE_GRACE:
            return
        job.cancel("deadline")
        if job.claim_answer():
            self.log.warning("job %s is %.1f s past its deadline and still running; its client "
                             "was told, the worker drops it at its next check", job.id,
                             now - job.deadline)
            self._send(job.identity, Error.from_exception(job.id, job.stop_error()))

    # ---------------------------------------------------------------------------- dispatch

    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            return                                    # nothing to answer to
        identity = bytes(frames[0])
        peer = security.peer_of(frames[1], self.mode)
        if identity in self.last_seen:
            self.last_seen[identity] = time.monotonic()
        request_id = ""
        try:
            if len(frames) - 1 > MAX_FRAMES + 1:
                raise ProtocolError(BAD_REQUEST, f"The message has {len(frames) - 1} frames; "
                                                 f"at most {MAX_FRAMES + 1} are accepted.",
                                    peek_id(frames[1].buffer))
            request = decode_request([frame.buffer for frame in frames[1:]])
            request_id = request.id
            if not security.token_ok(self.token, request.token):
                raise StyleTransferError(
                    UNAUTHORIZED, "Missing or wrong token: TCP clients must send the token from "
                                  "the daemon's runtime directory (file 'token').")
            reply = self._dispatch(identity, peer, request)
        except ProtocolError as error:
            reply = Error(id=error.request_id or request_id, code=error.code,
                          message=error.message)
        except StyleTransferError as error:
            reply = Error(id=request_id, code=error.code, message=error.message)
        except MemoryError:
            self.log.warning("request %s: out of memory while reading it", request_id)
            reply = Error(id=request_id, code=OUT_OF_MEMORY,
                          message="The daemon ran out of memory reading this request; it serves "
                                  "on. Send a smaller image.")
        except Exception as error:
            self.log.error("request %s failed:\n%s", request_id, traceback.format_exc())
            reply = Error.from_exception(request_id, error)
        if reply is not None:
            self._send(identity, reply)

    def _dispatch(self, identity: bytes, peer: security.Peer,
                  request: Request) -> Optional[Any]:
        if isinstance(request, HeartbeatRequest):
            return None
        if isinstance(request, StatusRequest):
            return Result(id=request.id, op="status", data=self.status(peer))
        if isinstance(request, ModelsRequest):
            return Result(id=request.id, op="models", data=self.models())
        if isinstance(request, CancelRequest):
            return Result(id=request.id, op="cancel", data=self.cancel(request.target, peer))
        if isinstance(request, IntermediateRequest):
            self._credit_intermediate(request.target, peer)
            return None
        if isinstance(request, ShutdownRequest):
            self.log.info("shutdown requested")
            self.stopping.set()
            return Result(id=request.id, op="shutdown", data={"stopping": True,
                                                              "pid": os.getpid()})
        if self.stopping.is_set():
            raise StyleTransferError(UNAVAILABLE, "The daemon is shutting down.")
        self._check_capacity(identity)
        if isinstance(request, StylizeRequest):
            payload = validation.validate_stylize(request, self.config, peer, self.files)
            return self._enqueue(identity, peer, request, payload, INTERACTIVE,
                                 self.config.job_timeout)
        if isinstance(request, SampleRequest):
            payload = validation.validate_sample(request, self.config)
            return self._enqueue(identity, peer, request, payload, INTERACTIVE,
                                 self.config.job_timeout)
        if isinstance(request, EstimateRequest):
            payload = validation.validate_estimate(request, self.config)
            return self._enqueue(identity, peer, request, payload, INTERACTIVE,
                                 self.config.job_timeout)
        if isinstance(request, BatchRequest):
            payload = validation.validate_batch(request, self.config, peer, self.files)
            return self._enqueue(identity, peer, request, payload, BATCH,
                                 self.config.batch_timeout)
        raise StyleTransferError(BAD_REQUEST, f"Unsupported operation {request.OP!r}.")

    def _check_capacity(self, identity: bytes) -> None:
        """Refuse a job with `busy` when this client, or all clients together, have enough."""
        jobs = self._all_jobs()
        mine = sum(1 for job in jobs if job.identity == identity)
        if mine >= self.config.max_queue_per_client:
            raise StyleTransferError(BUSY, f"This client already has {mine} jobs queued or "
                                           "running; wait for one to finish, then send more.")
        if len(jobs) >= self.config.max_queue:
            raise StyleTransferError(BUSY, f"The daemon already has {len(jobs)} jobs queued or "
                                           "running; try again when some have finished.")

    def _enqueue(self, identity: bytes, peer: security.Peer, request: Any, payload: Any,
                 priority: int, limit: float) -> Optional[Any]:
        deadline_s = min(request.deadline_s or limit, limit)
        job = Job(identity=identity, request=request, payload=payload, priority=priority,
                  deadline=time.monotonic() + deadline_s, principal=peer.principal)
        if getattr(request, "intermediates", False):
            job.want_intermediates()
        self.last_seen[identity] = time.monotonic()
        ahead = self.queue.put(job)
        with self.jobs_lock:
            self.jobs[job.seq] = job
        running = self.worker.current is not None
        if ahead or running:
            return Progress(id=job.id, fraction=0.0,
                            text=f"queued: {ahead + int(running)} job(s) ahead")
        return None

    # ---------------------------------------------------------------------- direct answers

    def cancel(self, target: str, peer: security.Peer) -> dict[str, Any]:
        """Cancel the queued or running jobs with id `target` that belong to `peer`'s principal
        (the owner's clients, or one CURVE key): nobody cancels another's job."""
        found = 0
        for job in self._all_jobs():
            if job.id != target or job.principal != peer.principal:
                continue
            found += 1
            job.cancel("cancelled")
            if self.queue.remove(job):
                self._job_finished(job)
                self._send(job.identity, Error.from_exception(job.id, job.stop_error()))
        return {"cancelled": found}

    def _credit_intermediate(self, target: str, peer: security.Peer) -> None:
        """The client of job `target` (the same principal) wants its next intermediate image:
        the newest kept one goes now, else the next one the worker makes."""
        for job in self._all_jobs():
            if job.id == target and job.principal == peer.principal:
                reply = job.credit_intermediate()
                if reply is not None and not job.answered:
                    self._send(job.identity, reply)

    def status(self, peer: security.Peer) -> dict[str, Any]:
        """The daemon's state; jobs of other principals appear without id, engine or text."""
        running = self.worker.current
        runtime = self.worker.runtime
        runtime_status: dict[str, Any] = {}
        if runtime is not None:
            try:
                runtime_status = dict(runtime.status())
            except Exception as error:      # status must answer even if the runtime is busy
                runtime_status = {"error": str(error)}
        return DaemonStatus(
            version=__version__, protocol=PROTOCOL_VERSION, pid=os.getpid(),
            endpoint=self.bound_endpoint, uptime_s=round(time.time() - self.started, 1),
            ready=runtime is not None,
            device=runtime_status.get("device", str(getattr(runtime, "device", "starting"))),
            runtime=runtime_status, rss_bytes=rss_bytes(),
            running=running.describe(running.principal == peer.principal)
            if running is not None else None,
            queue=[job.describe(job.principal == peer.principal)
                   for job in self.queue.snapshot()],
            jobs_done=self.worker.jobs_done, max_pixels=self.config.max_pixels,
            stopping=self.stopping.is_set()).to_json()

    def models(self) -> dict[str, Any]:
        from backend.modelstore.registry import list_models
        engines = {name: [spec.to_json() for spec in card.options]
                   for name, card in registry.cards().items()}
        models = []
        for info in list_models(self.config.models_dir):
            entry = info.to_json()
            entry["options"] = engines.get(info.engine, [])
            models.append(entry)
        return {"models": models, "engines": engines}


def rss_bytes() -> Optional[int]:
    """Resident memory of this process (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
