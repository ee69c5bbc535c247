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
from typing import NoReturn

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


def leave(code: int) -> NoReturn:
    """End the process with `code`. Once torch is imported, the interpreter's own teardown
    (freeing every module, running the libraries' static destructors) takes 0.4-0.5 s here, a
    fifth of a cold 512² `stylize`, and does nothing the user needs: by now outputs are renamed
    into place and reports written. So the exit handlers run (Ray's shutdown, temporary
    folders, logging), the shared ZeroMQ context's sockets get a second to send what they
    queued, and the process leaves without the rest."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    import threading
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "torch" not in sys.modules or others:
        raise SystemExit(code)             # (a thread still working is waited for, as usual)
    import atexit
    atexit._run_exitfuncs()
    zmq = sys.modules.get("zmq")
    shared = getattr(getattr(zmq, "Context", None), "_instance", None)
    if shared is not None and not shared.closed:
        shared.destroy(linger=1000)
    os._exit(code)


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
