"""Engine implementations, one module per card: `backend/engines/<name>.py` defines `ENGINE`
(an Engine subclass) for the card `stclient/cards/<name>.py`.

Modules are imported on first use, so listing engines costs nothing and one engine's imports
never slow down another. The card, not this package, says which engines exist.
"""

from __future__ import annotations

import importlib

from backend.engines.base import Engine
from stclient import registry

_INSTANCES: dict[str, Engine] = {}


def get_engine(name: str) -> Engine:
    """The engine called `name` (bad_request naming the known ones otherwise)."""
    card = registry.card(name)
    if name not in _INSTANCES:
        module = importlib.import_module(f"{__name__}.{name}")
        engine_class = getattr(module, "ENGINE", None)
        if not (isinstance(engine_class, type) and issubclass(engine_class, Engine)):
            raise RuntimeError(f"{module.__file__} must define ENGINE = <an Engine subclass>")
        _INSTANCES[name] = engine_class(card)
    return _INSTANCES[name]


__all__ = ["Engine", "get_engine"]
