"""The daemon's `status` reply as a typed shape, and the one formatter the CLI (`python -m backend
status`) and GIMP's Backend Status share. Standard library only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional


@dataclass
class LoadedModel:
    """A model the daemon's Runtime keeps loaded."""

    name: str
    engine: str
    arch: str = ""
    bytes: int = 0


@dataclass
class JobInfo:
    """A queued or running job (running ones have running_s, fraction and text). Another
    client's job is shown without its id, engine, model and text (`own` False)."""

    id: Optional[str]
    op: str
    priority: str = "interactive"
    waiting_s: float = 0.0
    engine: str = ""
    model: str = ""
    running_s: Optional[float] = None
    fraction: float = 0.0
    text: str = ""
    own: bool = True

    def to_json(self) -> dict[str, Any]:
        """Only what is known: no empty engine/model/text, no progress for a queued job."""
        data = asdict(self)
        for key in ("engine", "model", "text"):
            if not data[key]:
                del data[key]
        if self.running_s is None:
            del data["running_s"], data["fraction"]
        return data


@dataclass
class DaemonStatus:
    version: str
    protocol: int
    pid: int
    endpoint: str
    uptime_s: float
    ready: bool
    device: str
    rss_bytes: Optional[int] = None
    runtime: dict[str, Any] = field(default_factory=dict)   # device details, models, memory
    running: Optional[JobInfo] = None
    queue: list[JobInfo] = field(default_factory=list)
    jobs_done: int = 0
    max_pixels: int = 0
    stopping: bool = False

    @property
    def models(self) -> list[LoadedModel]:
        return [_record(LoadedModel, m) for m in self.runtime.get("models") or []
                if isinstance(m, dict)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["running"] = self.running.to_json() if self.running is not None else None
        data["queue"] = [job.to_json() for job in self.queue]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DaemonStatus":
        """Read a reply leniently: unknown keys are ignored, missing ones get defaults."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values.setdefault("version", "?")
        values.setdefault("protocol", 0)
        values.setdefault("pid", 0)
        values.setdefault("endpoint", "?")
        values.setdefault("uptime_s", 0.0)
        values.setdefault("ready", False)
        values.setdefault("device", "?")
        running = data.get("running")
        values["running"] = _record(JobInfo, running) if isinstance(running, dict) else None
        values["queue"] = [_record(JobInfo, job) for job in data.get("queue") or []
                           if isinstance(job, dict)]
        values["runtime"] = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
        return cls(**values)


def _record(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("id", "op", "name", "engine"):
        if name in known:
            values.setdefault(name, "?")
    return cls(**values)


RUNTIME_DETAILS = ("device_name", "threads", "compile", "native_kernels", "memory_budget",
                   "style_cache_entries", "cuda_allocated", "cuda_reserved")
_SIZES = ("memory_budget", "cuda_allocated", "cuda_reserved")


def format_status(status: DaemonStatus) -> str:
    """Lines a person reads: daemon, device, memory, loaded models, running job, queue."""
    lines = [
        f"daemon     {status.version} (protocol {status.protocol}), pid {status.pid}, "
        f"up {status.uptime_s} s",
        f"endpoint   {status.endpoint}",
        f"device     {status.device}" + ("" if status.ready else " (starting)"),
        f"memory     {mib(status.rss_bytes)} resident",
    ]
    loaded = ", ".join(f"{m.name} ({m.engine}, {mib(m.bytes)})" for m in status.models)
    lines.append(f"models     {loaded or 'none loaded yet'}")
    for key in RUNTIME_DETAILS:
        if key in status.runtime:
            value = status.runtime[key]
            lines.append(f"runtime    {key.replace('_', ' ')}: "
                         f"{mib(value) if key in _SIZES else value}")
    running = status.running
    if running is not None:
        lines.append(f"running    {_job(running)} {100 * float(running.fraction):.0f}% "
                     f"{running.text}".rstrip())
    else:
        lines.append("running    nothing")
    lines.append(f"queue      {len(status.queue)} job(s)")
    for job in status.queue:
        lines.append(f"           {_job(job)} ({job.priority}, waiting {job.waiting_s} s)")
    lines.append(f"jobs done  {status.jobs_done}")
    return "\n".join(lines)


def _job(job: JobInfo) -> str:
    return " ".join(part for part in (job.op, job.id if job.own else "(another client's)",
                                      job.engine, job.model) if part)


def mib(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) else "?"
