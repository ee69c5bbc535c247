"""A one-line progress bar for long CLI work: count, images/s and ETA, on stderr.

It is fed the (fraction, text) pairs a batch reports, in-process or relayed by the daemon; batch
texts look like "12/200 sub/a.jpg" (spec.progress_text). On a terminal the line is redrawn in
place a few times a second; when stderr is a file or pipe (logs, CI) a plain line is printed every
`log_every` seconds instead, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Optional, TextIO

from .spec import parse_progress_text


def format_duration(seconds: float) -> str:
    """1:05, 12:00, 1:02:03."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Call update(fraction, text) as often as you like; call finish() once at the end."""

    def __init__(self, stream: Optional[TextIO] = None, enabled: bool = True,
                 interactive: Optional[bool] = None, log_every: float = 10.0,
                 clock=time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = (self.stream.isatty() if interactive is None else interactive)
        self.log_every = log_every
        self.clock = clock
        self.started = clock()
        self.last_draw = float("-inf")
        self.drawn_width = 0
        self.line = ""

    def message(self, text: str) -> None:
        """Print a line above the bar (warnings such as 'stopping after this image')."""
        if not self.enabled:
            return
        self._clear()
        print(text, file=self.stream, flush=True)
        self.last_draw = float("-inf")

    def render(self, fraction: float, text: str) -> str:
        """The bar's text for this moment (also used by tests)."""
        now = self.clock()
        elapsed = now - self.started
        fraction = min(max(fraction, 0.0), 1.0)
        parsed = parse_progress_text(text)
        parts = []
        if parsed is not None:
            done, total, name = parsed
            parts.append(f"{done}/{total}")
        else:
            done, total, name = None, None, text
        width = 20
        filled = int(round(fraction * width))
        parts.append("[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:3.0f}%")
        if done:
            parts.append(f"{done / elapsed:.2f} img/s" if elapsed > 0 else "- img/s")
        if 0 < fraction < 1 and elapsed > 1.0:
            parts.append("ETA " + format_duration(elapsed * (1 - fraction) / fraction))
        elif fraction >= 1:
            parts.append(format_duration(elapsed))
        if name:
            parts.append(name)
        return "  ".join(parts)

    def update(self, fraction: float, text: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        final = fraction >= 1.0
        if self.interactive:
            if not final and now - self.last_draw < 0.1:
                return
            line = self.render(fraction, text)
            columns = shutil.get_terminal_size((100, 20)).columns - 1
            line = line[:columns]
            pad = " " * max(0, self.drawn_width - len(line))
            self.stream.write("\r" + line + pad)
            self.stream.flush()
            self.drawn_width = len(line)
        else:
            if not final and now - self.last_draw < self.log_every:
                return
            print(self.render(fraction, text), file=self.stream, flush=True)
        self.last_draw = now

    def finish(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self.enabled and self.interactive and self.drawn_width:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn_width = 0

    def _clear(self) -> None:
        if self.interactive and self.drawn_width:
            self.stream.write("\r" + " " * self.drawn_width + "\r")
            self.drawn_width = 0
