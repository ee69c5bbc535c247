"""The one option set of every training engine, and the command-line flags that fill it.

Like the reference's options module: a base set shared by all engines plus the recipe-specific
fields, each engine overriding defaults (batch, lr, load size, length) with its published ones.
The options are stored in the training checkpoint, so a resumed run uses the same recipe.
No torch here: the CLI builds its parser without importing it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backend import PROJECT_ROOT
from stclient.errors import BAD_REQUEST, StyleTransferError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Options that may differ between a run and its resumption without changing the result.
RESUMABLE_CHANGES = frozenset({
    "resume", "device", "workers", "sample_every", "checkpoint_every", "steps", "epochs",
    "models_dir", "runs_dir", "run_folder", "display_name", "overwrite", "amp", "channels_last",
    "quiet", "threads", "restart_phase"})

BUILTIN_PREFIX = "builtin:"     # generated data sets (MIXGAN's builtin:glyphs) are names, not paths


@dataclass
class TrainOptions:
    """Everything a training run needs; engine-specific fields are ignored by the others."""

    engine: str
    name: str
    display_name: str = ""
    # data (paths as strings so the options pickle-free round-trip through a checkpoint)
    domain_a: str = ""
    domain_b: str = ""
    pairs: str = ""
    input_dir: str = ""
    target_dir: str = ""
    direction: str = "AtoB"
    content: str = ""
    style: str = ""
    vgg: str = ""
    # images
    size: int = 256
    load_size: int = 286               # 0: the recipe does not rescale (MIXGAN's domains)
    flip: bool = True
    # length and batches
    steps: int | None = None
    epochs: float | None = None
    batch: int = 1
    # optimiser
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_fraction: float = 0.5        # GANs: final fraction of the run with linear lr decay
    lr_decay: float = 5e-5             # AdaIN: lr / (1 + lr_decay * step)
    # networks
    arch: str = ""
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    dropout: bool = True               # pix2pix only (CycleGAN trains without, as published)
    # losses
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lambda_l1: float = 100.0
    style_weight: float = 10.0
    content_weight: float = 1.0        # AdaIN: content loss; MIXGAN: structure term (0 = off)
    # MIXGAN: two phases (autoencoder, then mixture decoder) and its latent code
    mix_fraction: float = 0.35         # share of the steps in the mixture phase
    latent: int = 0                    # latent size; 0 = per --arch (paper 2048, conv 64)
    n_res: int = 6                     # residual blocks of the content decoder
    pool: int = 20000                  # images generated per built-in domain (not --pool-size)
    ema: float = 0.0                   # moving-average decay of the mixture decoder (0 = off)
    # running
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    workers: int = -1                  # -1: automatic (worker processes on GPU only)
    threads: int = 0                   # CPU threads for torch; 0: torch's default
    seed: int = 0
    sample_every: int = 500
    checkpoint_every: int = 1000
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    models_dir: str = ""
    runs_dir: str = ""
    run_folder: str = ""               # the run folder itself instead of RUNS_DIR/NAME
    restart_phase: str = ""            # recipes with phases: train this phase again from scratch
    extra: dict[str, Any] = field(default_factory=dict)   # recipe settings without a flag

    # ------------------------------------------------------------------ derived paths
    @property
    def run_dir(self) -> Path:
        if self.run_folder:
            return Path(self.run_folder)
        base = Path(self.runs_dir) if self.runs_dir else PROJECT_ROOT / "runs"
        return base / self.name

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainOptions":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Raise bad_request for values no recipe can run with (before any work starts)."""
        def fail(message: str) -> None:
            raise StyleTransferError(BAD_REQUEST, message)

        if not NAME_PATTERN.match(self.name):
            fail(f"--name {self.name!r} must be 1-64 letters, digits, '_', '-' or '.', "
                 "starting with a letter or digit.")
        if self.size < 16 or self.size % 4:
            fail(f"--size must be a multiple of 4 and at least 16, not {self.size}.")
        if self.load_size and self.load_size < self.size:
            fail(f"--load-size ({self.load_size}) must be at least --size ({self.size}).")
        if self.batch < 1:
            fail(f"--batch must be at least 1, not {self.batch}.")
        if self.steps is not None and self.steps < 1:
            fail(f"--steps must be at least 1, not {self.steps}.")
        if self.epochs is not None and self.epochs <= 0:
            fail(f"--epochs must be positive, not {self.epochs}.")
        if not self.lr > 0:
            fail(f"--lr must be positive, not {self.lr}.")
        if not 0.0 <= self.decay_fraction <= 1.0:
            fail(f"--decay-fraction must be between 0 and 1, not {self.decay_fraction}.")
        if self.sample_every < 0 or self.checkpoint_every < 0:
            fail("--sample-every and --checkpoint-every must be 0 (off) or positive.")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            fail(f"--device must be auto, cpu or cuda, not {self.device!r}.")
        if self.ngf < 1:
            fail(f"--ngf must be positive, not {self.ngf}.")
        if self.ndf < 1:
            fail(f"--ndf must be positive, not {self.ndf}.")
        if self.content_weight < 0:
            fail(f"--content-weight must be 0 or more, not {self.content_weight}.")
        if not 0.0 <= self.mix_fraction <= 1.0:
            fail(f"--mix-fraction must be between 0 and 1, not {self.mix_fraction}.")
        if not 0.0 <= self.ema < 1.0:
            fail(f"--ema must be 0 (off) or a decay below 1 such as 0.999, not {self.ema}.")
        if self.latent < 0 or self.n_res < 0 or self.pool < 1:
            fail("--latent and --n-res must be 0 or more, --pool at least 1.")
        if self.threads < 0:
            fail(f"--threads must be 0 (PyTorch's choice) or more, not {self.threads}.")


def engine_options(engine: str, name: str, defaults: dict[str, Any], **values: Any
                   ) -> TrainOptions:
    """Options of one engine for code that trains without the command line (tests, bench):
    the engine's published defaults, then `values`."""
    return TrainOptions(engine=engine, name=name, **{**defaults, **values})


# ---------------------------------------------------------------------------- command line

def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any],
                         skip: frozenset[str] = frozenset()) -> None:
    """Flags every engine shares; `defaults` holds the engine's published values. `skip` names
    flags (as option fields) a recipe has no use for, e.g. MIXGAN's load_size: they are left
    out, so giving one is an error rather than silently ignored."""
    d = TrainOptions(engine="", name="")
    for key, value in defaults.items():
        setattr(d, key, value)
    group = parser.add_argument_group("common training options")

    def add(flag: str, **kwargs: Any) -> None:
        target = flag.lstrip("-").replace("-", "_")
        if _INVERTED.get(target, target) not in skip:
            group.add_argument(flag, **kwargs)

    add("--name", required=True,
        help="name of the new model (as listed in GIMP) and of its run folder")
    add("--display-name", default=None,
        help="name shown in the model lists (default: derived from --name)")
    add("--size", type=int, default=None,
        help=f"crop size the networks train on (default {d.size})")
    add("--load-size", type=int, default=None,
        help=f"images are scaled to this square before the random crop "
             f"(default {d.load_size})")
    add("--no-flip", action="store_true", default=None,
        help="no random horizontal flips")
    length = group.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None,
                        help="number of optimisation steps (batches)")
    length.add_argument("--epochs", type=float, default=None,
                        help="number of passes over the data (default "
                             + (f"{d.epochs:g} epochs" if d.epochs else f"{d.steps} steps") + ")")
    add("--batch", type=int, default=None, help=f"batch size (default {d.batch})")
    add("--lr", type=float, default=None,
        help=f"Adam learning rate (default {d.lr:g})")
    add("--device", default=None,
        help="auto (GPU when present), cpu or cuda[:N] (default auto)")
    add("--amp", choices=("auto", "on", "off"), default=None,
        help=f"mixed precision (default {d.amp}; auto: on with CUDA)")
    add("--channels-last", choices=("auto", "on", "off"), default=None,
        help=f"channels_last memory format (default {d.channels_last}; auto: on with CUDA)")
    add("--workers", type=int, default=None,
        help="data-loading worker processes (default: automatic, 0 on CPU)")
    add("--threads", type=int, default=None,
        help="CPU threads for training on the CPU (default: PyTorch's choice)")
    add("--seed", type=int, default=None, help="random seed (default 0)")
    add("--sample-every", type=_non_negative_int, default=None,
        help=f"write a PNG sample grid every N steps, 0 = never "
             f"(default {d.sample_every})")
    add("--checkpoint-every", type=_non_negative_int, default=None,
        help=f"save a resumable checkpoint every N steps "
             f"(default {d.checkpoint_every})")
    add("--resume", action="store_true", default=None,
        help="continue the run of this --name from its last checkpoint")
    add("--overwrite", action="store_true", default=None,
        help="start afresh even if a run or model of this name exists")
    add("--quiet", action="store_true", default=None, help="no progress bar")
    add("--models-dir", default=None,
        help="models folder the finished model is registered in "
             "(default: the project's models/ or $STYLE_TRANSFER_MODELS_DIR)")
    add("--runs-dir", default=None,
        help="folder for checkpoints and samples (default: <project>/runs)")


def add_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs: Any) -> None:
    """A hidden old spelling of a flag (scripts keep working; --help shows the shared name).
    `dest` is the option field it sets, as the shared flag does."""
    parser.add_argument(flag, dest=dest, default=None, help=argparse.SUPPRESS, **kwargs)


def add_gan_arguments(group: argparse._ArgumentGroup) -> None:
    """Flags the two GAN recipes (CycleGAN, pix2pix) share: lr decay and (hidden) widths."""
    group.add_argument("--decay-fraction", type=float, default=None,
                       help="final fraction of the run over which the lr decays to 0 (0.5)")
    group.add_argument("--ngf", type=int, default=None, help=argparse.SUPPRESS)
    group.add_argument("--ndf", type=int, default=None, help=argparse.SUPPRESS)


# argparse destination -> option field, for flags whose meaning is inverted
_INVERTED = {"no_flip": "flip", "no_dropout": "dropout"}


def _flag_text(name: str, value: Any) -> str:
    """Option `name` set to `value` as the command line spells it: inverted flags (--no-flip)
    and the settings kept in `extra` (--reverse-name) included."""
    inverted = {option: flag for flag, option in _INVERTED.items()}
    if name in inverted:
        flag = "--" + inverted[name].replace("_", "-")
        return flag if not value else f"no {flag}"
    if name == "extra":
        return " ".join(_flag_text(key, item) for key, item in value.items()) or "no extra flag"
    return f"--{name.replace('_', '-')} {value}"


def change_text(name: str, new: Any, old: Any) -> str:
    """A recipe option a resumed run may not change, in flags: '--lr 0.001 (the run used
    0.0002)', '--no-flip (the run used no --no-flip)'."""
    plain = name not in _INVERTED.values() and name != "extra"
    return f"{_flag_text(name, new)} (the run used {old if plain else _flag_text(name, old)})"


def options_from_args(engine: str, args: argparse.Namespace,
                      defaults: dict[str, Any]) -> tuple[TrainOptions, set[str]]:
    """Build the options: engine defaults, then every flag the user gave.

    Returns the options and the set of field names the user set explicitly (a resumed run
    keeps its stored values for the others).
    """
    options = TrainOptions(engine=engine, name=args.name)
    for key, value in defaults.items():
        setattr(options, key, value)
    given: set[str] = set()
    known = {f.name for f in fields(TrainOptions)}
    for dest, value in vars(args).items():
        if value is None or dest in ("func", "command", "engine"):
            continue
        if dest in _INVERTED:
            if value:
                setattr(options, _INVERTED[dest], False)
                given.add(_INVERTED[dest])
            continue
        target = dest.replace("-", "_")
        if target in known:
            setattr(options, target, value)
            given.add(target)
    if "steps" in given:
        options.epochs = None
    elif "epochs" in given:
        options.steps = None
    return options, given
