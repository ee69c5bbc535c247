"""Which image goes to which Ray worker next, and what becomes of a dead worker's images.

Pure bookkeeping (no Ray here), so the retry rules are tested without a cluster:
- every worker has up to `per_worker` images queued, so it never waits for the driver;
- a worker that dies hands back every image it held; they are retried, each one *alone* on a
  worker (nothing else queued there), so that a second death can be blamed on that image;
- an image that was alone on a worker that died `max_deaths` times is given up (reported failed:
  it kills its worker, e.g. by running it out of memory) and the rest of the batch goes on;
- while retries wait, workers get no new images, so they drain and take the retries first.
Items are indices into the batch's todo list; workers are any hashable ids.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Hashable, Optional


@dataclass
class Assignment:
    """One image sent to one worker."""

    item: int
    worker: Hashable
    retry: bool                      # an earlier attempt died with its worker
    alone: bool                      # nothing else was queued on that worker


@dataclass
class Schedule:
    count: int
    per_worker: int = 2
    max_deaths: int = 2
    pending: collections.deque[int] = field(default_factory=collections.deque)
    retries: collections.deque[int] = field(default_factory=collections.deque)
    held: dict[Hashable, list[Assignment]] = field(default_factory=dict)
    deaths: collections.Counter[int] = field(default_factory=collections.Counter)
    retried: set[int] = field(default_factory=set)     # every item that was ever retried

    def __post_init__(self) -> None:
        if self.per_worker < 1 or self.max_deaths < 1:
            raise ValueError("per_worker and max_deaths must be at least 1")
        self.pending.extend(range(self.count))

    # ------------------------------------------------------------------ workers
    def add_worker(self, worker: Hashable) -> None:
        self.held.setdefault(worker, [])

    def workers(self) -> list[Hashable]:
        return list(self.held)

    def next_for(self, worker: Hashable) -> Optional[Assignment]:
        """The next image for `worker` to queue now, or None (it has enough, or nothing is
        left for it). Call until None after every change."""
        held = self.held.get(worker)
        if held is None:
            return None
        if any(a.alone for a in held):
            return None
        if self.retries:
            if held:
                return None                            # drain first, then take a retry alone
            assignment = Assignment(self.retries.popleft(), worker, retry=True, alone=True)
        elif self.pending and len(held) < self.per_worker:
            assignment = Assignment(self.pending.popleft(), worker, retry=False, alone=False)
        else:
            return None
        held.append(assignment)
        return assignment

    def done(self, assignment: Assignment) -> None:
        """The worker returned a result for this image."""
        held = self.held.get(assignment.worker, [])
        if assignment in held:
            held.remove(assignment)

    def worker_died(self, worker: Hashable) -> tuple[list[int], list[int]]:
        """(retried, given_up): the images the dead worker held. The worker is removed;
        add_worker it again once it is back (Ray restarts actors)."""
        retried: list[int] = []
        given_up: list[int] = []
        for assignment in self.held.pop(worker, []):
            if assignment.alone:
                self.deaths[assignment.item] += 1
            if self.deaths[assignment.item] >= self.max_deaths:
                given_up.append(assignment.item)
            else:
                retried.append(assignment.item)
                self.retried.add(assignment.item)
        # the dead worker's images first: they have waited longest
        self.retries.extend(retried)
        return retried, given_up

    def drop_worker(self, worker: Hashable) -> None:
        """A worker that holds nothing leaves for good (it did not come back)."""
        if self.held.get(worker):
            raise ValueError("drop_worker: call worker_died first, it holds images")
        self.held.pop(worker, None)

    # ------------------------------------------------------------------ the batch
    def cancel(self) -> list[int]:
        """Stop handing out images; returns those never started (queued images finish)."""
        rest = list(self.retries) + list(self.pending)
        self.retries.clear()
        self.pending.clear()
        return rest

    def in_flight(self) -> list[Assignment]:
        return [a for held in self.held.values() for a in held]

    @property
    def waiting(self) -> int:
        """Images not handed to any worker yet (new and retried)."""
        return len(self.pending) + len(self.retries)

    @property
    def finished(self) -> bool:
        return not self.waiting and not self.in_flight()


__all__ = ["Assignment", "Schedule"]
