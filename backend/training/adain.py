"""`python -m backend train adain`: content and style folders -> a new AdaIN decoder."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_common_arguments

DEFAULTS: dict[str, Any] = {
    "size": 256, "load_size": 512, "flip": False, "batch": 8, "steps": 160000, "epochs": None,
    "lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "lr_decay": 5e-5, "style_weight": 10.0,
    "content_weight": 1.0,
}


def register(train_subparsers: argparse._SubParsersAction) -> None:
    parser = train_subparsers.add_parser(
        "adain", help="a new AdaIN decoder for your content and style images",
        description="Train an AdaIN decoder (Huang & Belongie 2017) with its published recipe: "
                    "frozen normalised VGG encoder to relu4_1, content loss at relu4_1, style "
                    "loss on feature means and standard deviations at relu1_1..relu4_1.")
    data = parser.add_argument_group("data and recipe")
    data.add_argument("--content", help="folder of content images (photos)")
    data.add_argument("--style", help="folder of style images (paintings)")
    data.add_argument("--vgg", help="vgg_normalised.pth (default: the installed 'adain' model's)")
    data.add_argument("--style-weight", type=float, default=None,
                      help="weight of the style loss (default 10)")
    data.add_argument("--content-weight", type=float, default=None,
                      help="weight of the content loss (default 1)")
    data.add_argument("--lr-decay", type=float, default=None,
                      help="lr is divided by (1 + lr_decay * step) (default 5e-5)")
    add_common_arguments(parser, DEFAULTS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .launch import launch

    return launch("adain", args, DEFAULTS, "adain_model:AdaINRecipe",
                  required=(("content", "style"),))
