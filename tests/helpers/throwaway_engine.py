"""A copy of the project with one extra engine added the documented way, and nothing else edited:
a card (stclient/cards/invert.py), an engine module (backend/engines/invert.py) and a network
module (backend/networks/invert.py), plus a user model of it in the copy's models folder.

The engine inverts colours with a learned per-channel gain (its one checkpoint role), blended
with the content by `strength`: out = strength * gain * (1 - x) + (1 - strength) * x.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from backend import PROJECT_ROOT

NAME = "invert"
MODEL = "inverter"
PROCEDURE = "python-fu-style-transfer-invert"

CARD = '''
"""A throwaway engine for the tests: colour inversion with one checkpoint role."""

from stclient.card import ArchInfo, EngineCard, PerfPolicy, RoleSpec
from stclient.options import OptionSpec, color_output

CARD = EngineCard(
    name="invert",
    title="Invert",
    menu_label="Invert Colours (test)...",
    description="Invert the layer's colours with a learned gain",
    paper="none (a test engine)",
    default_model="inverter",
    roles=(RoleSpec("weights", (ArchInfo("invert_gain", "per-channel inversion gain"),)),),
    options=(
        OptionSpec("strength", "float", 1.0, "How much of the inversion: 0 keeps the layer.",
                   0.0, 1.0, label="_Strength"),
        color_output(False),
    ),
    perf=PerfPolicy(optimize=False, guard=False),
    gimp_arguments=("model", "strength", "color-output"),
    demo_runs=(),
    order=90,
)
'''

NETWORK = '''
"""The throwaway engine's network: a per-channel gain on the inverted image."""

import torch
from torch import nn


class InvertGain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (1.0 - x)


BUILDERS = {"invert_gain": InvertGain}
'''

ENGINE = '''
"""The throwaway engine: loads its one role and blends the inversion by `strength`."""

from backend.engines.base import Engine, to_numpy, to_tensor
from backend.networks.checkpoints import load_network


class InvertEngine(Engine):
    def load(self, paths, device, archs):
        _, network = load_network(self.name, "weights", paths["weights"], archs.get("weights"))
        return network.to(device).eval()

    def stylize(self, model, rgb, job, options, ctx):
        x = to_tensor(rgb, model.gain.device)
        ctx.step(0.5, "inverting")
        strength = float(options["strength"])
        return to_numpy(strength * model(x) + (1.0 - strength) * x)


ENGINE = InvertEngine
'''

COPIED = ("backend", "stclient", "plugin", "install.py", "requirements.txt",
          "requirements-test.txt", "models/manifest.json", "models/starter")


def make_project(target: Path) -> Path:
    """The copy (tracked files only, no weights), the three engine files and a model."""
    listed = subprocess.run(["git", "ls-files", *COPIED], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    for relative in listed:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / relative, target / relative)
    for relative, text in ((f"stclient/cards/{NAME}.py", CARD),
                           (f"backend/networks/{NAME}.py", NETWORK),
                           (f"backend/engines/{NAME}.py", ENGINE)):
        (target / relative).write_text(textwrap.dedent(text).lstrip())
    make_model(target / "models")
    return target


def make_model(models_dir: Path) -> Path:
    """A user model of the new engine: inverter.pth (gain 1) + its sidecar."""
    import json

    import torch

    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{MODEL}.pth"
    torch.save({"gain": torch.ones(1, 3, 1, 1)}, path)
    (models_dir / f"{MODEL}.json").write_text(json.dumps(
        {"engine": NAME, "display_name": "Inverter (test model)"}))
    return path
