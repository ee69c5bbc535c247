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

from stclient import registry
from stclient.errors import BAD_REQUEST, TOO_LARGE, UNKNOWN_MODEL, StyleTransferError
from stclient.protocol import (BatchRequest, EstimateRequest, ImageFrame, SampleRequest,
                               StylizeRequest)
from stclient.registry import resolve_options

from . import sizes
from .config import DaemonConfig
from .filepolicy import FilePolicy
from .images import frame_to_array, mask_to_array
from .security import OWNER, Peer

LOCAL = Peer(OWNER, True)


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
class EstimatePayload:
    engine: str
    model: str
    options: dict[str, Any]
    shape: tuple[int, int]
    styles: int
    mask: bool


@dataclass
class BatchPayload:
    spec: Any                                  # backend.batch.spec.BatchSpec
    confine: tuple[Any, ...] = ()              # a remote batch reads only below these roots


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
    """The installed model's name for `engine` (the engine's default when `model` is None; ""
    for an engine that uses no model)."""
    from backend.modelstore.registry import default_model, get_model
    if not registry.card(engine).takes_model:   # (an unknown engine: bad_request naming them)
        registry.refuse_model(engine, model)
        return ""
    if model is None:
        return default_model(engine, config.models_dir).name
    info = get_model(model, config.models_dir)
    if info.engine not in registry.model_engines(engine):
        raise StyleTransferError(UNKNOWN_MODEL, f"Model {model!r} is a {info.engine} model, not "
                                                f"{engine}; pick a {engine} model or engine "
                                                f"{info.engine}.")
    return info.name


def validate_stylize(request: StylizeRequest, config: DaemonConfig, peer: Peer = LOCAL,
                     policy: FilePolicy = FilePolicy()) -> StylizePayload:
    engine = request.engine
    options = resolve_options(engine, request.options)
    assert request.content is not None
    check_pixels(request.content, "content image", config)
    for index, style in enumerate(request.styles):
        check_pixels(style, f"style image {index + 1}", config)
    check_stylize_sizes(engine, options, (request.content.height, request.content.width),
                        [(style.height, style.width) for style in request.styles], config)
    style_paths = []
    for index, path in enumerate(request.style_paths):
        if "\0" in path or not os.path.isabs(path):
            raise StyleTransferError(BAD_REQUEST, f"Style file paths must be absolute, not "
                                                  f"{path!r}.")
        # not even a stat here: the server thread must never wait for a file system; the
        # worker's StyleFileReader checks and reads the file, with a timeout
        style_paths.append(policy.allowed(path, f"style file {index + 1}", peer))
    registry.check_inputs(engine, len(request.styles) + len(request.style_paths),
                          request.mask is not None, options)
    model = resolve_model(engine, request.model, config)
    content = frame_to_array(request.content, "content image")
    mask = (mask_to_array(request.mask, request.content.height, request.content.width)
            if request.mask is not None else None)
    styles = [frame_to_array(style, f"style image {i + 1}")
              for i, style in enumerate(request.styles)]
    return StylizePayload(engine, model, options, content, styles, style_paths, mask)


def check_stylize_sizes(engine: str, options: dict[str, Any], content: tuple[int, int],
                        styles: list[tuple[int, int]], config: DaemonConfig) -> None:
    """Pixel limit and memory for every image of a stylize job at every size it gets (the
    worker calls this again once it has read the style files)."""
    images = sizes.job_images(engine, options, sizes.stylize_images(content, styles))
    sizes.check_sizes(images, config.max_pixels, config.max_job_memory,
                      tensors=sizes.whole_image_tensors(engine, options))


def validate_batch(request: BatchRequest, config: DaemonConfig, peer: Peer = LOCAL,
                   policy: FilePolicy = FilePolicy()) -> BatchPayload:
    """The spec with the daemon's pixel limit applied; a remote peer's paths resolved and
    confined to --allow-dir."""
    from backend.batch.spec import BatchSpec
    spec = BatchSpec.from_json(request.spec)
    spec.input_dir = policy.allowed(spec.input_dir, "INPUT_DIR", peer)
    spec.output_dir = policy.allowed(spec.output_dir, "OUTPUT_DIR", peer)
    spec.styles = [policy.allowed(path, f"style image {index + 1}", peer)
                   for index, path in enumerate(spec.styles)]
    spec.checkpoints = {role: policy.allowed(path, f"the {role} checkpoint", peer)
                        for role, path in spec.checkpoints.items()}
    options = resolve_options(spec.engine, spec.options)
    sizes.check_sizes(sizes.job_images(spec.engine, options, sizes.square("batch image")),
                      config.max_pixels, config.max_job_memory)
    if spec.model is not None or not spec.checkpoints:
        spec.model = resolve_model(spec.engine, spec.model, config) or None
    spec.max_pixels = min(spec.max_pixels or config.max_pixels, config.max_pixels)
    return BatchPayload(spec, () if peer.local else policy.allow_dirs)


def validate_sample(request: SampleRequest, config: DaemonConfig) -> SamplePayload:
    engine = registry.sampling_engine(request.engine)
    options = resolve_options(engine, {**request.options, "seed": request.seed})
    sizes.check_sizes(sizes.job_images(engine, options, sizes.square("sample")),
                      config.max_pixels, config.max_job_memory, count=request.count)
    model = resolve_model(engine, request.model, config)
    return SamplePayload(engine, model, request.count, request.seed, options)


def validate_estimate(request: EstimateRequest, config: DaemonConfig) -> EstimatePayload:
    """An engine that estimates (its card says so), a size the daemon would take, the card's
    style rules, an installed model."""
    card = registry.card(request.engine)
    if not card.estimates:
        raise StyleTransferError(BAD_REQUEST, f"The {card.title} engine gives no run-time "
                                              "estimate.")
    options = resolve_options(request.engine, request.options)
    if request.width * request.height > config.max_pixels:
        raise StyleTransferError(TOO_LARGE, f"A {request.width}x{request.height} image is over "
                                            f"this daemon's {config.max_pixels:,} pixels.")
    check_stylize_sizes(request.engine, options, (request.height, request.width), [], config)
    registry.check_inputs(request.engine, request.styles, request.mask, options)
    model = resolve_model(request.engine, request.model, config)
    return EstimatePayload(request.engine, model, options, (request.height, request.width),
                           request.styles, request.mask)
