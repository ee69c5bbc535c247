"""Error codes shared by the daemon, the CLI, the batch runner and the plug-in."""

from __future__ import annotations

BAD_REQUEST = "bad_request"
UNKNOWN_MODEL = "unknown_model"
MODEL_MISSING = "model_missing"
BAD_CHECKPOINT = "bad_checkpoint"
BAD_IMAGE = "bad_image"
TOO_LARGE = "too_large"
CANCELLED = "cancelled"
TIMEOUT = "timeout"
UNAUTHORIZED = "unauthorized"
UNAVAILABLE = "unavailable"
BUSY = "busy"
OUT_OF_MEMORY = "out_of_memory"  # the job does not fit the memory it may use; the daemon serves on
INTERNAL = "internal"
UNREADABLE = "unreadable"      # an input file the file system will not hand over (batch)
WRITE_FAILED = "write_failed"  # an output file could not be written (disk full, permissions)

ERROR_CODES = frozenset({
    BAD_REQUEST, UNKNOWN_MODEL, MODEL_MISSING, BAD_CHECKPOINT, BAD_IMAGE, TOO_LARGE,
    CANCELLED, TIMEOUT, UNAUTHORIZED, UNAVAILABLE, BUSY, OUT_OF_MEMORY, INTERNAL, UNREADABLE,
    WRITE_FAILED,
})


class StyleTransferError(Exception):
    """An error a user can act on: a stable `code` plus a sentence saying what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code if code in ERROR_CODES else INTERNAL
        self.message = message

    def __str__(self) -> str:  # the message alone is what users read
        return self.message


class Cancelled(StyleTransferError):
    """Raised inside long work when its job was cancelled."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(CANCELLED, message)
