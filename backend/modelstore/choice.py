"""The model a job for `engine` uses, checked without loading anything: the Runtime asks it before
loading, the CLI before any image is read, so a wrong name or engine fails in a fraction of a
second with the same sentence everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from stclient import registry
from stclient.errors import BAD_REQUEST, StyleTransferError

from .registry import ModelInfo, default_model, get_model


def model_for(engine: str, name: Optional[str] = None,
              models_dir: Optional[Path] = None) -> Optional[ModelInfo]:
    """The installed model `name` (None: the engine's default); unknown_model, model_missing or
    bad_request (a model of another engine) otherwise. None for an engine that uses no model
    (a name given for one is a bad_request)."""
    if not registry.card(engine).takes_model:
        registry.refuse_model(engine, name)
        return None
    info = get_model(name, models_dir=models_dir) if name else \
        default_model(engine, models_dir=models_dir)
    if info.engine not in registry.model_engines(engine):
        raise StyleTransferError(
            BAD_REQUEST, f"Model {info.name!r} is a {info.engine} model, not {engine}; use "
                         f"--engine {info.engine}.")
    return info
