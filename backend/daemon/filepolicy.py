"""Which file paths a request may name: local clients any, remote clients only below --allow-dir.

A remote (CURVE, non-loopback) client is someone on another machine: it sends pixels, and the
daemon's files are none of its business. Paths it names (style files, batch folders, checkpoint
files) are refused unless the daemon's owner gave `serve --allow-dir DIR` roots, and then only
paths whose real location (symlinks resolved) is beneath one of them; the resolved path is what
the daemon then uses. Nothing here touches a file before the path is known to be allowed, so a
refusal says nothing about whether the file exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from stclient.errors import BAD_REQUEST, UNAUTHORIZED, StyleTransferError

from .security import Peer


@dataclass(frozen=True)
class FilePolicy:
    allow_dirs: tuple[Path, ...] = ()      # real paths of the --allow-dir roots

    @classmethod
    def from_dirs(cls, dirs: Iterable[os.PathLike | str]) -> "FilePolicy":
        roots = []
        for directory in dirs:
            real = Path(os.path.realpath(directory))
            if not real.is_dir():
                raise StyleTransferError(BAD_REQUEST, f"--allow-dir {directory} is not a folder.")
            roots.append(real)
        return cls(tuple(roots))

    def allowed(self, path: str, what: str, peer: Peer) -> str:
        """The path the daemon may use for `peer`, or unauthorized."""
        if peer.local:
            return path
        if not self.allow_dirs:
            raise StyleTransferError(
                UNAUTHORIZED, f"Remote clients send pixels, not file paths ({what}). To let them "
                              "use folders on the daemon's machine, its owner starts it with "
                              "`serve --allow-dir DIR`.")
        real = os.path.realpath(path)
        if not self.contains(real):
            raise StyleTransferError(
                UNAUTHORIZED, f"{what} is outside the folders this daemon lets remote clients "
                              "use (serve --allow-dir).")
        return real

    def contains(self, real: str | Path) -> bool:
        real = Path(real)
        return any(real == root or root in real.parents for root in self.allow_dirs)
