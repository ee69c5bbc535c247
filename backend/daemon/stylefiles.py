"""Style files named in requests, read in helper threads with a size cap and a timeout.

The worker thread owns the device and runs every job; a read that never returns (a FIFO, a
device, a stalled network folder, /proc/kmsg) must not take it hostage. So the bytes are read by
a short-lived helper thread (imageio.read_file_bytes: regular files only, at most `max_bytes`)
while the worker waits at most `timeout` seconds (and no longer than the job may run), polling
the job's cancel flag. A read that hangs keeps its helper thread, but never the worker; at most
`max_stuck` such threads are allowed, after which style files are refused with `busy` until the
daemon restarts (the log says why).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from stclient.errors import BAD_REQUEST, BUSY, UNREADABLE, StyleTransferError

from .logsetup import get_logger

DEFAULT_MAX_BYTES = 256 << 20        # a style image file larger than this is refused
DEFAULT_TIMEOUT = 20.0               # seconds one style file may take to read
MAX_STUCK = 4                        # helper threads that may hang before reads are refused
POLL = 0.1                           # how often the waiting worker checks for a cancel


class StyleFileReader:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_TIMEOUT,
                 max_stuck: int = MAX_STUCK) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max_stuck)
        self.log = get_logger()

    def read(self, path: str, should_stop: Callable[[], bool],
             time_left: Callable[[], float]) -> bytes:
        """The file's bytes; raises when it cannot be read in time or the job must stop."""
        if not self._slots.acquire(blocking=False):
            raise StyleTransferError(BUSY, "Earlier style files are still being read (they "
                                           "hang: a device or a stalled network folder?); "
                                           "restart the daemon, and send style pixels instead.")
        future: Future = Future()
        helper = threading.Thread(target=self._run, args=(path, future), daemon=True,
                                  name="style-read")
        helper.start()
        deadline = time.monotonic() + max(0.0, min(self.timeout, time_left()))
        while True:
            try:
                return future.result(timeout=POLL)
            except FutureTimeout:
                pass
            if should_stop():
                return b""                     # the caller turns the stop into its error
            if time.monotonic() >= deadline:
                self.log.warning("reading the style file %s did not finish in %.0f s; its "
                                 "thread is left behind", path, self.timeout)
                raise StyleTransferError(
                    UNREADABLE, f"The style file {path} could not be read within "
                                f"{self.timeout:g} s (a device, a pipe or a stalled network "
                                "folder?); send the style as pixels or copy it to a local "
                                "disk.")

    def _run(self, path: str, future: Future) -> None:
        from backend import imageio
        try:
            future.set_result(imageio.read_file_bytes(path, self.max_bytes))
        except StyleTransferError as error:
            if error.message.startswith("Image not found"):
                error = StyleTransferError(BAD_REQUEST, f"The style file {path} does not exist "
                                                        "(as seen by the daemon).")
            future.set_exception(error)
        except BaseException as error:        # reported to the waiting worker, never lost
            future.set_exception(error)
        finally:
            self._slots.release()
