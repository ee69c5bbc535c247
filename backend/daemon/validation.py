"""Semantic checks of decoded requests, before any work is queued.

protocol.py has already checked the structure (types, frame count, byte lengths). Here: known
engine and model (installed, of that engine), option ranges, pixel limits, mask size, style
rules. Everything raises StyleTransferError with a code and a sentence that says what to do.
Returns the payload the worker runs, so the worker never re-validates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from stclient.errors import BAD_REQUEST, TOO_LARGE, UNKNOWN_MODEL, StyleTransferError
from stclient import registry
from stclient.registry import resolve_options
from stclient.protocol import BatchRequest, ImageFrame, SampleRequest, StylizeRequest

from .config import DaemonConfig
from .images import frame_to_array, mask_to_array


@dataclass
class StylizePayload:
    engine: str
    model: str
    options: dict[str, Any]
    content: np.ndarray
    styles: list[np.ndarray] = field(default_factory=list)
    style_paths: list[str] = field(default_factory=list)
    mask: Optional[np.ndarray] = None


@dataclass
class SamplePayload:
    engine: str
    model: str
    count: int
    seed: int
    options: dict[str, Any]


def check_pixels(frame: ImageFrame, what: str, config: DaemonConfig) -> None:
    pixels = frame.width * frame.height
    if pixels > config.max_pixels:
        raise StyleTransferError(
            TOO_LARGE, f"The {what} is {frame.width}x{frame.height} = {pixels:,} pixels; this "
                       f"daemon accepts at most {config.max_pixels:,} (scale it down, or restart "
                       "the daemon with a larger --max-pixels).")


def resolve_model(engine: str, model: Optional[str], config: DaemonConfig) -> str:
    """The installed model's name for `engine` (the engine's default when `model` is None)."""
    from backend.modelstore.registry import default_model, get_model
    registry.card(engine)           # an unknown engine is a bad_request naming the known ones
    if model is None:
        return default_model(engine, config.models_dir).name
    info = get_model(model, config.models_dir)
    if info.engine != engine:
        raise StyleTransferError(UNKNOWN_MODEL, f"Model {model!r} is a {info.engine} model, not "
                                                f"{engine}; pick a {engine} model or engine "
                                                f"{info.engine}.")
    return info.name


def validate_stylize(request: StylizeRequest, config: DaemonConfig) -> StylizePayload:
    engine = request.engine
    options = resolve_options(engine, request.options)
    assert request.content is not None
    check_pixels(request.content, "content image", config)
    for index, style in enumerate(request.styles):
        check_pixels(style, f"style image {index + 1}", config)
    for path in request.style_paths:
        if "\0" in path or not os.path.isabs(path):
            raise StyleTransferError(BAD_REQUEST, f"Style file paths must be absolute, not "
                                                  f"{path!r}.")
        if not os.path.isfile(path):
            raise StyleTransferError(BAD_REQUEST, f"The style file {path} does not exist (as "
                                                  "seen by the daemon).")
    registry.check_inputs(engine, len(request.styles) + len(request.style_paths),
                          request.mask is not None, options)
    model = resolve_model(engine, request.model, config)
    content = frame_to_array(request.content, "content image")
    mask = (mask_to_array(request.mask, request.content.height, request.content.width)
            if request.mask is not None else None)
    styles = [frame_to_array(style, f"style image {i + 1}")
              for i, style in enumerate(request.styles)]
    return StylizePayload(engine, model, options, content, styles, list(request.style_paths),
                          mask)


def validate_batch(request: BatchRequest, config: DaemonConfig) -> Any:
    """-> backend.batch.spec.BatchSpec, with the daemon's pixel limit applied."""
    from backend.batch.spec import BatchSpec
    spec = BatchSpec.from_json(request.spec)
    resolve_options(spec.engine, spec.options)
    if spec.model is not None or not spec.checkpoints:
        spec.model = resolve_model(spec.engine, spec.model, config)
    spec.max_pixels = min(spec.max_pixels or config.max_pixels, config.max_pixels)
    return spec


def validate_sample(request: SampleRequest, config: DaemonConfig) -> SamplePayload:
    engine = registry.sampling_engine(request.engine)
    options = resolve_options(engine, {**request.options, "seed": request.seed})
    model = resolve_model(engine, request.model, config)
    return SamplePayload(engine, model, request.count, request.seed, options)
