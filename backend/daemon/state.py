"""The daemon's per-user files: single-instance lock, state file and TCP token.

The lock is an OS lock on a file (fcntl / msvcrt): it dies with the process, so a crashed
daemon never blocks the next start and no stale pid can be mistaken for a live one.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from stclient import paths


class InstanceLock:
    """An exclusive, non-blocking lock on <runtime>/daemon.lock held for the daemon's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when another daemon holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform.startswith("win"):
                import msvcrt
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if sys.platform.startswith("win"):
                import msvcrt
                os.lseek(self._fd, 0, os.SEEK_SET)
                msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def write_private_file(path: Path, text: str) -> None:
    """Write atomically with mode 0600 (temp file in the same folder, then rename)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def write_state(directory: Path, state: dict[str, Any]) -> None:
    write_private_file(paths.state_path(directory), json.dumps(state, indent=2) + "\n")


def remove_state(directory: Path, pid: int) -> None:
    """Remove the state file, but only if it is still ours."""
    state = paths.read_state(directory)
    if state is not None and state.get("pid") == pid:
        try:
            paths.state_path(directory).unlink()
        except OSError:
            pass


def ensure_token(directory: Path) -> str:
    """The per-user token TCP clients must send; created once (0600), reused afterwards."""
    path = paths.token_path(directory)
    try:
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32 and (sys.platform.startswith("win") or
                                 (os.stat(path).st_mode & 0o077) == 0):
            return token
    except (OSError, UnicodeDecodeError):
        pass
    token = secrets.token_hex(32)
    write_private_file(path, token + "\n")
    return token
