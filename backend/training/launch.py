"""Glue between an engine's sub-command and the training loop (no torch until a run starts)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from stclient.errors import BAD_REQUEST, StyleTransferError

from .options import BUILTIN_PREFIX, options_from_args

PATH_FIELDS = ("domain_a", "domain_b", "pairs", "input_dir", "target_dir", "content", "style",
               "vgg", "models_dir", "runs_dir", "run_folder")


def launch(engine: str, args: argparse.Namespace, defaults: dict[str, Any], recipe: str,
           required: tuple[tuple[str, ...], ...] = ()) -> int:
    """Build the options, check the data flags (not needed with --resume) and train.

    `recipe` is "module:Class" inside backend.training; `required` lists groups of option names
    of which each group must be given in full for a fresh run (a resumed run or a restarted
    phase keeps the run's data).
    """
    options, given = options_from_args(engine, args, defaults)
    for name in PATH_FIELDS:                   # absolute, so a resumed run may start elsewhere
        value = getattr(options, name)
        if value and not value.startswith(BUILTIN_PREFIX):
            setattr(options, name, str(Path(value).expanduser().resolve()))
    if not (options.resume or options.restart_phase):
        for group in required:
            if not all(getattr(options, name) for name in group):
                flags = " and ".join("--" + n.replace("_", "-") for n in group)
                raise StyleTransferError(BAD_REQUEST, f"train {engine} needs {flags}.")
    module_name, class_name = recipe.split(":")
    module = importlib.import_module(f"backend.training.{module_name}")
    from .common import run_training

    result = run_training(getattr(module, class_name), options, given)
    if result.stopped:
        return 130
    names = ", ".join(path.stem for path in result.registered) or "nothing (see notes above)"
    print(f"Finished {result.step} steps. Registered: {names}. Run folder: {result.run_dir}",
          file=sys.stderr)
    return 0
