"""Jobs and the queue the single worker takes them from.

Interactive jobs (stylize, sample: a user waits in GIMP) come before batch jobs; within a
priority, first come first served. A job carries its own cancel flag, reason and deadline, so the
server thread can cancel it (client gone, cancel request, deadline, shutdown) while the worker
polls `job.should_stop()` between stages.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from stclient.errors import CANCELLED, TIMEOUT, Cancelled, StyleTransferError
from stclient.status import JobInfo

INTERACTIVE = 0
BATCH = 1

# Why a job stopped early -> what its client is told.
REASONS = {
    "cancelled": (CANCELLED, "The job was cancelled."),
    "client_gone": (CANCELLED, "The client went away, so its job was dropped."),
    "shutdown": (CANCELLED, "The daemon is shutting down; the job was cancelled."),
    "deadline": (TIMEOUT, "The job ran past its deadline and was stopped; retry with a smaller "
                          "image or a longer deadline_s."),
}


@dataclass
class Job:
    identity: bytes
    request: Any                       # a validated StylizeRequest / BatchRequest / SampleRequest
    payload: Any                       # what validation prepared for the worker
    priority: int
    deadline: float                    # time.monotonic() value
    received: float = field(default_factory=time.monotonic)
    seq: int = 0
    started: Optional[float] = None
    fraction: float = 0.0
    text: str = "queued"
    _cancel: threading.Event = field(default_factory=threading.Event)
    reason: Optional[str] = None
    principal: str = "owner"           # security.Peer.principal of the client that sent it
    answered: bool = False             # its final reply went out (see claim_answer)
    _answer_lock: threading.Lock = field(default_factory=threading.Lock)
    urgent: bool = False               # a batch stops inside the image in hand, not after it
    # intermediate images: at most one on its way to the client (it asks for each next one),
    # the newest kept meanwhile (an older one is replaced, never queued)
    _credit: bool = False
    _latest: Any = None
    _closed: bool = False
    _slot_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def op(self) -> str:
        return self.request.OP

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        elif reason in ("cancelled", "client_gone"):
            self.urgent = True     # cancelled again, or nobody waits any more: stop at once
        self._cancel.set()

    def should_stop(self) -> bool:
        if not self._cancel.is_set() and time.monotonic() > self.deadline:
            self.cancel("deadline")
        return self._cancel.is_set()

    def claim_answer(self) -> bool:
        """True for the one caller that may send the job's final reply: the worker when it
        finishes, or the server when the job overran its deadline without stopping."""
        with self._answer_lock:
            if self.answered:
                return False
            self.answered = True
            return True

    def want_intermediates(self) -> None:
        """The request asked for intermediates: the first one may go out unasked."""
        with self._slot_lock:
            self._credit = True

    def offer_intermediate(self, reply: Any) -> bool:
        """Worker: True when `reply` may be sent now (the client has a credit); else it is kept
        as the newest, replacing the one kept before."""
        with self._slot_lock:
            if self._closed:
                return False
            if self._credit:
                self._credit = False
                return True
            self._latest = reply
            return False

    def credit_intermediate(self) -> Any:
        """Server: the client asks for the next one. Returns the kept one to send now, or None
        (then the next one the worker offers goes out at once)."""
        with self._slot_lock:
            if self._closed:
                return None
            if self._latest is not None:
                reply, self._latest = self._latest, None
                return reply
            self._credit = True
            return None

    def close_intermediates(self) -> None:
        """Before the final reply: nothing older may follow it."""
        with self._slot_lock:
            self._closed, self._latest, self._credit = True, None, False

    def stop_error(self) -> StyleTransferError:
        code, message = REASONS.get(self.reason or "cancelled", REASONS["cancelled"])
        return Cancelled(message) if code == CANCELLED else StyleTransferError(code, message)

    def describe(self, own: bool = True) -> JobInfo:
        """What status shows; another principal's job keeps its id, engine, model and text to
        itself."""
        now = time.monotonic()
        info = JobInfo(id=self.id if own else None, own=own, op=self.op,
                       priority="interactive" if self.priority == INTERACTIVE else "batch",
                       waiting_s=round(now - self.received, 3),
                       engine=(getattr(self.request, "engine", None) or "") if own else "",
                       model=(getattr(self.request, "model", None) or "") if own else "")
        if self.started is not None:
            info.running_s = round(now - self.started, 3)
            info.fraction = round(self.fraction, 4)
            if own:
                info.text = self.text
        return info


class JobQueue:
    """A thread-safe priority queue that also lets the server remove or cancel waiting jobs."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Job]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> int:
        """Enqueue; returns how many jobs are ahead of it."""
        with self._cond:
            job.seq = next(self._counter)
            heapq.heappush(self._heap, (job.priority, job.seq, job))
            ahead = sum(1 for p, s, _ in self._heap if (p, s) < (job.priority, job.seq))
            self._cond.notify()
            return ahead

    def get(self, timeout: float) -> Optional[Job]:
        with self._cond:
            if not self._heap and not self._closed:
                self._cond.wait(timeout)
            if not self._heap:
                return None
            return heapq.heappop(self._heap)[2]

    def get_interactive(self) -> Optional[Job]:
        """Pop the next interactive job, if one waits (a batch yields to it between images)."""
        with self._cond:
            if self._heap and self._heap[0][0] == INTERACTIVE:
                return heapq.heappop(self._heap)[2]
            return None

    def remove(self, job: Job) -> bool:
        with self._cond:
            for index, entry in enumerate(self._heap):
                if entry[2] is job:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                    return True
            return False

    def snapshot(self) -> list[Job]:
        with self._cond:
            return [entry[2] for entry in sorted(self._heap)]

    def drain(self) -> list[Job]:
        with self._cond:
            jobs = [entry[2] for entry in sorted(self._heap)]
            self._heap.clear()
            return jobs

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)
