"""Engine options: name, type, default, range, help text and GIMP widget, defined once.

Each engine's card (stclient/cards/<engine>.py) lists its OptionSpecs; the CLI builds its flags
from them, the daemon validates requests with them and sends them in its `models` reply, and the
plug-in builds its procedure arguments and dialogs from them. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .errors import BAD_REQUEST, StyleTransferError

OPTION_KINDS = ("bool", "int", "float", "choice", "floats", "ints")
MAX_LIST = 256           # numbers in one list option (style weights, style indices)


@dataclass(frozen=True)
class OptionSpec:
    """One engine option. `kind` is bool, int, float, choice, floats or ints (lists of numbers;
    minimum/maximum apply to each).

    GIMP (for the options a card's `gimp_arguments` names): `label` is the dialog label (with a
    _mnemonic), `widget` "scale" for a slider instead of a spin button, and `choice_labels` the
    words shown for `choices`."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    label: str = ""
    widget: str = ""
    choice_labels: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """Command-line flag, e.g. --preserve-color."""
        return "--" + self.name.replace("_", "-")

    @property
    def gimp_name(self) -> str:
        """GIMP procedure argument name, e.g. preserve-color."""
        return self.name.replace("_", "-")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = list(self.choices)
        data["choice_labels"] = list(self.choice_labels)
        return data

    def validate(self, value: Any) -> Any:
        """Return the value converted to its canonical type, or raise bad_request."""
        def fail(why: str) -> StyleTransferError:
            return StyleTransferError(BAD_REQUEST, f"Option '{self.name}' {why}.")

        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise fail(f"must be true or false, not {value!r}")
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            raise fail(f"must be one of {', '.join(self.choices)}, not {value!r}")
        if self.kind in ("floats", "ints"):
            if not isinstance(value, (list, tuple)) or (not value and self.default != []):
                raise fail("must be a non-empty list of numbers")
            if len(value) > MAX_LIST:
                raise fail(f"takes at most {MAX_LIST} numbers")
            cast = float if self.kind == "floats" else int
            return [self._number(v, fail, cast) for v in value]
        if self.kind in ("int", "float"):
            return self._number(value, fail, int if self.kind == "int" else float)
        raise fail(f"has an unknown kind {self.kind!r}")  # a programming error, reported clearly

    def _number(self, value: Any, fail, cast) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"must be a number, not {value!r}")
        if cast is int and isinstance(value, float) and not value.is_integer():
            raise fail(f"must be a whole number, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail("must be a finite number")
        number = cast(value)
        if self.minimum is not None and number < self.minimum:
            raise fail(f"must be at least {self.minimum}, not {number}")
        if self.maximum is not None and number > self.maximum:
            raise fail(f"must be at most {self.maximum}, not {number}")
        return number


def resolve(specs: Iterable[OptionSpec], given: dict[str, Any] | None,
            owner: str) -> dict[str, Any]:
    """Validate `given` against `specs` and fill in defaults. Unknown names are errors."""
    by_name = {spec.name: spec for spec in specs}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise StyleTransferError(
            BAD_REQUEST,
            f"Unknown option(s) for {owner}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(by_name))}.")
    return {name: spec.validate(given[name]) if name in given else _copy(spec.default)
            for name, spec in by_name.items()}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# ------------------------------------------------------------------ options several cards share

WORKING_SIZE = OptionSpec(
    "working_size", "int", 0,
    "Longest side the network runs at (0 = the image's own size); the result is scaled back. "
    "Smaller is faster on big layers.",
    minimum=0, maximum=16384, label="_Working size")


FINER_STROKES = " Larger than the image gives finer strokes."
WORKING_SIZE_FINER = OptionSpec(          # for fully convolutional style networks
    WORKING_SIZE.name, WORKING_SIZE.kind, WORKING_SIZE.default, WORKING_SIZE.help + FINER_STROKES,
    WORKING_SIZE.minimum, WORKING_SIZE.maximum, label=WORKING_SIZE.label)

STYLE_WEIGHTS = OptionSpec(
    "style_weights", "floats", [1.0], "Weights of several styles (normalised to sum 1).",
    0.0, 1e6)


def style_strength(help_text: str = "Style strength: 0 keeps the content, 1 is full style."
                   ) -> OptionSpec:
    return OptionSpec("alpha", "float", 1.0, help_text, 0.0, 1.0, label="Style s_trength")


def preserve_color(help_text: str = "Keep the content's colours (stylize the luminance only)."
                   ) -> OptionSpec:
    return OptionSpec("preserve_color", "bool", False, help_text, label="_Keep colours")


def color_output(default: bool) -> OptionSpec:
    """Colour results on grey images (on by default where the style's colour is the point)."""
    return OptionSpec(
        "color_output", "bool", default,
        "A grey image gets a colour (RGB) result (in GIMP the image is converted to RGB); "
        "off: the result is turned back into grey like its input.",
        label="Colour result on _grey images")


PHOTO_RADIUS = "photo_radius"


def photo_smoothing() -> tuple[OptionSpec, ...]:
    """Fast photorealism for feed-forward results: He et al.'s guided filter smooths the
    stylized image with the content as guide, so it keeps the photo's edges (the Runtime applies
    it after the network for every card with these options; backend/engines/smoothing.py)."""
    return (
        OptionSpec(PHOTO_RADIUS, "int", 0,
                   "Photorealistic smoothing: radius in pixels of the guided filter that makes "
                   "the result follow the content's edges (0 = off; 4-16 for 512-2048 px).",
                   0, 256, label="Photo smoothing r_adius"),
        OptionSpec("photo_eps", "float", 1e-2,
                   "Edge threshold of the photorealistic smoothing: content edges with a local "
                   "standard deviation above about its square root survive (on 0..1 pixels); "
                   "smaller keeps more of the stylized texture.",
                   1e-6, 1.0, label="Photo smoothing _blur"),
    )
