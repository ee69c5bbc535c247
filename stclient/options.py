"""The one definition of every engine option: name, type, default, range and help text.

The CLI builds its flags from these, the daemon validates requests with them and sends them in its
`models` reply, and the plug-in builds its dialogs from that reply. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import BAD_REQUEST, StyleTransferError

ENGINES = ("adain", "cyclegan", "pix2pix", "mixgan")


@dataclass(frozen=True)
class OptionSpec:
    """One engine option. `kind` is bool, int, float, choice or floats (a list of floats)."""

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """Command-line flag, e.g. --preserve-color."""
        return "--" + self.name.replace("_", "-")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = list(self.choices)
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
        if self.kind == "floats":
            if not isinstance(value, (list, tuple)) or not value:
                raise fail("must be a non-empty list of numbers")
            return [self._number(v, fail, float) for v in value]
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


WORKING_SIZE = OptionSpec(
    "working_size", "int", 0,
    "Longest side the network runs at (0 = the image's own size); the result is scaled back.",
    minimum=0, maximum=16384)


def _color_output(default: bool) -> OptionSpec:
    return OptionSpec(
        "color_output", "bool", default,
        "A grey image gets a colour (RGB) result (in GIMP the image is converted to RGB); "
        "off: the result is turned back into grey like its input.")


ENGINE_OPTIONS: dict[str, tuple[OptionSpec, ...]] = {
    "adain": (
        OptionSpec("alpha", "float", 1.0,
                   "Style strength: 0 keeps the content, 1 is full style.", 0.0, 1.0),
        OptionSpec("style_weights", "floats", [1.0],
                   "Weights of several styles (normalised to sum 1).", 0.0, 1e6),
        OptionSpec("preserve_color", "bool", False,
                   "Keep the content's colours (recolour the style first)."),
        OptionSpec("color_method", "choice", "reference",
                   "How colours are kept: 'reference' (the paper's colour transfer) or "
                   "'luminance' (stylize luminance only).", choices=("reference", "luminance")),
        OptionSpec("style_size", "int", 0,
                   "Longest side the style image is scaled to before encoding (0 = its own size).",
                   0, 16384),
        OptionSpec("mask_mode", "choice", "soft",
                   "How a mask combines the styles: 'soft' blends where the mask is between 0 "
                   "and 1, 'hard' switches at 0.5 (as the original release).",
                   choices=("soft", "hard")),
        WORKING_SIZE,
        _color_output(False),
    ),
    "cyclegan": (WORKING_SIZE, _color_output(False)),
    "pix2pix": (
        OptionSpec("norm", "choice", "image",
                   "Batch-norm statistics: 'image' (the image's own, as the reference test) or "
                   "'running' (the stored training statistics).", choices=("image", "running")),
        OptionSpec("seed", "int", -1,
                   "Seed for dropout variation (-1 = deterministic, dropout off).", -1, 2**31 - 1),
        WORKING_SIZE,
        _color_output(False),
    ),
    "mixgan": (
        OptionSpec("seed", "int", 0, "Seed for sampling new images.", 0, 2**31 - 1),
        WORKING_SIZE,
        # MIXGAN's content domain is grey and its point is the style's colour
        _color_output(True),
    ),
}


def option_specs(engine: str) -> tuple[OptionSpec, ...]:
    if engine not in ENGINE_OPTIONS:
        raise StyleTransferError(
            BAD_REQUEST, f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    return ENGINE_OPTIONS[engine]


def resolve_options(engine: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """Validate `given` against the engine's specs and fill in defaults. Unknown names are errors."""
    specs = {spec.name: spec for spec in option_specs(engine)}
    given = dict(given or {})
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise StyleTransferError(
            BAD_REQUEST,
            f"Unknown option(s) for {engine}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(specs))}.")
    resolved: dict[str, Any] = {}
    for name, spec in specs.items():
        resolved[name] = spec.validate(given[name]) if name in given else _copy(spec.default)
    return resolved


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


@dataclass
class EngineOptions:
    """Engine name plus its resolved options, as carried by requests."""

    engine: str
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, engine: str, given: dict[str, Any] | None) -> "EngineOptions":
        return cls(engine, resolve_options(engine, given))
