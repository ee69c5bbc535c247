"""Command-line flags for engines and their options, built from the engine cards (one definition).

Every command that runs an engine (stylize, batch) adds the same flags with
`add_engine_arguments(parser)`: --engine, --model, --style, --checkpoint and one flag per engine
option (--alpha, --preserve-color, --working-size, ...; an option several engines share, such as
--seed, is one flag). Option flags default to None so `options_from_args` passes on only what the
user typed; defaults and ranges are applied by stclient.registry.resolve_options, the same code
the daemon uses.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from stclient.errors import BAD_REQUEST, StyleTransferError
from stclient import registry
from stclient.options import OptionSpec


DEFAULT_ROLE = "generator"     # what a bare --checkpoint PATH is when the engine is not known


def _number_list(cast):
    """argparse type for 'X,Y,...' lists (floats or whole numbers)."""
    def parse(text: str) -> list:
        try:
            values = [cast(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            kind = "whole numbers" if cast is int else "numbers"
            raise argparse.ArgumentTypeError(f"expected {kind} separated by commas, not "
                                             f"{text!r}")
        if not values:
            raise argparse.ArgumentTypeError("expected at least one number")
        return values
    return parse


def _engines_by_option() -> dict[str, list[tuple[str, OptionSpec]]]:
    table: dict[str, list[tuple[str, OptionSpec]]] = {}
    for engine, card in registry.cards().items():
        for spec in card.options:
            table.setdefault(spec.name, []).append((engine, spec))
    return table


def _help(name: str, uses: list[tuple[str, OptionSpec]]) -> str:
    spec = uses[0][1]
    engines = [engine for engine, _ in uses]
    scope = "all engines" if len(engines) == len(registry.cards()) else ", ".join(engines)
    defaults = {repr(s.default) for _, s in uses}
    default = f"default {spec.default}" if len(defaults) == 1 else "default per engine"
    text = spec.help.replace("%", "%%")
    return f"{text} [{scope}; {default}]"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine, --model, --style, --checkpoint and every engine option as a flag."""
    cards = registry.cards()
    parser.add_argument("--engine", required=True, choices=tuple(cards),
                        help="which network family: " + "; ".join(
                            f"{name} = {card.title}" for name, card in cards.items()))
    parser.add_argument("--model", metavar="NAME",
                        help="installed model name (see `python -m backend models`); default: "
                             "the engine's default model")
    stylers = [name for name, card in cards.items() if card.styles.takes_images]
    parser.add_argument("--style", action="append", metavar="IMAGE",
                        help=f"style image ({', '.join(stylers)}; repeat for several styles)")
    parser.add_argument("--checkpoint", action="append", metavar="[ROLE=]PATH",
                        help="use this checkpoint file instead of --model (ROLE=PATH per file; a "
                             f"bare PATH is the {DEFAULT_ROLE}): " + "; ".join(
                                 f"{name} {', '.join(card.role_names)}"
                                 for name, card in cards.items() if card.takes_model))
    group = parser.add_argument_group("engine options")
    for name, uses in _engines_by_option().items():
        add_option_flag(group, uses[0][1], _help(name, uses),
                        sorted({c for _, s in uses for c in s.choices}))


def add_option_flag(group: Any, spec: OptionSpec, help_text: str,
                    choices: Optional[list[str]] = None, aliases: tuple[str, ...] = ()) -> None:
    """The flag of one option (default None: only what the user types is passed on); `aliases`
    are further spellings of the same flag."""
    flags = (spec.flag, *aliases)
    name = spec.name
    if spec.kind == "bool":
        group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
    elif spec.kind == "choice":
        group.add_argument(*flags, dest=name, choices=choices or list(spec.choices),
                           default=None, help=help_text)
    elif spec.kind in ("floats", "ints"):
        group.add_argument(*flags, dest=name, default=None,
                           type=_number_list(float if spec.kind == "floats" else int),
                           metavar="X,Y,..." if spec.kind == "floats" else "N,M,...",
                           help=help_text)
    else:
        group.add_argument(*flags, dest=name, type=int if spec.kind == "int" else float,
                           default=None, metavar="N" if spec.kind == "int" else "X",
                           help=help_text)


def options_from_args(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """The option values typed on the command line for `engine` (a bad_request for flags that
    belong to other engines, so a typo'd combination is not silently ignored)."""
    given: dict[str, Any] = {}
    own = {spec.name for spec in registry.card(engine).options}
    for name, uses in _engines_by_option().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in own:
            engines = ", ".join(engine_name for engine_name, _ in uses)
            raise StyleTransferError(BAD_REQUEST, f"{uses[0][1].flag} is an option of {engines}, "
                                                  f"not of {engine}.")
        given[name] = value
    return given


def checkpoints_from_args(args: argparse.Namespace) -> dict[str, str]:
    """--checkpoint ROLE=PATH (or a bare PATH: the engine's main file, e.g. a GAN's generator)
    -> {role: absolute path}."""
    checkpoints: dict[str, str] = {}
    engine = getattr(args, "engine", None)
    if engine and getattr(args, "checkpoint", None):
        registry.refuse_model(engine, checkpoints={"": args.checkpoint})
    bare_role = registry.card(engine).main_role.name if engine and \
        registry.card(engine).takes_model else DEFAULT_ROLE
    for text in getattr(args, "checkpoint", None) or []:
        role, sep, path = text.partition("=")
        if not sep or os.path.sep in role or not role:
            role, path = bare_role, text
        if role in checkpoints:
            raise StyleTransferError(BAD_REQUEST, f"--checkpoint {role}= was given twice.")
        checkpoints[role] = os.path.abspath(path)
    return checkpoints
