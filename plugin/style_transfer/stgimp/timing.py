"""Optional timing output: STYLE_TRANSFER_TIMING=1 prints one JSON line per filter run to stderr.

bench/bench_gimp.py reads these lines to split a filter's time into GIMP pixel I/O, transfer and
compute. Off by default: nothing is printed and the cost is a few monotonic() calls.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from stclient import settings

PREFIX = "STYLE_TRANSFER_TIMING "


class Timer:
    """Accumulates named stage durations for one run."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self._started = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.monotonic() - started

    def emit(self, procedure: str) -> None:
        if not settings.current().timing:
            return
        line = {"procedure": procedure, "total_s": round(time.monotonic() - self._started, 4)}
        line.update({f"{name}_s": round(value, 4) for name, value in self.stages.items()})
        line.update(self.extra)
        print(PREFIX + json.dumps(line, sort_keys=True), file=sys.stderr, flush=True)
