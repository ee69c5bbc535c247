"""One image of a batch: read, stylize, write, each failure turned into that image's ItemResult.

The one copy of the per-image rules, shared by the local pipeline (runner.py runs the three
steps on different threads) and the Ray workers (ray_worker.py runs them for one image per call).
Rules kept here:
- a file that cannot be opened, decoded or is too large is `failed` with its error code;
- an error that would hit every image alike (FATAL_CODES: unknown or missing model, bad
  checkpoint) is raised, so the whole batch stops instead of failing each file;
- any other error of the network (out of memory, a bug) fails this image only;
- the output is written atomically by imageio.write_image (temp file + rename), into a folder
  output_target checked to be inside OUTPUT_DIR; a write problem is `failed` / write_failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from stclient.errors import (BAD_CHECKPOINT, INTERNAL, MODEL_MISSING, OUT_OF_MEMORY,
                             UNKNOWN_MODEL, UNREADABLE, WRITE_FAILED, Cancelled,
                             StyleTransferError)

from backend.engines.job import CancelledFn, ProgressFn, StylizeJob, never_cancelled, no_progress

from . import scan as scanning
from .spec import FAILED, OK, BatchSpec, ItemResult

# Errors that would hit every image alike: stop the batch instead of failing each file.
FATAL_CODES = frozenset({UNKNOWN_MODEL, MODEL_MISSING, BAD_CHECKPOINT})


@dataclass
class PlannedItem:
    """An input that is to be stylized and the checked path its output goes to."""

    item: scanning.BatchItem
    target: Path

    @property
    def rel(self) -> str:
        return self.item.rel.as_posix()


@dataclass
class LoadedInput:
    """The outcome of the read step: the decoded image, or the item's failure."""

    image: Any = None                 # imageio.LoadedImage
    error: Optional[ItemResult] = None
    seconds: float = 0.0


@dataclass
class JobTemplate:
    """Everything of a StylizeJob except the content: built once per batch (or per worker)."""

    spec: BatchSpec
    options: dict[str, Any]
    styles: list[Any]                 # style pixels, read once

    def make(self, pixels: Any) -> StylizeJob:
        return StylizeJob(engine=self.spec.engine, content=pixels, model=self.spec.model,
                          styles=list(self.styles), options=dict(self.options),
                          checkpoints=dict(self.spec.checkpoints))


class ImageSteps:
    """The three steps of one image for one batch (its spec, roots and job template)."""

    def __init__(self, spec: BatchSpec, imageio: Any, job: JobTemplate, output_root: Path,
                 input_root: Path) -> None:
        self.spec, self.imageio, self.job = spec, imageio, job
        self.output_root, self.input_root = output_root, input_root

    def read(self, planned: PlannedItem) -> LoadedInput:
        start = time.monotonic()
        why = scanning.check_readable(planned.item.source)
        if why is not None:
            return LoadedInput(error=self.failed(planned, UNREADABLE, why))
        try:
            image = read_image(self.imageio, planned.item.source, self.spec.max_pixels)
        except StyleTransferError as error:
            return LoadedInput(error=self.failed(planned, error.code, error.message))
        except OSError as error:
            return LoadedInput(error=self.failed(planned, UNREADABLE,
                                                 f"Cannot read it: {error.strerror or error}."))
        except Exception as error:
            return LoadedInput(error=self.failed(planned, *unexpected(error)))
        return LoadedInput(image=image, seconds=time.monotonic() - start)

    def stylize(self, runtime: Any, planned: PlannedItem, loaded: LoadedInput,
                progress: ProgressFn = no_progress,
                cancelled: CancelledFn = never_cancelled) -> tuple[ItemResult, Any]:
        """(result, pixels): an `ok` result to be written, or a `failed` one and None.

        Raises Cancelled (from the Runtime) and the FATAL_CODES errors.
        """
        start = time.monotonic()
        try:
            pixels = runtime.stylize(self.job.make(loaded.image.pixels), progress=progress,
                                     cancelled=cancelled)
        except Cancelled:
            raise
        except StyleTransferError as error:
            if error.code in FATAL_CODES:
                raise
            return self.failed(planned, error.code, error.message), None
        except Exception as error:   # out of memory, a bug: this image, not the batch
            return self.failed(planned, *unexpected(error)), None
        seconds = loaded.seconds + time.monotonic() - start
        return ItemResult(planned.rel, OK, planned.item.output_rel.as_posix(),
                          seconds=seconds), pixels

    def write(self, result: ItemResult, planned: PlannedItem, pixels: Any,
              loaded: LoadedInput) -> None:
        """Write atomically; adds the time to `result`, or turns it into the write failure."""
        try:
            result.seconds += self._write(planned, pixels, loaded.image)
        except StyleTransferError as error:
            result.status, result.code, result.message = FAILED, error.code, error.message
        except OSError as error:
            result.status, result.code = FAILED, WRITE_FAILED
            result.message = f"Cannot write {result.output}: {error.strerror or error}."
        except Exception as error:
            result.status, result.code = FAILED, WRITE_FAILED
            result.message = f"Cannot write {result.output}: {type(error).__name__}: {error}"

    def process(self, runtime: Any, planned: PlannedItem,
                cancelled: CancelledFn = never_cancelled) -> ItemResult:
        """All three steps one after the other (a Ray worker's call)."""
        loaded = self.read(planned)
        if loaded.error is not None:
            return loaded.error
        result, pixels = self.stylize(runtime, planned, loaded, cancelled=cancelled)
        if pixels is not None:
            self.write(result, planned, pixels, loaded)
        return result

    def _write(self, planned: PlannedItem, pixels: Any, loaded: Any) -> float:
        """Encode and write atomically; every failure here is a write_failed for this file,
        except a refused target (bad_request from output_target)."""
        start = time.monotonic()
        target = scanning.output_target(self.output_root, self.input_root, planned.item,
                                        create=True)
        try:
            self.imageio.write_image(
                target, pixels, icc_profile=loaded.icc_profile, exif=loaded.exif,
                quality=self.spec.quality,
                format=self.imageio.FORMATS_BY_EXTENSION[planned.item.output_rel.suffix.lower()])
        except StyleTransferError as error:
            raise StyleTransferError(WRITE_FAILED, error.message) from None
        except OSError as error:
            raise StyleTransferError(WRITE_FAILED, f"Cannot write {target}: "
                                                   f"{error.strerror or error}.") from None
        return time.monotonic() - start

    @staticmethod
    def failed(planned: PlannedItem, code: str, message: str) -> ItemResult:
        return ItemResult(planned.rel, FAILED, planned.item.output_rel.as_posix(), code, message)


def read_image(imageio: Any, path: Path, max_pixels: Optional[int]) -> Any:
    """imageio.read_image with the batch's pixel limit (None: imageio's own default)."""
    if max_pixels is None:
        return imageio.read_image(path)
    return imageio.read_image(path, max_pixels)


__all__ = ["FATAL_CODES", "ImageSteps", "JobTemplate", "LoadedInput", "PlannedItem",
           "read_image"]


def unexpected(error: Exception) -> tuple[str, str]:
    """(code, message) for an error no step expected: out_of_memory when an allocation failed
    (the batch goes on with the next image), else internal (a bug)."""
    from backend.perf.budget import is_out_of_memory
    if is_out_of_memory(error):
        return OUT_OF_MEMORY, (f"Not enough memory for this image ({type(error).__name__}); "
                               "use a smaller working_size.")
    return INTERNAL, f"{type(error).__name__}: {error}"
