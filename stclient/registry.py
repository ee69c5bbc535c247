"""The engine registry: the cards in stclient/cards/, found by their file names.

Every list of engines (CLI choices, daemon validation, model store, GIMP procedures) comes from
here, so adding `stclient/cards/<name>.py` (plus `backend/engines/<name>.py`) adds an engine
everywhere. The input rules of a job (how many styles, a mask) are checked here too, once, from
the card, by every front end before any model is loaded. Standard library only.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Optional

from . import cards as _cards_package
from .card import EngineCard
from .errors import BAD_REQUEST, StyleTransferError
from .options import OptionSpec, resolve

_CARDS: Optional[dict[str, EngineCard]] = None


def cards() -> dict[str, EngineCard]:
    """name -> card, in menu order (card.order, then name)."""
    global _CARDS
    if _CARDS is None:
        found: list[EngineCard] = []
        for info in pkgutil.iter_modules(_cards_package.__path__):
            module = importlib.import_module(f"{_cards_package.__name__}.{info.name}")
            card = getattr(module, "CARD", None)
            if not isinstance(card, EngineCard) or card.name != info.name:
                raise RuntimeError(f"{module.__file__} must define CARD = EngineCard(name="
                                   f"{info.name!r}, ...)")
            found.append(card)
        _CARDS = {card.name: card for card in sorted(found, key=lambda c: (c.order, c.name))}
    return _CARDS


def engine_names() -> tuple[str, ...]:
    return tuple(cards())


def card(engine: str) -> EngineCard:
    """The card of `engine` (bad_request naming the known engines otherwise)."""
    known = cards()
    if not isinstance(engine, str) or engine not in known:
        raise StyleTransferError(
            BAD_REQUEST, f"Unknown engine {engine!r}; choose one of {', '.join(known)}.")
    return known[engine]


def model_engines(engine: str) -> tuple[str, ...]:
    """The engines whose models `engine` can run: its own, and its card's `models_from`."""
    return (engine, *card(engine).models_from)


def refuse_model(engine: str, model: Optional[str] = None,
                 checkpoints: Optional[dict[str, Any]] = None) -> None:
    """An engine that uses no model (its card has no roles) takes no model name or checkpoint
    file: refuse one with a sentence, as every front end does before any work."""
    c = card(engine)
    if not c.takes_model and (model or checkpoints):
        raise StyleTransferError(BAD_REQUEST, f"The {c.title} engine uses no model; leave out "
                                              f"{'--checkpoint' if checkpoints else '--model'}.")


def sampling_engines() -> tuple[str, ...]:
    return tuple(name for name, c in cards().items() if c.sample is not None)


def sampling_engine(engine: Optional[str] = None) -> str:
    """The engine a sample request goes to: `engine` if its card can sample, else (None) the one
    engine that can."""
    able = sampling_engines()
    if engine:
        if card(engine).sample is None:
            raise StyleTransferError(BAD_REQUEST, f"The {card(engine).title} engine cannot draw "
                                                  f"new images; engines that can: "
                                                  f"{', '.join(able) or 'none'}.")
        return engine
    if len(able) != 1:
        raise StyleTransferError(BAD_REQUEST, "Name the engine to sample from: one of "
                                              f"{', '.join(able) or 'none'}.")
    return able[0]


def option_specs(engine: str) -> tuple[OptionSpec, ...]:
    return card(engine).options


def resolve_options(engine: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """Validate `given` against the engine's options and fill in defaults."""
    return resolve(card(engine).options, given, engine)


def shared_option(name: str) -> Optional[OptionSpec]:
    """The first card's spec of an option several engines have (one flag, one GIMP argument)."""
    return next((c.option(name) for c in cards().values() if c.option(name)), None)


# ------------------------------------------------------------------ input rules (one copy)

def check_inputs(engine: str, style_count: int, has_mask: bool,
                 options: dict[str, Any] | None = None) -> None:
    """Refuse a job whose style inputs or mask the engine cannot use, with a sentence that says
    what to give instead. `options` (resolved) lets style weights be checked against the styles."""
    c = card(engine)
    styles = c.styles
    if styles.builtin_styles:
        _check_builtin(c, style_count, has_mask, options)
        return
    if not styles.takes_images:
        if style_count:
            raise StyleTransferError(BAD_REQUEST, f"The {c.title} engine takes no style image; "
                                                  "its style is the model itself.")
    elif style_count < styles.minimum:
        raise StyleTransferError(BAD_REQUEST, f"{c.title} needs at least {_words(styles.minimum)} style "
                                              f"image{'s' if styles.minimum > 1 else ''} "
                                              "(--style IMAGE).")
    elif style_count > styles.maximum:
        raise StyleTransferError(BAD_REQUEST, f"At most {styles.maximum} styles can be blended.")
    if has_mask:
        if not styles.mask:
            raise StyleTransferError(BAD_REQUEST, f"The {c.title} engine takes no mask; engines "
                                                  "that do: " + ", ".join(
                                                      n for n, o in cards().items()
                                                      if o.styles.mask) + ".")
        if style_count > styles.mask_max:
            raise StyleTransferError(
                BAD_REQUEST, f"A mask combines at most {_words(styles.mask_max)} styles (style 1 "
                             "where the mask is white, style 2 or the unchanged content where it "
                             "is black).")
    if options is not None and "style_weights" in options and style_count:
        style_weights(options, style_count)



def _check_builtin(c: EngineCard, style_count: int, has_mask: bool,
                   options: dict[str, Any] | None) -> None:
    """Built-in styles: chosen by index (in range), weighted, and with a mask split into the
    styles inside and outside it."""
    if style_count:
        raise StyleTransferError(BAD_REQUEST, f"The {c.title} engine has built-in styles; it "
                                              "takes no style image (choose --style-index).")
    if options is None:
        return
    last = c.styles.builtin - 1
    for name in ("style_index", "outside_style_index"):
        for index in options.get(name) or []:
            if not 0 <= index <= last:
                raise StyleTransferError(
                    BAD_REQUEST, f"Style index {index} is out of range: {c.title} has styles "
                                 f"0 to {last} (see `python -m backend sheet IMAGE`).")
    inside = options.get("style_index") or []
    if not inside:
        raise StyleTransferError(BAD_REQUEST, f"{c.title} needs at least one style index.")
    style_weights(options, len(inside))
    outside = options.get("outside_style_index") or []
    if outside and not has_mask:
        raise StyleTransferError(BAD_REQUEST, "--outside-style-index places styles outside a "
                                              "mask; give --mask too.")
    if outside:
        style_weights({"style_weights": options.get("outside_style_weights")}, len(outside))


def _words(number: int) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(number, str(number))


def style_weights(options: dict[str, Any], count: int) -> list[float]:
    """The style weights to use: equal ones when the default [1.0] is left with several styles."""
    weights = [float(w) for w in options.get("style_weights") or [1.0]]
    if len(weights) == 1 and count > 1 and weights == [1.0]:
        weights = [1.0] * count
    if len(weights) != count:
        raise StyleTransferError(
            BAD_REQUEST, f"{len(weights)} style weight(s) given for {count} style(s); "
                         "give one weight per style.")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise StyleTransferError(BAD_REQUEST, "Style weights must be >= 0 and not all zero.")
    return weights
