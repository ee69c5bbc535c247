"""Command-line entry point: one sub-command per module in backend/commands/.

Each module there defines `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the handler. Modules are imported lazily only to build the parser, and
heavy imports (torch) happen inside the handlers so `--help` and `status` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from backend import __version__
from backend import commands as commands_pkg
from stclient import registry
from stclient.errors import StyleTransferError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend",
        description="Style transfer for GIMP: " + ", ".join(
            card.title for card in registry.cards().values()) + ".")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        except Exception as error:  # one broken command must not take the others down
            print(f"warning: command {info.name!r} is unavailable: {error}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()         # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except StyleTransferError as error:
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (`... | head`): stop quietly, as Unix tools do, with the
    status of a SIGPIPE death (128 + 13); nothing more can be written there."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
