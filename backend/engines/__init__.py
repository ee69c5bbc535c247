"""Engine registry: job.engine name -> Engine class (see base.py for the interface).

Classes are named as "module:Class" strings and imported on first use, so listing engines costs
nothing and one engine's imports never slow down another. Adding an engine is one line here.
"""

from __future__ import annotations

import importlib

from backend.engines.base import Engine
from stclient.errors import BAD_REQUEST, StyleTransferError

ENGINE_CLASSES: dict[str, str] = {
    "adain": "backend.engines.adain:AdaINEngine",
    "cyclegan": "backend.engines.cyclegan:CycleGANEngine",
    "pix2pix": "backend.engines.pix2pix:Pix2PixEngine",
    "mixgan": "backend.engines.mixgan:MixganEngine",
}

_INSTANCES: dict[str, Engine] = {}


def engine_names() -> tuple[str, ...]:
    return tuple(ENGINE_CLASSES)


def get_engine(name: str) -> Engine:
    """The engine called `name` (bad_request naming the known ones otherwise)."""
    if name not in ENGINE_CLASSES:
        raise StyleTransferError(
            BAD_REQUEST, f"Unknown engine {name!r}; known: {', '.join(ENGINE_CLASSES)}.")
    if name not in _INSTANCES:
        module_name, class_name = ENGINE_CLASSES[name].split(":")
        _INSTANCES[name] = getattr(importlib.import_module(module_name), class_name)()
    return _INSTANCES[name]


__all__ = ["ENGINE_CLASSES", "Engine", "engine_names", "get_engine"]
