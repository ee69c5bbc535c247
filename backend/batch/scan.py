"""Find a batch's inputs and plan its outputs without ever leaving OUTPUT_DIR.

Everything that decides *which* files are read and *where* results go lives here, so the safety
rules are in one place:
- INPUT_DIR must be a folder; OUTPUT_DIR may not be INPUT_DIR, nor inside it when the scan is
  recursive (outputs would be read back as inputs and could replace them).
- Folders are walked with symlinks followed, but a link back to one of its own ancestors (a loop)
  is reported and not entered. Hidden names (".*") are left alone.
- Output names come from input names (never from the request directly); explicit names in a spec
  are relative, without "..". Every output folder is checked component by component: a symlinked
  folder that resolves outside OUTPUT_DIR is refused, and no output may be an input file.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from stclient.errors import BAD_REQUEST, UNAUTHORIZED, UNREADABLE, WRITE_FAILED, StyleTransferError

from backend.imageio import FORMATS_BY_EXTENSION, IMAGE_EXTENSIONS

from .spec import FAILED, OUTPUT_FORMATS, BatchSpec, ItemResult, check_relative_name

# A scan picks up imageio.IMAGE_EXTENSIONS when no --pattern is given (case-insensitively).
# Outputs keep their extension when write_image can produce it; others (e.g. .bmp with
# --format same) are written as PNG.
WRITABLE_EXTENSIONS = frozenset(FORMATS_BY_EXTENSION)
FALLBACK_EXTENSION = ".png"

_CASE_INSENSITIVE_FS = sys.platform in ("darwin", "win32")


@dataclass
class BatchItem:
    """One input file and where its result goes (both relative names are '/'-separated)."""

    rel: PurePosixPath
    source: Path
    output_rel: PurePosixPath


@dataclass
class ScanResult:
    input_root: Path                  # real (symlink-free) path of INPUT_DIR
    output_root: Path                 # real path of OUTPUT_DIR (it may not exist yet)
    items: list[BatchItem] = field(default_factory=list)
    problems: list[ItemResult] = field(default_factory=list)   # loops, unreadable folders, clashes
    ignored: int = 0


def is_within(path: Path, root: Path) -> bool:
    """True when `path` is `root` or below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_roots(spec: BatchSpec) -> tuple[Path, Path]:
    """Check INPUT_DIR / OUTPUT_DIR against each other; raise bad_request on a refused pair."""
    input_dir = Path(spec.input_dir)
    if not input_dir.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"INPUT_DIR {spec.input_dir} is not a folder.")
    input_root = input_dir.resolve()
    output_root = Path(spec.output_dir).resolve()   # follows any existing symlinked prefix
    if output_root.exists() and not output_root.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"OUTPUT_DIR {spec.output_dir} is not a folder.")
    if output_root == input_root:
        raise StyleTransferError(
            BAD_REQUEST, f"OUTPUT_DIR is the same folder as INPUT_DIR ({input_root}); results "
            "would replace the originals. Choose another output folder.")
    if spec.recursive and is_within(output_root, input_root):
        raise StyleTransferError(
            BAD_REQUEST, f"OUTPUT_DIR {output_root} is inside INPUT_DIR {input_root} and the scan "
            "is recursive: outputs would be read back as inputs and could replace them. Choose an "
            "output folder outside the input folder.")
    return input_root, output_root


def output_name(rel: PurePosixPath, fmt: str) -> PurePosixPath:
    """The output's relative name: same folders and stem, extension from --format.

    With --format same the input's name is kept when its format can be written, else the
    result is a PNG (e.g. photo.bmp -> photo.png).
    """
    extension = OUTPUT_FORMATS[fmt]
    if extension is None:
        if rel.suffix.lower() in WRITABLE_EXTENSIONS:
            return rel
        extension = FALLBACK_EXTENSION
    return rel.with_name(rel.stem + extension) if rel.suffix else rel.with_name(rel.name + extension)


def _matches(rel: PurePosixPath, patterns: list[str]) -> bool:
    if not patterns:
        return rel.suffix.lower() in IMAGE_EXTENSIONS
    for pattern in patterns:
        subject = rel.as_posix() if "/" in pattern else rel.name
        if fnmatch.fnmatchcase(subject.lower(), pattern.lower()):
            return True
    return False


def _problem(rel: str, code: str, message: str) -> ItemResult:
    return ItemResult(input=rel, status=FAILED, code=code, message=message)


_OUTSIDE = "A link to outside the folders this daemon lets remote clients use; not followed."


def _outside(path: str | Path, confine: tuple[Path, ...]) -> bool:
    """With `confine` (a remote client's --allow-dir roots): True when the real path leaves them."""
    if not confine:
        return False
    real = Path(os.path.realpath(path))
    return not any(real == root or root in real.parents for root in confine)


def scan(spec: BatchSpec, input_root: Path, output_root: Path,
         confine: tuple[Path, ...] = ()) -> ScanResult:
    """List the inputs (sorted) with their output names; nothing is read or written. With
    `confine`, links that lead outside those roots are reported, never followed."""
    result = ScanResult(input_root=input_root, output_root=output_root)
    if spec.files:
        rels = [check_relative_name(name, "A file name") for name in spec.files]
    else:
        rels = _walk(spec, input_root, result, confine)
    seen: dict[str, PurePosixPath] = {}
    for rel in sorted(set(rels), key=lambda p: p.parts):
        if _outside(input_root.joinpath(*rel.parts), confine):
            result.problems.append(_problem(rel.as_posix(), UNAUTHORIZED, _OUTSIDE))
            continue
        out_rel = output_name(rel, spec.format)
        key = out_rel.as_posix().casefold() if _CASE_INSENSITIVE_FS else out_rel.as_posix()
        if key in seen:
            result.problems.append(_problem(
                rel.as_posix(), BAD_REQUEST,
                f"Its output {out_rel} would also be the output of {seen[key]}; rename one of "
                "them" + (" or use --format same." if spec.format != "same" else ".")))
            continue
        seen[key] = rel
        result.items.append(BatchItem(rel=rel, source=input_root.joinpath(*rel.parts),
                                      output_rel=out_rel))
    return result


def _walk(spec: BatchSpec, input_root: Path, result: ScanResult,
          confine: tuple[Path, ...] = ()) -> list[PurePosixPath]:
    """Depth-first walk; follows folder symlinks but never into one of its own ancestors."""
    found: list[PurePosixPath] = []
    root_stat = os.stat(input_root)
    stack = [(input_root, PurePosixPath(), frozenset({(root_stat.st_dev, root_stat.st_ino)}))]
    while stack:
        folder, rel_folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as iterator:
                entries = sorted(iterator, key=lambda e: e.name)
        except OSError as error:
            result.problems.append(_problem(
                rel_folder.as_posix() or ".", UNREADABLE,
                f"Cannot list this folder: {error.strerror or error}."))
            continue
        for entry in entries:
            rel = rel_folder / entry.name
            if entry.name.startswith("."):
                result.ignored += 1
                continue
            try:
                is_dir = entry.is_dir()           # follows symlinks
            except OSError:
                is_dir = False                    # e.g. a link to itself: read step reports it
            if is_dir:
                if not spec.recursive:
                    continue
                if entry.is_symlink() and _outside(entry.path, confine):
                    result.problems.append(_problem(rel.as_posix(), UNAUTHORIZED, _OUTSIDE))
                    continue
                try:
                    info = os.stat(entry.path)
                except OSError as error:
                    result.problems.append(_problem(
                        rel.as_posix(), UNREADABLE, f"Cannot open this folder: {error.strerror}."))
                    continue
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    result.problems.append(_problem(
                        rel.as_posix(), UNREADABLE,
                        "Symlink loop: this folder link points back to a folder that contains "
                        "it; not followed."))
                    continue
                stack.append((Path(entry.path), rel, ancestors | {key}))
                continue
            if _matches(rel, spec.patterns):
                found.append(rel)
            else:
                result.ignored += 1
    return found


def check_readable(source: Path) -> Optional[str]:
    """Why `source` cannot be read as a file (None when it can), without blocking on a FIFO."""
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "Symlink loop: this name is a link that never reaches a file."
        return f"Cannot open it: {error.strerror or error}."
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if stat.S_ISDIR(mode):
        return "It is a folder, not an image file."
    if not stat.S_ISREG(mode):
        return "It is not a regular file (a pipe, socket or device); not read."
    return None


def output_target(output_root: Path, input_root: Path, item: BatchItem,
                  create: bool = False) -> Path:
    """The absolute output path for `item`, checked to stay inside OUTPUT_DIR.

    Walks the output folders one component at a time: an existing component must be a folder
    whose real path is still inside OUTPUT_DIR (so a symlinked sub-folder pointing elsewhere is
    refused); with `create`, missing folders are made. The file itself may not be an input.
    Raises bad_request when the target is refused.
    """
    def refuse(why: str) -> StyleTransferError:
        return StyleTransferError(BAD_REQUEST, f"Refusing to write {item.output_rel}: {why}")

    folder = output_root
    for part in item.output_rel.parts[:-1]:
        candidate = folder / part
        if os.path.lexists(candidate):
            real = candidate.resolve()
            if not is_within(real, output_root):
                raise refuse(f"the folder {part} is a link to {real}, outside OUTPUT_DIR.")
            if not real.is_dir():
                raise refuse(f"{candidate} exists and is not a folder.")
            folder = real
        elif create:
            try:
                candidate.mkdir(exist_ok=True)
            except OSError as error:
                raise StyleTransferError(
                    WRITE_FAILED, f"Cannot create the folder {candidate}: "
                    f"{error.strerror or error}.") from None
            folder = candidate.resolve()
            if not is_within(folder, output_root):   # replaced by a link while we worked
                raise refuse(f"the folder {part} now points outside OUTPUT_DIR.")
        else:
            folder = candidate                        # made later, when the image is written
    target = folder / item.output_rel.name
    if is_within(target, input_root) and not is_within(output_root, input_root):
        raise refuse("it would be written into INPUT_DIR.")
    if os.path.lexists(target):
        if os.path.isdir(target):
            raise refuse("a folder of that name is in the way.")
        try:
            if os.path.exists(target) and os.path.samefile(target, item.source):
                raise refuse("it is the input file itself.")
        except OSError:
            pass
    return target

