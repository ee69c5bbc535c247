"""Tiny random-weight MIXGAN model files for tests (seconds to build, a few hundred kB), and
single steps of the MIXGAN training recipe outside the loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from backend.networks.mixgan import MixGAN, MixganConfig, save_model
from backend.training.common import phase_at, seed_everything, select_accelerator
from backend.training.mixgan_model import MixganRecipe
from backend.training.options import TrainOptions

TINY = dict(width=4, latent=8, n_res=1)


def make_mixgan_model(models_dir: str | os.PathLike, name: str = "mixgan_tiny",
                      arch: str = "conv", seed: int = 0, sidecar: bool = True) -> Path:
    """Write <models_dir>/<name>.pth (+ sidecar .json) with random weights; returns the .pth."""
    torch.manual_seed(seed)
    size = 64 if arch == "paper" else 32
    model = MixGAN(MixganConfig(arch=arch, size=size, **TINY))
    folder = Path(models_dir)
    path = save_model(model, folder / f"{name}.pth")
    if sidecar:
        (folder / f"{name}.json").write_text(json.dumps(
            {"engine": "mixgan", "display_name": f"{name} (test)", "arch": arch}))
    return path


def one_torch_thread():
    """Generator for a fixture: run tiny networks on one thread, then restore the setting.

    These tests use networks of a few thousand weights, where thread hand-offs cost more than
    the arithmetic; on a busy 2-core machine two threads made a training step 25x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MixganSteps:
    """A MIXGAN recipe and its data outside the training loop, for tests of single steps:
    `step(k)` runs step k of the run (its phase follows from k) and returns the losses."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.data = MixganRecipe.dataset(options, warn=lambda message: None)
        seed_everything(options.seed)               # as the loop does before building it
        self.recipe = MixganRecipe(options, select_accelerator(options), options.steps)
        self.phases = MixganRecipe.phases(options, options.steps)

    def step(self, step: int) -> dict[str, float]:
        batch = self.data.batch(step, phase_at(self.phases, step).name)
        losses = self.recipe.train_step(self.recipe.accel.batch(batch), step)
        return {name: float(value) for name, value in losses.items()}
