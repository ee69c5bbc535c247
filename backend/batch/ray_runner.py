"""The same batch on a Ray cluster: `python -m backend batch IN OUT ... --ray [ADDRESS]`.

Everything around the images is the local runner's run_planned (checks, the OUTPUT_DIR lock,
scan, skip-existing, temp clean-up, the report), and every image goes through the local
runner's per-image code (steps.ImageSteps) inside a Ray actor (ray_worker.BatchWorker) that
loads the model once. So the outputs, names, report and exit codes are the local batch's.

- ADDRESS: none or "local" starts a private Ray on this machine for this batch; "auto" joins
  the cluster this machine belongs to (`ray start`); "ray://HOST:10001" is a Ray Client
  connection; "HOST:6379" a head node's GCS. A caller that already ran ray.init keeps its own
  connection (tests, notebooks).
- Workers: one per GPU (num_gpus=1 each) when the cluster has GPUs, else one per
  `cpus_per_worker` CPUs (that many torch threads); `workers` overrides the count.
- Inputs, outputs, models and the project itself must be at the same paths on every node
  (shared storage); the workers find the project through PYTHONPATH and refuse to run when
  their backend sources differ from the driver's.
- Faults: a worker that dies hands its images back (ray_schedule.Schedule retries them, alone,
  on whichever worker is free; Ray restarts the actor, up to `max_restarts`); the temp files it
  left are removed. An image that kills its worker twice is reported failed. A killed driver
  leaves only complete outputs, so a rerun does exactly the rest.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from stclient.errors import BAD_REQUEST, INTERNAL, StyleTransferError

from backend.engines.job import CancelledFn, ProgressFn, never_cancelled, no_progress

from .runner import BatchPlan, mark_cancelled, run_planned
from .ray_schedule import Assignment, Schedule
from .ray_worker import BatchWorker, Ready, Reply, WorkerSetup, source_digest
from .spec import CANCELLED, FAILED, BatchReport, BatchSpec, ItemResult, progress_text

RAY_REQUIREMENTS = "requirements-ray.txt"
INSTALL_HINT = ("Ray is not installed in this environment; install it with "
                "`python3 install.py --with ray` (the pinned version in requirements-ray.txt).")
DEFAULT_CPUS_PER_WORKER = 4
# Variables a worker must not take from the driver: they name this machine's daemon.
_LOCAL_ONLY_ENV = ("STYLE_TRANSFER_RUNTIME_DIR", "STYLE_TRANSFER_ENDPOINT", "STYLE_TRANSFER_TOKEN")

Notify = Callable[[str], None]


def import_ray() -> Any:
    """The ray module, or a bad_request that says how to install it."""
    try:
        import ray
    except ImportError:
        raise StyleTransferError(BAD_REQUEST, INSTALL_HINT) from None
    return ray


def check_address(text: str) -> str:
    """An --ray ADDRESS as given, or ValueError for something that is not one (for argparse:
    `--ray photos/` is a misplaced folder, not a cluster)."""
    if text in ("local", "auto") or text.startswith("ray://"):
        return text
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and "/" not in host:
        return text
    raise ValueError(f"{text!r} is not a Ray address: use auto, ray://HOST:PORT or HOST:PORT "
                     "(and put --ray after INPUT_DIR OUTPUT_DIR)")


@dataclass
class RayOptions:
    """How the batch uses Ray (the spec says what to do, these say where)."""

    address: Optional[str] = None     # None / "local": a private Ray here; "auto"; ray://...
    workers: Optional[int] = None     # None: one per GPU, else one per cpus_per_worker CPUs
    cpus_per_worker: Optional[int] = None   # CPU workers; None: min(4, the cluster's CPUs)
    in_flight: int = 2                # images queued per worker: I/O overlaps the network
    max_restarts: int = 3             # Ray restarts of one worker process
    max_deaths: int = 2               # an image alone on a worker that died this often: failed
    local_cpus: Optional[int] = None  # the private local Ray's CPUs (None: all of them)
    start_timeout: float = 600.0      # no worker ready by then: the cluster cannot run any
    compile: Optional[bool] = None    # torch.compile in the workers (None: $STYLE_TRANSFER_...)

    def validate(self) -> None:
        for name in ("workers", "cpus_per_worker", "local_cpus"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise StyleTransferError(BAD_REQUEST, f"Ray {name.replace('_', ' ')} must be "
                                                      "at least 1.")
        if self.in_flight < 1 or self.max_deaths < 1 or self.max_restarts < 0:
            raise StyleTransferError(BAD_REQUEST, "in_flight and max_deaths must be at least "
                                                  "1, max_restarts at least 0.")
        if self.address is not None:
            try:
                check_address(self.address)
            except ValueError as error:
                raise StyleTransferError(BAD_REQUEST, str(error)) from None


@dataclass
class WorkerShape:
    """How many workers and what each one reserves."""

    count: int
    num_cpus: int
    num_gpus: int
    device: str
    threads: Optional[int]

    def describe(self) -> str:
        each = "1 GPU" if self.num_gpus else f"{self.num_cpus} CPU(s)"
        return f"{self.count} worker(s), {each} each"


def plan_workers(options: RayOptions, device: str, resources: dict[str, float]) -> WorkerShape:
    """GPU workers when the cluster has GPUs (or --device cuda), else CPU workers."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device == "cuda" or (device == "auto" and gpus > 0):
        if gpus < 1:
            raise StyleTransferError(BAD_REQUEST, "--device cuda, but the Ray cluster has no "
                                                  f"GPU (its resources: {_describe(resources)}).")
        return WorkerShape(options.workers or gpus, 1, 1, "cuda", None)
    per = options.cpus_per_worker or min(DEFAULT_CPUS_PER_WORKER, max(1, cpus))
    return WorkerShape(options.workers or max(1, cpus // per), per, 0, device, per)


def _describe(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU")}
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shown.items())) or "none"


@dataclass
class WorkerRecord:
    """What the driver knows about one worker (for messages and the summary)."""

    index: int
    host: str = ""
    node: str = ""
    pid: int = 0
    device: str = ""
    starts: int = 0                   # times it became ready (2+: Ray restarted it)
    images: int = 0                   # results it returned
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class RayRunStats:
    """What the Ray run did beyond the report: its workers and the images retried."""

    shape: Optional[WorkerShape] = None
    workers: list[WorkerRecord] = field(default_factory=list)
    deaths: int = 0                   # worker processes that died during the batch
    retried: int = 0                  # images handed to another attempt after a death

    def summary(self) -> str:
        started = [w for w in self.workers if w.starts]
        hosts = sorted({w.host for w in started})
        devices = sorted({w.device for w in started})
        text = (f"Ray: {len(started)} worker(s) on {len(hosts)} node(s) "
                f"({', '.join(devices) or 'none'})")
        if self.deaths:
            text += f"; {self.deaths} worker death(s), {self.retried} image(s) retried"
        return text


@contextmanager
def connected(ray: Any, options: RayOptions) -> Iterator[None]:
    """ray.init for this batch and ray.shutdown after it, unless the caller is connected."""
    if ray.is_initialized():
        yield
        return
    address = options.address or "local"
    # the job's environment: a Ray Client's server unpickles the actor class, so it needs it too
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}}
    if not address.startswith("ray://"):
        kwargs.update(logging_level=logging.ERROR, log_to_driver=False)
    if address == "local":
        kwargs.update(include_dashboard=False, num_cpus=options.local_cpus)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise StyleTransferError(BAD_REQUEST, f"Cannot connect to the Ray cluster at "
                                              f"{address}: {error}") from None
    try:
        yield
    finally:
        ray.shutdown()


class RayBatch:
    """Run one BatchSpec on Ray; `stats` says how, after run()."""

    def __init__(self, options: Optional[RayOptions] = None) -> None:
        self.options = options or RayOptions()
        self.stats = RayRunStats()

    def run(self, spec: BatchSpec, progress: ProgressFn = no_progress,
            cancelled: CancelledFn = never_cancelled, *, abort: CancelledFn = never_cancelled,
            notify: Optional[Notify] = None) -> BatchReport:
        """Like runner.run_batch, with Ray workers instead of a Runtime in this process."""
        self.options.validate()
        ray = import_ray()
        spec.validate()
        self.stats = RayRunStats()

        def execute(plan: BatchPlan, progress: ProgressFn) -> None:
            if not plan.todo:
                return
            with connected(ray, self.options):
                _Driver(ray, self.options, plan, progress, cancelled, abort,
                        notify or (lambda text: None), self.stats).run()

        return run_planned(spec, execute, progress)


def run_batch_ray(spec: BatchSpec, options: Optional[RayOptions] = None,
                  progress: ProgressFn = no_progress,
                  cancelled: CancelledFn = never_cancelled) -> BatchReport:
    """Convenience: RayBatch(options).run(spec, progress, cancelled)."""
    return RayBatch(options).run(spec, progress, cancelled)


class _Driver:
    """The loop on the driver: start workers, keep each one fed, collect results, recover."""

    def __init__(self, ray: Any, options: RayOptions, plan: BatchPlan, progress: ProgressFn,
                 cancelled: CancelledFn, abort: CancelledFn, notify: Notify,
                 stats: RayRunStats) -> None:
        self.ray, self.options, self.plan = ray, options, plan
        self.progress, self.cancelled, self.abort, self.notify = progress, cancelled, abort, notify
        self.stats = stats
        self.todo = plan.todo
        self.total = len(plan.todo)
        self.done = 0
        self.schedule = Schedule(self.total, per_worker=options.in_flight,
                                 max_deaths=options.max_deaths)
        self.actors: dict[int, Any] = {}
        self.records: dict[int, WorkerRecord] = {}
        self.starting: dict[Any, int] = {}          # ready() ref -> worker
        self.unavailable: dict[int, int] = {}       # worker -> ready() answers "unavailable"
        self.running: dict[Any, Assignment] = {}    # process() ref -> assignment
        self.gone: list[str] = []                   # why workers left for good
        self.stopping = False

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        shape = plan_workers(self.options, self.plan.spec.device, self.ray.cluster_resources())
        self.stats.shape = shape
        try:
            self._start_workers(shape)
            self._loop(shape)
            self._collect_stats()
        finally:
            self._kill_workers()

    def _loop(self, shape: WorkerShape) -> None:
        started = time.monotonic()
        while not self.schedule.finished:
            if self.abort():
                self._abort()
                return
            if self.cancelled() and not self.stopping:
                self.stopping = True
                mark_cancelled([self.todo[i] for i in self.schedule.cancel()], self.plan.results)
                continue
            if not self.schedule.workers() and not self.starting:
                self._no_worker_left()
                return
            if not any(r.starts for r in self.records.values()) and \
                    time.monotonic() - started > self.options.start_timeout:
                raise StyleTransferError(
                    INTERNAL, f"No Ray worker started within {self.options.start_timeout:g} s "
                    f"({shape.describe()}; the cluster has "
                    f"{_describe(self.ray.cluster_resources())}).")
            self._feed()
            for ref in self._wait():
                if ref in self.starting:
                    self._on_ready(ref)
                elif ref in self.running:
                    self._on_result(ref)

    def _wait(self) -> list[Any]:
        refs = list(self.starting) + list(self.running)
        if not refs:
            time.sleep(0.05)
            return []
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=0.2)
        if ready and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def _feed(self) -> None:
        for worker in self.schedule.workers():
            while (assignment := self.schedule.next_for(worker)) is not None:
                ref = self.actors[worker].process.remote(self.todo[assignment.item],
                                                         assignment.retry)
                self.running[ref] = assignment

    # ------------------------------------------------------------------ workers
    def _start_workers(self, shape: WorkerShape) -> None:
        plan = self.plan
        from backend.modelstore.manifest import default_models_dir
        setup = WorkerSetup(
            spec=plan.spec, options=plan.job.options, styles=plan.job.styles,
            input_root=str(plan.input_root), output_root=str(plan.output_root),
            models_dir=str(default_models_dir()), device=shape.device, threads=shape.threads,
            compile=self.options.compile, code=source_digest())
        actor_class = self.ray.remote(BatchWorker).options(
            num_cpus=shape.num_cpus, num_gpus=shape.num_gpus,
            max_restarts=self.options.max_restarts, max_task_retries=0,
            max_concurrency=self.options.in_flight, runtime_env={"env_vars": worker_env()})
        count = min(shape.count, self.total)    # no idle workers for a small batch
        self.progress(0.0, f"starting {count} Ray worker(s)")
        for index in range(count):
            self.actors[index] = actor_class.remote(setup)
            self.records[index] = WorkerRecord(index)
            self.starting[self.actors[index].ready.remote()] = index
        self.stats.workers = [self.records[i] for i in sorted(self.records)]

    def _on_ready(self, ref: Any) -> None:
        worker = self.starting.pop(ref)
        record = self.records[worker]
        try:
            ready: Ready = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            tries = self.unavailable[worker] = self.unavailable.get(worker, 0) + 1
            if tries <= 20:                          # restarting: ask again
                time.sleep(min(0.05 * tries, 1.0))
                self.starting[self.actors[worker].ready.remote()] = worker
                return
            self._gone(worker, "it stayed unavailable")
            return
        except self.ray.exceptions.RayError as error:    # could not start, or restarts used up
            self._gone(worker, _reason(error))
            return
        if ready.error is not None:
            raise StyleTransferError(*ready.error)
        self.unavailable.pop(worker, None)
        record.host, record.node, record.pid, record.device = (ready.host, ready.node,
                                                               ready.pid, ready.device)
        record.starts += 1
        if record.starts > 1:
            self.notify(f"Ray worker {worker} is back (pid {ready.pid} on {ready.host}).")
        self.schedule.add_worker(worker)
        if not self.done:
            up = sum(1 for r in self.records.values() if r.starts)   # not "n/m": that is
            self.progress(0.0, f"Ray workers ready: {up} of {len(self.records)}")  # a count

    def _gone(self, worker: int, why: str) -> None:
        self.gone.append(f"worker {worker}: {why}")
        self.notify(f"Ray worker {worker} is gone for good: {why}")
        self.schedule.drop_worker(worker)

    def _on_result(self, ref: Any) -> None:
        assignment = self.running.pop(ref)
        try:
            reply: Reply = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:   # a bug in the worker's code
            raise StyleTransferError(INTERNAL, f"A Ray worker failed: {error}") from None
        except self.ray.exceptions.RayError as error:       # the worker process died
            self._on_death(assignment.worker, error)
            return
        if reply.error is not None:
            raise StyleTransferError(*reply.error)
        self.schedule.done(assignment)
        self.records[assignment.worker].images += 1
        assert reply.result is not None
        self._record(reply.result)

    def _on_death(self, worker: int, error: BaseException) -> None:
        if worker not in self.schedule.held:
            return                                   # already handled (another of its refs)
        retried, given_up = self.schedule.worker_died(worker)
        for ref in [r for r, a in self.running.items() if a.worker == worker]:
            del self.running[ref]
        # the dead process may have left a temp file; no other attempt of these is running
        self._remove_temp_files(retried + given_up)
        self.stats.deaths += 1
        self.stats.retried += len(retried)
        record = self.records[worker]
        self.notify(f"Ray worker {worker} (pid {record.pid} on {record.host}) died with "
                    f"{len(retried) + len(given_up)} image(s) in hand: {_reason(error)}; "
                    f"retrying {len(retried)} on the other workers.")
        for index in given_up:
            planned = self.todo[index]
            self._record(ItemResult(
                planned.rel, FAILED, planned.item.output_rel.as_posix(), INTERNAL,
                f"The Ray worker processing it died {self.options.max_deaths} times with only "
                "this image in hand (killed, or out of memory?); not retried again."))
        self.starting[self.actors[worker].ready.remote()] = worker   # Ray restarts it

    def _record(self, result: ItemResult) -> None:
        self.plan.results[result.input] = result
        self.done += 1
        self.progress(self.done / self.total, progress_text(self.done, self.total, result.input))

    def _remove_temp_files(self, items: list[int]) -> None:
        from .runner import _remove_stale_temp_files
        _remove_stale_temp_files([self.todo[i].target for i in items])

    # ------------------------------------------------------------------ endings
    def _no_worker_left(self) -> None:
        why = "; ".join(self.gone) or "no worker could start"
        if not any(r.starts for r in self.records.values()):
            raise StyleTransferError(INTERNAL, f"No Ray worker could start: {why}")
        rest = [self.todo[i] for i in self.schedule.cancel()]
        for planned in rest:
            self.plan.results[planned.rel] = ItemResult(
                planned.rel, CANCELLED, planned.item.output_rel.as_posix(),
                message="Not done: no Ray worker was left; run the batch again to finish.")
        self.notify(f"No Ray worker is left ({why}); {len(rest)} image(s) not done.")

    def _abort(self) -> None:
        """Stop now: the images in flight are reported cancelled (one a worker finished just
        before its end is complete all the same, and a rerun skips it)."""
        in_flight = list(self.running)
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        if in_flight:            # their calls fail once the processes are gone: then clean up
            self.ray.wait(in_flight, num_returns=len(in_flight), timeout=10)
        dropped = [a.item for a in self.schedule.in_flight()] + self.schedule.cancel()
        self.running.clear()
        for worker in list(self.schedule.held):
            self.schedule.worker_died(worker)
        self.schedule.cancel()
        mark_cancelled([self.todo[i] for i in dropped], self.plan.results)
        self._remove_temp_files(dropped)

    def _collect_stats(self) -> None:
        """Each live worker's Runtime counters (style_encodes etc.), for the summary/tests."""
        live = {w: self.actors[w].stats.remote() for w in self.schedule.workers()}
        if not live:
            return
        ready, _ = self.ray.wait(list(live.values()), num_returns=len(live), timeout=10)
        for worker, ref in live.items():
            if ref in ready:
                try:
                    self.records[worker].stats = self.ray.get(ref)
                except self.ray.exceptions.RayError:
                    pass

    def _kill_workers(self) -> None:
        """End the actors now (each holds a model); also on errors and Ctrl-C."""
        for actor in self.actors.values():
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:      # already dead, or the connection is gone
                pass
        self.actors.clear()


def worker_env() -> dict[str, str]:
    """The workers' environment: the project on PYTHONPATH (same path on every node) and the
    driver's STYLE_TRANSFER_* settings (memory budget, native kernels, ...)."""
    from backend import PROJECT_ROOT
    env = {name: value for name, value in os.environ.items()
           if name.startswith("STYLE_TRANSFER_") and name not in _LOCAL_ONLY_ENV}
    paths = [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                   if p and p != str(PROJECT_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _reason(error: BaseException) -> str:
    """Ray's error text, short: its first line and its last (where the cause is, e.g. the
    ModuleNotFoundError of a worker that cannot import the project)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= 400 else text[:397] + "..."


__all__ = ["RayBatch", "RayOptions", "RayRunStats", "WorkerShape", "check_address",
           "import_ray", "plan_workers", "run_batch_ray", "worker_env"]
