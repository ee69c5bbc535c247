"""Structural validation of checkpoint files before they are used or moved into place.

A file is accepted only if it loads with torch.load(weights_only=True) (so a pickle that would run
code is refused) and its keys and shapes match the architecture it is supposed to have. The loading
and the layout checks are the engines' own (backend.networks.checkpoints): one code path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from stclient.errors import BAD_CHECKPOINT, StyleTransferError

# How a weights-only refusal shows up in torch's and the engines' messages.
REFUSED_MARKERS = ("Weights only load failed", "could not be loaded safely",
                   "nothing in it was run")


def checkpoint_arch(path: Path, engine: str, role: str) -> str:
    """Load `path` safely and return the architecture its keys match (bad_checkpoint if none)."""
    from backend.networks import checkpoints

    path = Path(path)
    if not checkpoints.candidates(engine, role):   # a format its network module reads
        return _plainly(path, lambda: checkpoints.file_architecture(path, engine, role))
    state_dict = _plainly(path, lambda: checkpoints.load_state_dict(path))
    try:
        return checkpoints.detect_architecture(engine, role, state_dict)
    except StyleTransferError as error:
        raise StyleTransferError(BAD_CHECKPOINT, f"{path.name}: {error.message}") from None


def _plainly(path: Path, read):
    """Run `read()`, with a plain-language reason when weights-only loading refuses the file
    (torch's own text suggests disabling the protection, which we must never echo)."""
    try:
        return read()
    except StyleTransferError as error:
        if not any(marker in error.message for marker in REFUSED_MARKERS):
            raise
        raise _refused(path) from None


def _refused(path: Path) -> StyleTransferError:
    return StyleTransferError(
        BAD_CHECKPOINT,
        f"{path.name} is not a plain PyTorch weights file: {_refusal_detail(path)}. Nothing "
        "in it was run; use the original release file.")


def _refusal_detail(path: Path) -> str:
    """What exactly weights-only loading refused, e.g. 'unsupported GLOBAL posix.mkdir'."""
    import torch

    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        return f"it cannot be read ({error.strerror})"
    if not head.startswith((b"PK\x03\x04", b"\x80")):   # neither torch's zip nor a pickle
        return f"it is not a PyTorch checkpoint at all (it starts with {head[:12]!r})"
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the same refusal, now read in full
        text = str(error)
        match = re.search(
            r"(?i)unsupported (?:global:? )?(GLOBAL [\w.]+)|(Unsupported operand \d+)", text)
        if match and match.group(1):
            return (f"it asks to call or build {match.group(1)}, which weights-only loading "
                    "refuses")
        if match:
            return f"it is not a pickle of tensors at all ({match.group(2)})"
        return type(error).__name__
    return "refused"


def validate_checkpoint(path: Path, engine: str, role: str,
                        expected_arch: Optional[str] = None) -> str:
    """Check that `path` is a loadable `engine`/`role` checkpoint of `expected_arch` (if given).

    Returns the detected architecture; raises StyleTransferError(bad_checkpoint) saying what is
    wrong otherwise. Never executes code from the file.
    """
    arch = checkpoint_arch(Path(path), engine, role)
    if expected_arch is not None and arch != expected_arch:
        raise StyleTransferError(
            BAD_CHECKPOINT,
            f"{Path(path).name} is a {engine} {role} of architecture {arch}, but {expected_arch} "
            "was expected: it is probably a different model's file.")
    return arch


def identify_checkpoint(path: Path) -> tuple[str, str, Optional[str]]:
    """(engine, role, arch) of a checkpoint whose engine nobody declared (user models)."""
    from backend.networks import checkpoints

    path = Path(path)
    return _plainly(path, lambda: checkpoints.identify_file(path))
