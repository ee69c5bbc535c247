"""`python -m backend train ENGINE ...`: train your own model from image folders.

Engines are the modules backend/training/<engine>.py (one per engine card that has a training recipe)
that define `register(train_subparsers)`. Only those modules are imported to build the parser,
and they import torch only when a run starts, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from stclient.errors import INTERNAL, StyleTransferError
from stclient import registry


def register(subparsers: argparse._SubParsersAction) -> None:
    trainable = [engine for engine in registry.engine_names()
                 if importlib.util.find_spec(f"backend.training.{engine}") is not None]
    parser = subparsers.add_parser(
        "train", help="train your own model (" + ", ".join(
            registry.card(engine).title for engine in trainable) + ")",
        description="Train a model from folders of images; when it finishes it is registered in "
                    "the models folder and appears in the model lists (CLI, daemon, GIMP).")
    engines = parser.add_subparsers(dest="engine", metavar="ENGINE")
    for engine in trainable:
        try:
            module = importlib.import_module(f"backend.training.{engine}")
            module.register(engines)
        except Exception as error:  # one broken engine must not take the whole CLI down
            _broken_engine(engines, engine, error)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)


def _broken_engine(engines: argparse._SubParsersAction, engine: str, error: Exception) -> None:
    reason = f"{type(error).__name__}: {error}"
    sub = engines.add_parser(engine, help=f"(unavailable: {reason})", add_help=True)
    sub.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(args: argparse.Namespace) -> int:
        raise StyleTransferError(INTERNAL, f"Training engine {engine} cannot load: {reason}")

    sub.set_defaults(func=fail)
