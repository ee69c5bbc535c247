"""GIMP procedure arguments made from the engine cards: one argument per card option (its range,
default, help and label), the style inputs of engines that take style images, and the batch
procedure's engine choice. The names are the public scripting API (see style_transfer.py)."""

from __future__ import annotations

from typing import Optional

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402

from stclient import registry  # noqa: E402
from stclient.card import STYLE_NONE, EngineCard  # noqa: E402
from stclient.options import OptionSpec  # noqa: E402

RW = GObject.ParamFlags.READWRITE
# The batch procedure's option arguments: the first ones sit where they always were, later
# additions come after `endpoint` (positional callers keep working).
# The batch procedure's option arguments, in the groups they were added in (a group goes after
# the arguments that existed then, so positional scripts keep working): after style-file, after
# endpoint, after style-index.
BATCH_OPTIONS = ("alpha", "preserve_color")
BATCH_LATER_OPTIONS = ("working_size",)
BATCH_PHOTO_OPTIONS = ("photo_radius", "photo_eps")
ALL_BATCH_OPTIONS = BATCH_OPTIONS + BATCH_LATER_OPTIONS + BATCH_PHOTO_OPTIONS
# The style-input arguments of engines whose card takes style images or has built-in styles.
STYLE_INPUTS = ("style-file", "style-layer", "style2-file", "style-index", "style2-index",
                "style-weight", "use-selection")


def style_engines() -> list[str]:
    return [name for name, card in registry.cards().items() if card.styles.takes_images]


def add_option_argument(procedure: Gimp.Procedure, spec: Optional[OptionSpec]) -> None:
    """One GIMP argument for an engine option, from its OptionSpec."""
    if spec is None:
        raise ValueError("no engine card has this option")
    name, label = spec.gimp_name, spec.label or spec.name.replace("_", " ").capitalize()
    value = spec.default
    if spec.kind == "bool":
        procedure.add_boolean_argument(name, label, spec.help, bool(value), RW)
    elif spec.kind == "int":
        procedure.add_int_argument(name, label, spec.help, int(spec.minimum),
                                   int(spec.maximum), int(value), RW)
    elif spec.kind == "float":
        procedure.add_double_argument(name, label, spec.help, float(spec.minimum),
                                      float(spec.maximum), float(value), RW)
    elif spec.kind == "choice":
        choice = Gimp.Choice.new()
        words = spec.choice_labels or spec.choices
        for index, (nick, word) in enumerate(zip(spec.choices, words)):
            choice.add(nick, index, word, "")
        procedure.add_choice_argument(name, label, spec.help, choice, str(value), RW)
    else:
        raise ValueError(f"option {spec.name} ({spec.kind}) has no GIMP argument type")


def _add_style_input(procedure: Gimp.Procedure, name: str, card: EngineCard) -> None:
    if name == "style-file":
        procedure.add_file_argument("style-file", "Style _image",
                                    "Image file whose style is applied",
                                    Gimp.FileChooserAction.OPEN, True, None, RW)
    elif name == "style-layer":
        procedure.add_layer_argument("style-layer", "Or a la_yer as the style",
                                     "An open layer used as the style instead of style-file",
                                     True, RW)
    elif name == "style2-file":
        procedure.add_file_argument("style2-file", "Style _2 (optional)",
                                    "A second style image: mixed by style-weight"
                                    + (", or placed outside the selection with use-selection"
                                       if card.styles.mask else ""),
                                    Gimp.FileChooserAction.OPEN, True, None, RW)
    elif name == "style-index":
        procedure.add_int_argument("style-index", "Style _number",
                                   "Built-in style number (the model's contact sheet shows them; "
                                   "`python -m backend sheet IMAGE`)", 0,
                                   card.styles.builtin - 1, 0, RW)
    elif name == "style2-index":
        procedure.add_int_argument("style2-index", "Style _2 number (-1: none)",
                                   "A second built-in style: mixed by style-weight"
                                   + (", or placed outside the selection with use-selection"
                                      if card.styles.mask else "") + "; -1 = none",
                                   -1, card.styles.builtin - 1, -1, RW)
    elif name == "style-weight":
        procedure.add_double_argument("style-weight", "Weight of style _1",
                                      "Share of the first style when two are given (0..1)",
                                      0.0, 1.0, 0.5, RW)
    elif name == "use-selection":
        procedure.add_boolean_argument(
            "use-selection", "_Use the selection",
            "Only the selection: its own statistics are matched to the style's, the rest is "
            "kept" if card.styles.mask_is_region else
            "One style: stylize only the selection. Two styles: style 1 inside the selection, "
            "style 2 outside" if card.styles.mask else "Stylize only the selection", True, RW)


def add_filter_arguments(procedure: Gimp.Procedure, card: EngineCard) -> None:
    """The card's `gimp_arguments`, in order (endpoint and the return value are added after)."""
    for name in card.gimp_arguments:
        if name == "model":
            procedure.add_string_argument("model", "_Model",
                                          "Model name as listed by `python -m backend models` "
                                          "(empty = the engine's default installed model)", "",
                                          RW)
        elif name in STYLE_INPUTS:
            if card.styles.kind == STYLE_NONE:
                raise ValueError(f"{card.name}: {name} needs a card with style inputs")
            _add_style_input(procedure, name, card)
        else:
            spec = card.option(name.replace("-", "_"))
            if spec is None:
                raise ValueError(f"{card.name}: gimp_arguments names {name!r}, which is neither "
                                 "an option of the card nor a style input")
            add_option_argument(procedure, spec)


def add_engine_choice(procedure: Gimp.Procedure) -> None:
    engines = Gimp.Choice.new()
    for index, (name, card) in enumerate(registry.cards().items()):
        engines.add(name, index, card.title, card.description)
    procedure.add_choice_argument("engine", "_Engine", ", ".join(registry.engine_names()),
                                  engines, registry.engine_names()[0], RW)


def option_values(config: object, card: EngineCard) -> dict[str, object]:
    """The card options that are procedure arguments, as the daemon's option names/values."""
    values: dict[str, object] = {}
    for name in card.gimp_arguments:
        spec = None if name in STYLE_INPUTS else card.option(name.replace("-", "_"))
        if spec is not None:
            value = config.get_property(spec.gimp_name)
            values[spec.name] = {"bool": bool, "int": int, "float": float}.get(
                spec.kind, str)(value)
    return values


def add_batch_style_index(procedure: Gimp.Procedure) -> None:
    """The batch procedure's built-in style number (engines with built-in styles, e.g. CIN)."""
    builtin = [card for card in registry.cards().values() if card.styles.builtin_styles]
    if builtin:
        most = max(card.styles.builtin for card in builtin)
        procedure.add_int_argument("style-index", "Built-in style _number",
                                   "Style number for engines with built-in styles ("
                                   + ", ".join(card.name for card in builtin) + ")",
                                   0, most - 1, 0, RW)
