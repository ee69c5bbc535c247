"""HTTP(S) downloads with resume, retries and a progress bar, using only urllib.

A download goes to a `.part` file next to its destination. When the connection drops, the next
attempt asks for the rest with an HTTP Range header, so a 500 MB file interrupted at 90% costs 10%.
Moving the finished file into place (after checks) is the caller's job.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Optional

from backend import __version__
from stclient.errors import UNAVAILABLE, StyleTransferError

CHUNK = 1 << 20
MAX_BYTES = 4 << 30          # nothing we download is anywhere near this: refuse runaway bodies
USER_AGENT = f"style-transfer-gimp/{__version__} (+urllib)"


class DownloadError(StyleTransferError):
    """A download that did not complete. `offline` is True when the host was not reachable at all
    (no DNS, connection refused, no route): the caller then explains how to fetch files by hand.
    `not_found` is True for HTTP 404/410 (worth trying another source)."""

    def __init__(self, message: str, offline: bool = False, not_found: bool = False) -> None:
        super().__init__(UNAVAILABLE, message)
        self.offline = offline
        self.not_found = not_found


@dataclass
class RetryPolicy:
    attempts: int = 4          # tries in total, each resuming where the last one stopped
    backoff: float = 1.0       # seconds before the 2nd try; doubles each time
    timeout: float = 30.0      # seconds of socket silence before a try is abandoned


class ProgressBar:
    """A one-line bar on stderr when it is a terminal; a start and an end line otherwise."""

    def __init__(self, label: str, total: Optional[int], stream: Optional[IO[str]] = None,
                 enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.done = 0
        if enabled and not self.tty:
            size = f" ({_megabytes(total)})" if total else ""
            print(f"  downloading {label}{size} ...", file=self.stream, flush=True)

    def update(self, done: int, total: Optional[int] = None) -> None:
        self.done = done
        if total:
            self.total = total
        now = time.monotonic()
        if self.tty and (now - self.last_draw > 0.1 or done == self.total):
            self.last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * 30)
            bar = "#" * filled + "." * (30 - filled)
            text = (f"\r  {self.label} [{bar}] {fraction:4.0%} {_megabytes(self.done)}/"
                    f"{_megabytes(self.total)} {_megabytes(rate)}/s")
        else:
            text = f"\r  {self.label} {_megabytes(self.done)} {_megabytes(rate)}/s"
        self.stream.write(text)
        self.stream.flush()

    def finish(self, message: str = "done") -> None:
        if not self.enabled:
            return
        if self.tty:
            self._draw(time.monotonic())
            self.stream.write(f"  {message}\n")
        else:
            print(f"  {self.label}: {message} ({_megabytes(self.done)})", file=self.stream,
                  flush=True)


def _megabytes(count: Optional[float]) -> str:
    return f"{(count or 0) / 1e6:.1f} MB"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_offline(error: BaseException) -> bool:
    """True for errors that mean 'this host cannot be reached now', where retrying is pointless."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.gaierror):
        return True
    if isinstance(reason, ConnectionRefusedError):
        return True
    return isinstance(reason, OSError) and reason.errno in (
        errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.EADDRNOTAVAIL)


def _content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def fetch_url(url: str, part: Path, *, label: Optional[str] = None,
              policy: Optional[RetryPolicy] = None, progress: bool = True,
              sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download `url` into `part`, resuming what is already there. Returns `part` when complete.

    Raises DownloadError when every attempt failed; the partial file stays for the next run
    (resume), except when the server says it cannot continue it.
    """
    policy = policy or RetryPolicy()
    label = label or url.rsplit("/", 1)[-1]
    part.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        try:
            if _attempt(url, part, label, policy.timeout, progress):
                return part
            last_error = "the connection closed before the whole file arrived"
        except urllib.error.HTTPError as error:
            if error.code in (404, 410):
                raise DownloadError(f"{url} was not found (HTTP {error.code}).",
                                    not_found=True) from None
            if error.code == 416:   # our .part is longer than the file: start again
                part.unlink(missing_ok=True)
                last_error = "the server could not continue the partial download"
            elif error.code in (429,) or error.code >= 500:
                last_error = f"HTTP {error.code} {error.reason}"
            else:
                raise DownloadError(f"{url} was refused (HTTP {error.code} {error.reason}).") \
                    from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            if _is_offline(error):
                raise DownloadError(
                    f"{url} cannot be reached ({getattr(error, 'reason', error)}).",
                    offline=True) from None
            last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        if attempt < policy.attempts:
            have = part.stat().st_size if part.exists() else 0
            print(f"  {label}: {last_error}; retrying (attempt {attempt + 1} of "
                  f"{policy.attempts}, resuming at {_megabytes(have)})", file=sys.stderr,
                  flush=True)
            sleep(policy.backoff * (2 ** (attempt - 1)))
    timed_out = "timed out" in last_error.lower()
    raise DownloadError(f"Downloading {url} failed after {policy.attempts} attempts: {last_error}.",
                        offline=timed_out)


def _attempt(url: str, part: Path, label: str, timeout: float, progress: bool) -> bool:
    """One request. True when the file is complete; False when the body was cut short."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                                   "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == have:       # we already have every byte
                return True
        raise
    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:       # not the continuation we asked for: start over
                part.unlink(missing_ok=True)
                return False
            mode = "ab"
        else:                       # 200: the server ignored Range and sends everything
            have, mode = 0, "wb"
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > MAX_BYTES:
            raise DownloadError(f"{url} is {_megabytes(total)}, larger than any model file; "
                                "refusing to download it.")
        bar = ProgressBar(label, total, enabled=progress)
        done = have
        with open(part, mode) as handle:
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.IncompleteRead, ConnectionError, socket.timeout):
                    handle.flush()
                    bar.update(done)
                    return False
                if not block:
                    break
                handle.write(block)
                done += len(block)
                if done > MAX_BYTES:
                    raise DownloadError(f"{url} sent more than {_megabytes(MAX_BYTES)}; stopped.")
                bar.update(done, total)
        if total is not None and done < total:
            return False
        bar.finish()
        return True


def copy_local(source: Path, part: Path) -> Path:
    """Take a file from a local mirror folder (same contract as fetch_url)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, part)
    return part
