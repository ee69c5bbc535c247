"""Hostile inputs for the hardening tests, each leaving a marker file if it ever gets its way.

    eps_bytes()                          an EPS file (Pillow would render it with Ghostscript)
    fake_ghostscript(folder, marker)     a `gs` that only creates `marker`; put folder on PATH
    pickle_checkpoint(path, marker)      a .pth whose unpickling would create `marker`
The tests assert that the marker never appears: the program never ran the thing at all.
"""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")


def eps_bytes() -> bytes:
    return EPS


def fake_ghostscript(folder: Path, marker: Path) -> Path:
    """A folder holding an executable `gs` that creates `marker` (and fails, as no image)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def path_with(folder: Path) -> str:
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


class _Touch:
    """Unpickling this calls os.system('touch MARKER')."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def pickle_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint-named file that is a pickle with a code-running object inside."""
    path.write_bytes(pickle.dumps({"state_dict": _Touch(marker)}))
    return path
