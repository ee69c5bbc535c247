"""Train a MIXGAN: `python -m backend train mixgan --content DIR --style DIR --name NAME`.

Schedule (as the paper's code, with the content decoder trained too):
1. Autoencoder phase: encoder E, content decoder Gc and latent discriminator Dz. E/Gc minimise
   the adversarial loss against Dz (E's codes should look like prior samples) + 10 * L1
   reconstruction; Dz learns prior samples vs codes.
2. Mixture phase: E and Gc frozen; the mixture decoder Gm learns against the patch discriminator
   Dp (receptive field 8 px) on real style images. Half of each batch decodes E(content images)
   ("this content in that style"), half decodes prior samples (new images).
All adversarial losses are least-squares (LSGAN); Adam with beta1 = 0.5.

Optional, not in the paper (`--content-weight`, default 0): a structure term for Gm,
1 - |correlation| between the mixture's luminance and Gc's content image. Gm then has to draw the
shape with a brightness contrast (in any colours, either polarity). The paper relies on Gm being
shallow instead; on our glyph/texture domains that alone let Gm paint texture blobs over the
background until the glyphs were hard to read (see bench/results/mixgan-starter.md).

Batch k depends only on (seed, k), and checkpoints hold every network and optimizer, so a resumed
run continues exactly where it stopped. Running a finished run again with a larger --steps
extends it: steps before the new autoencoder/mixture boundary train E and Gc further, the rest
train Gm. The finished generator (E, Gc, Gm) is written to the
models dir as NAME.pth with a NAME.json sidecar, so the daemon lists it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported only when a run starts, so `--help` stays fast
    from pathlib import Path

    from backend.networks.mixgan import MixganConfig


@dataclass
class TrainOptions:
    content: str
    style: str
    name: str
    arch: str = "conv"
    size: int = 64
    batch: int = 64
    steps: int = 20000               # total: autoencoder steps + mixture steps
    mix_fraction: float = 0.35       # share of the steps spent on the mixture phase
    width: int = 32
    latent: int = 0                  # 0 = per arch: paper 2048, conv 64
    n_res: int = 6
    lr: float = 2e-4
    seed: int = 0
    pool: int = 20000                # generated images per built-in domain
    device: str = "auto"
    out: str = ""                    # run folder; default runs/mixgan/NAME
    models_dir: str = ""             # default: the model store's models dir
    display_name: str = ""
    sample_every: int = 500
    checkpoint_every: int = 500
    resume: bool = True
    content_weight: float = 0.0      # optional structure term for Gm (0 = the paper's losses)
    restart_mixture: bool = False    # keep the trained autoencoder, train Gm/Dp again from scratch
    ema: float = 0.0                 # moving-average decay of Gm's weights (0 = off)

    @property
    def ae_steps(self) -> int:
        return self.steps - self.mix_steps

    @property
    def mix_steps(self) -> int:
        return int(round(self.steps * self.mix_fraction))

    def config(self) -> "MixganConfig":
        from backend.networks.mixgan import MixganConfig
        latent = self.latent or (2048 if self.arch == "paper" else 64)
        return MixganConfig(arch=self.arch, width=self.width, latent=latent, n_res=self.n_res,
                            size=self.size)


def train(options: TrainOptions, log: Callable[[str], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> "Path":
    """Run (or resume) the whole schedule; return the path of the registered model."""
    from backend.training.mixgan_loop import run_training
    return run_training(options, log, should_stop)


# -- command line --------------------------------------------------------------------------

def register(train_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `train mixgan` to the `train` command's sub-commands."""
    defaults = TrainOptions(content="", style="", name="")
    parser = train_subparsers.add_parser(
        "mixgan", help="train a MIXGAN (content from one domain, style from another)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", required=True,
                        help="folder of content images (used in grey), or builtin:glyphs")
    parser.add_argument("--style", required=True,
                        help="folder of style images, or builtin:textures")
    parser.add_argument("--name", required=True, help="model name (NAME.pth in the models dir)")
    parser.add_argument("--arch", choices=("paper", "conv"), default=defaults.arch,
                        help="paper: 64x64 with a latent vector; conv: any size (default)")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help="total training steps (both phases)")
    parser.add_argument("--mix-fraction", type=float, default=defaults.mix_fraction,
                        help="share of the steps spent on the mixture phase")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help="training image side (multiple of 16)")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--width", type=int, default=defaults.width,
                        help="channels of the first layer (paper: 32)")
    parser.add_argument("--latent", type=int, default=defaults.latent,
                        help="latent size (0 = paper 2048, conv 64 channels)")
    parser.add_argument("--n-res", type=int, default=defaults.n_res)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--content-weight", type=float, default=defaults.content_weight,
                        help="weight of an extra structure term for the mixture decoder: "
                             "1 - |correlation| between the mixture's luminance and Gc's "
                             "content image (0 = the paper's adversarial loss only)")
    parser.add_argument("--ema", type=float, default=defaults.ema,
                        help="register a moving average of the mixture decoder's weights with "
                             "this decay, e.g. 0.999 (0 = the last step's weights)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--pool", type=int, default=defaults.pool,
                        help="images generated per built-in domain")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for PyTorch (0 = its default; 1 is fastest on a "
                             "machine busy with other work)")
    parser.add_argument("--out", default="", help="run folder (default runs/mixgan/NAME)")
    parser.add_argument("--models-dir", default="", help="where the finished model is registered")
    parser.add_argument("--display-name", default="")
    parser.add_argument("--sample-every", type=int, default=defaults.sample_every)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--restart", action="store_true",
                        help="ignore an existing checkpoint in the run folder")
    parser.add_argument("--restart-mixture", action="store_true",
                        help="keep the run's trained autoencoder (E, Gc) and train the mixture "
                             "decoder again from scratch, e.g. with another --style domain "
                             "(give it once; leave it out to resume that run later)")
    parser.set_defaults(func=run_command)
    return parser


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        content=args.content, style=args.style, name=args.name, arch=args.arch, size=args.size,
        batch=args.batch, steps=args.steps, mix_fraction=args.mix_fraction, width=args.width,
        latent=args.latent, n_res=args.n_res, lr=args.lr, content_weight=args.content_weight,
        ema=args.ema,
        seed=args.seed, pool=args.pool,
        device=args.device, out=args.out, models_dir=args.models_dir,
        display_name=args.display_name, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every, resume=not args.restart,
        restart_mixture=args.restart_mixture)


def run_command(args: argparse.Namespace) -> int:
    from stclient.errors import BAD_REQUEST, StyleTransferError
    try:
        options = options_from_args(args)
        if options.steps < 1 or options.batch < 1 or not 0.0 <= options.mix_fraction <= 1.0:
            raise ValueError("--steps and --batch must be positive, --mix-fraction in 0..1")
        if options.content_weight < 0:
            raise ValueError("--content-weight must be 0 or more")
        if not 0.0 <= options.ema < 1.0:
            raise ValueError("--ema must be 0 (off) or a decay below 1, e.g. 0.999")
        if args.threads < 0:
            raise ValueError("--threads must be 0 (default) or more")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        train(options)
    except ValueError as error:
        raise StyleTransferError(BAD_REQUEST, str(error)) from None
    return 0
