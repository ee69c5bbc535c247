"""`python -m backend train pix2pix`: paired images -> an input-to-target model."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_common_arguments, add_gan_arguments

DEFAULTS: dict[str, Any] = {
    "arch": "unet_256", "size": 256, "load_size": 286, "flip": True, "batch": 1,
    "epochs": 200.0, "steps": None, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
    "decay_fraction": 0.5, "lambda_l1": 100.0, "dropout": True, "direction": "AtoB",
}


def register(train_subparsers: argparse._SubParsersAction) -> None:
    parser = train_subparsers.add_parser(
        "pix2pix", help="paired translation (pix2pix)",
        description="Train pix2pix (Isola et al. 2017) with its published recipe from pairs: "
                    "--pairs DIR of A|B side-by-side images (the reference's aligned format), "
                    "or --input-dir and --target-dir holding files with the same names.")
    data = parser.add_argument_group("data and recipe")
    data.add_argument("--pairs", help="folder of side-by-side A|B images")
    data.add_argument("--input-dir", help="folder of input images")
    data.add_argument("--target-dir", help="folder of target images with the same names")
    data.add_argument("--direction", choices=("AtoB", "BtoA"), default=None,
                      help="AtoB: left/input -> right/target (default); BtoA the other way")
    data.add_argument("--arch", choices=("unet_256", "unet_128"), default=None,
                      help="generator (default unet_256; unet_128 for 128 px crops)")
    data.add_argument("--lambda-l1", type=float, default=None,
                      help="weight of the L1 loss to the target (default 100)")
    data.add_argument("--no-dropout", action="store_true", default=None,
                      help="train without the generator's dropout")
    add_gan_arguments(data)
    add_common_arguments(parser, DEFAULTS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .launch import launch

    return launch("pix2pix", args, DEFAULTS, "pix2pix_model:Pix2PixRecipe")
