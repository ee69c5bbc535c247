"""Put a finished generator where the model store finds it: `<models dir>/<name>.pth` (official
key layout, weights only; MIXGAN's {meta, state_dict} format) plus the sidecar `<name>.json`
{engine, display_name, arch, ...}. The daemon's model list, the CLI and the GIMP dialogs then
offer it with no further step.

A copy of every exported network also stays in the run folder under the reference's file name
(latest_net_G_A.pth, latest_net_G.pth, decoder.pth; MIXGAN's generator.pth), so it loads in the
reference code as well.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from backend.modelstore import ModelRegistry, default_models_dir
from stclient.errors import BAD_REQUEST, StyleTransferError

from backend.atomicfile import atomic_write

from .export import Export
from .options import TrainOptions


def models_dir(options: TrainOptions) -> Path:
    return Path(options.models_dir).expanduser() if options.models_dir else default_models_dir()


def check_names_free(options: TrainOptions, stems: list[str]) -> None:
    """Before training: the names must not belong to an official model, nor (without
    --overwrite) to an existing user model."""
    folder = models_dir(options)
    registry = ModelRegistry(folder)
    reserved = set(registry.manifest.names) | {"starter"}
    for stem in stems:
        if stem in reserved:
            raise StyleTransferError(
                BAD_REQUEST, f"{stem!r} is the name of an official model; choose another --name.")
        taken = [p for p in (folder / f"{stem}.pth", folder / f"{stem}.pt", folder / stem)
                 if p.exists()]
        if taken and not options.overwrite:
            raise StyleTransferError(
                BAD_REQUEST, f"A model named {stem!r} already exists ({taken[0]}); choose another "
                             "--name or pass --overwrite to replace it when training ends.")


def register_exports(exports: list[Export], options: TrainOptions, run_dir: Path) -> list[Path]:
    """Write every export to the run folder, and the registrable ones to the models folder."""
    folder = models_dir(options)
    written: list[Path] = []
    for export in exports:
        content = export.file_content()
        atomic_write(run_dir / export.run_file, lambda tmp: torch.save(content, tmp))
        if not export.registrable:
            if export.unregistered_reason:
                print(f"note: {export.stem} is not registered: {export.unregistered_reason}; "
                      f"it is kept in {run_dir / export.run_file}.", file=sys.stderr)
            continue
        target = folder / f"{export.stem}.pth"
        sidecar = {"engine": export.engine, "display_name": export.display_name,
                   "arch": export.arch, "description": export.description,
                   "license": "trained by the user", **export.sidecar_extra}
        atomic_write(target, lambda tmp: torch.save(content, tmp))
        atomic_write(folder / f"{export.stem}.json",
                     lambda tmp: tmp.write_text(json.dumps(sidecar, indent=1) + "\n",
                                                encoding="utf-8"))
        written.append(target)
    return written
