"""`python -m backend train mixgan`: grey content images + style images -> a new MIXGAN model.

The recipe (two phases: autoencoder, then mixture decoder) is in mixgan_model.py; this module
only adds the sub-command, with the flags every trainer shares plus MIXGAN's own. The flags of
the older MIXGAN trainer keep working as hidden aliases: --width (now --ngf), --out (the run
folder itself; now --runs-dir holds run folders) and --restart (now --overwrite).
"""

from __future__ import annotations

import argparse
from typing import Any

from stclient import registry

from .options import add_alias, add_common_arguments

DEFAULTS: dict[str, Any] = {
    "arch": "conv", "size": 64, "load_size": 0, "flip": True, "batch": 64, "steps": 20000,
    "epochs": None, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "ngf": 32, "latent": 0,
    "n_res": 6, "mix_fraction": 0.35, "content_weight": 0.0, "ema": 0.0, "pool": 20000,
    "sample_every": 500, "checkpoint_every": 500,
    # the recipe was made and measured in float32; mixed precision is there with --amp on
    "amp": "off", "channels_last": "off",
}


def register(train_subparsers: argparse._SubParsersAction) -> None:
    archs = tuple(arch.name for arch in registry.card("mixgan").main_role.archs)
    parser = train_subparsers.add_parser(
        "mixgan", help="content from one domain in the style of another (MIXGAN)",
        description="Train a MIXGAN (Hao et al. 2018): an autoencoder of the grey --content "
                    "images, then a mixture decoder that draws them in the look of the --style "
                    "images. Registers NAME; new images come from `python -m backend sample`.")
    data = parser.add_argument_group("data and recipe")
    data.add_argument("--content", help="folder of content images (used in grey), or "
                                        "builtin:glyphs")
    data.add_argument("--style", help="folder of style images, or builtin:textures")
    data.add_argument("--arch", choices=archs, default=None,
                      help="paper: 64x64 with a latent vector; conv: any size (default conv)")
    data.add_argument("--mix-fraction", type=float, default=None,
                      help="share of the steps spent on the mixture phase (default 0.35)")
    data.add_argument("--ngf", type=int, default=None,
                      help="channels of the first layer (default 32, as the paper)")
    data.add_argument("--latent", type=int, default=None,
                      help="latent size (default 0: paper 2048, conv 64 channels)")
    data.add_argument("--n-res", type=int, default=None,
                      help="residual blocks of the content decoder (default 6)")
    data.add_argument("--content-weight", type=float, default=None,
                      help="weight of an extra structure term for the mixture decoder: "
                           "1 - |correlation| between the mixture's luminance and Gc's "
                           "content image (default 0: the paper's adversarial loss only)")
    data.add_argument("--ema", type=float, default=None,
                      help="register a moving average of the mixture decoder's weights with "
                           "this decay, e.g. 0.999 (default 0: the last step's weights)")
    data.add_argument("--pool", type=int, default=None,
                      help="images generated per built-in domain (default 20000)")
    data.add_argument("--restart-mixture", dest="restart_phase", action="store_const",
                      const="mixture", default=None,
                      help="keep the run's trained autoencoder (E, Gc) and train the mixture "
                           "decoder again from scratch, e.g. with another --style domain "
                           "(give it once; continue that run later with --resume)")
    add_common_arguments(parser, DEFAULTS, skip=frozenset({"load_size"}))
    add_alias(parser, "--width", "ngf", type=int)
    add_alias(parser, "--out", "run_folder")
    add_alias(parser, "--restart", "overwrite", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .launch import launch

    return launch("mixgan", args, DEFAULTS, "mixgan_model:MixganRecipe",
                  required=(("content", "style"),))
