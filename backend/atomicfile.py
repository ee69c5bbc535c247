"""Writing a file so that readers see the old one or the whole new one, never a part."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a uniquely named temporary file in the same folder, then rename: never a
    half file, and nothing at `path` when `write` raises (e.g. a failed checksum)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    part = Path(name)
    os.chmod(part, 0o666 & ~_umask())      # as open() would make it, not mkstemp's 0600
    try:
        write(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made in it (the way results are written:
    a temporary file, then removed), so a read-only or full destination fails before any
    compute, not after. Raises OSError with the reason."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".write-test.", suffix=".part", dir=folder)
    os.close(fd)
    os.unlink(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
