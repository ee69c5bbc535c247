"""What a batch job asks for (BatchSpec) and what it did (BatchReport, ItemResult).

These travel as JSON: the CLI builds a spec, the daemon's `batch` op decodes it with
`BatchSpec.from_json` (which validates every field, because it arrives over a socket), and the
report goes back as JSON and is written by the CLI's `--report`. Standard library only.

Report JSON (BatchReport.to_json, version 1):
    {"version": 1, "spec": {...the BatchSpec...}, "started": ISO-8601 UTC, "elapsed_s": s,
     "images_per_s": written / elapsed, "cancelled": bool, "total": n, "ignored": n,
     "counts": {"ok": n, "skipped": n, "failed": n, "cancelled": n},
     "items": [{"input": "sub/a.jpg", "status": "ok|skipped|failed|cancelled",
                "output": "sub/a.jpg" | null, "code": error code | null,
                "message": text | null, "seconds": s}, ...]}     # sorted by input path
`input` / `output` are relative to INPUT_DIR / OUTPUT_DIR ('/'-separated). A failed entry may
also be a folder (a symlink loop, an unreadable folder).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Optional

from stclient.errors import BAD_REQUEST, StyleTransferError
from stclient import registry

REPORT_VERSION = 1

# --format values and the extension each one writes; "same" keeps the input's own format.
OUTPUT_FORMATS: dict[str, Optional[str]] = {
    "same": None, "png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif",
}

# ItemResult.status values.
OK = "ok"                # output written
SKIPPED = "skipped"      # output already existed (resume / --skip-existing)
FAILED = "failed"        # this input could not be stylized; `code` and `message` say why
CANCELLED = "cancelled"  # not done because the batch was cancelled first
STATUSES = (OK, SKIPPED, FAILED, CANCELLED)


_PROGRESS_TEXT = re.compile(r"^(\d+)/(\d+)(?: (.*))?$", re.DOTALL)


def progress_text(done: int, total: int, name: str) -> str:
    """The batch's progress text, "done/total name": the one format the CLI's bar parses."""
    return f"{done}/{total} {name}"


def parse_progress_text(text: str) -> Optional[tuple[int, int, str]]:
    """(done, total, name) from a batch progress text, or None for any other text."""
    match = _PROGRESS_TEXT.match(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3) or ""


def _bad(message: str) -> StyleTransferError:
    return StyleTransferError(BAD_REQUEST, message)


def check_relative_name(name: str, what: str) -> PurePosixPath:
    """A relative, '/'-separated name that cannot leave its folder; raise bad_request otherwise.

    Used for every name that arrives in a spec (explicit file lists, the report name), so a
    request can never point the daemon at `../../etc` or an absolute path.
    """
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise _bad(f"{what} must be a non-empty relative name, not {name!r}.")
    path = PurePosixPath(name)
    if path.is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        raise _bad(f"{what} must be relative to its folder, not absolute: {name!r}.")
    if any(part in ("..", ".") for part in name.split("/")) or "" in name.split("/"):
        raise _bad(f"{what} may not contain '.', '..' or empty parts: {name!r}.")
    return path


def check_report_name(name: Any) -> str:
    """The report's name: a plain `*.json` file name in OUTPUT_DIR; raise bad_request otherwise.

    No folders, no dot-files and no other extension, so a request can never make the daemon
    write `~/.bashrc`, `.profile` or a script, whatever OUTPUT_DIR is.
    """
    if not isinstance(name, str) or not name or len(name) > 255:
        raise _bad(f"The report name must be a file name such as report.json, not {name!r}.")
    if any(ch in name for ch in "/\\\0") or name.startswith(".") \
            or not name.lower().endswith(".json") or len(name) == len(".json") \
            or not name.isprintable():
        raise _bad(f"The report name must be a plain file name ending in .json, without "
                   f"folders and not starting with '.', not {name!r}.")
    return name


@dataclass
class BatchSpec:
    """One folder job. Paths are absolute: the daemon's working directory is not the user's."""

    input_dir: str
    output_dir: str
    engine: str
    model: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)   # stclient.options names -> values
    styles: list[str] = field(default_factory=list)         # AdaIN style image files (absolute)
    checkpoints: dict[str, str] = field(default_factory=dict)  # explicit files, as stylize
    recursive: bool = False
    patterns: list[str] = field(default_factory=list)       # fnmatch, case-insensitive; [] = images
    files: list[str] = field(default_factory=list)          # explicit relative names; [] = scan
    format: str = "same"                                    # a key of OUTPUT_FORMATS
    quality: int = 95                                       # JPEG / WebP quality 1..100
    overwrite: bool = False                                 # False = skip existing (resume)
    report: Optional[str] = None                            # NAME.json in output_dir
    max_pixels: Optional[int] = None                        # per-image limit; None = imageio's
    device: str = "auto"                                    # only used by --in-process

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "BatchSpec":
        """Build and validate a spec from decoded JSON; every problem is a bad_request."""
        if not isinstance(data, dict):
            raise _bad("A batch spec must be a JSON object.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise _bad(f"Unknown batch field(s): {', '.join(unknown)}.")
        missing = [name for name in ("input_dir", "output_dir", "engine") if name not in data]
        if missing:
            raise _bad(f"Missing batch field(s): {', '.join(missing)}.")
        spec = cls(**data)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Check types and values (not the file system: that is scan.py's job)."""
        for name in ("input_dir", "output_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\0" in value:
                raise _bad(f"{name} must be a folder path.")
            if not os.path.isabs(value):
                raise _bad(f"{name} must be an absolute path, not {value!r}.")
        if self.engine not in registry.engine_names():
            raise _bad(f"Unknown engine {self.engine!r}; choose one of "
                       f"{', '.join(registry.engine_names())}.")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise _bad("model must be a model name.")
        if not isinstance(self.options, dict) or not all(isinstance(k, str) for k in self.options):
            raise _bad("options must be an object of option names to values.")
        _check_str_list(self.styles, "styles")
        for style in self.styles:
            if not os.path.isabs(style):
                raise _bad(f"Style image paths must be absolute, not {style!r}.")
        if not isinstance(self.checkpoints, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and os.path.isabs(v)
                for k, v in self.checkpoints.items()):
            raise _bad("checkpoints must map roles to absolute file paths.")
        for name in ("recursive", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(f"{name} must be true or false.")
        _check_str_list(self.patterns, "patterns")
        for pattern in self.patterns:
            check_relative_name(pattern, "A pattern")
        _check_str_list(self.files, "files")
        for name in self.files:
            check_relative_name(name, "A file name")
        if self.format not in OUTPUT_FORMATS:
            raise _bad(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {self.format!r}.")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) \
                or not 1 <= self.quality <= 100:
            raise _bad(f"quality must be a whole number from 1 to 100, not {self.quality!r}.")
        if self.report is not None:
            check_report_name(self.report)
        if self.max_pixels is not None and (
                isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int)
                or self.max_pixels < 1):
            raise _bad("max_pixels must be a positive whole number.")
        if not isinstance(self.device, str) or not self.device:
            raise _bad("device must be a device name such as auto, cpu or cuda.")


def _check_str_list(value: Any, name: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(f"{name} must be a list of non-empty strings.")


@dataclass
class ItemResult:
    """What happened to one input. Paths are relative to the input and output folders."""

    input: str
    status: str
    output: Optional[str] = None
    code: Optional[str] = None       # stclient.errors code when status is failed
    message: Optional[str] = None
    seconds: float = 0.0             # compute + I/O time attributed to this image

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ItemResult":
        return cls(**data)


@dataclass
class BatchReport:
    """The whole batch: every input's result plus totals (what the JSON report holds)."""

    spec: BatchSpec
    items: list[ItemResult] = field(default_factory=list)
    cancelled: bool = False
    elapsed_s: float = 0.0           # wall time of the whole run
    started: str = ""                # ISO-8601 UTC
    ignored: int = 0                 # files that matched no pattern (or hidden) and were left alone

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def failures(self) -> list[ItemResult]:
        return [item for item in self.items if item.status == FAILED]

    @property
    def images_per_s(self) -> float:
        done = self.count(OK)
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def exit_status(self) -> int:
        """0 when everything asked for is done, 1 when something failed or was left undone."""
        return 0 if not self.failures and not self.count(CANCELLED) else 1

    def to_json(self) -> dict[str, Any]:
        rate = self.images_per_s
        return {
            "version": REPORT_VERSION,
            "spec": self.spec.to_json(),
            "started": self.started,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(rate, 4) if math.isfinite(rate) else 0.0,
            "cancelled": self.cancelled,
            "total": len(self.items),
            "counts": {status: self.count(status) for status in STATUSES},
            "ignored": self.ignored,
            "items": [item.to_json() for item in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BatchReport":
        """Rebuild a report received from the daemon (trusted: it is the daemon's own output)."""
        return cls(
            spec=BatchSpec(**data["spec"]),
            items=[ItemResult.from_json(item) for item in data.get("items", [])],
            cancelled=bool(data.get("cancelled", False)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            started=str(data.get("started", "")),
            ignored=int(data.get("ignored", 0)),
        )
