"""`python -m backend train cyclegan`: two unpaired folders -> an A->B and a B->A model."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_common_arguments, add_gan_arguments

DEFAULTS: dict[str, Any] = {
    "arch": "resnet_9blocks", "size": 256, "load_size": 286, "flip": True, "batch": 1,
    "epochs": 200.0, "steps": None, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
    "decay_fraction": 0.5, "lambda_cycle": 10.0, "lambda_identity": 0.5, "pool_size": 50,
}


def register(train_subparsers: argparse._SubParsersAction) -> None:
    parser = train_subparsers.add_parser(
        "cyclegan", help="unpaired translation from two folders (CycleGAN)",
        description="Train CycleGAN (Zhu et al. 2017) with its published recipe on two folders "
                    "of unpaired images. Registers NAME (A->B) and NAME_BtoA (B->A).")
    data = parser.add_argument_group("data and recipe")
    data.add_argument("--domain-a", help="folder of domain A images")
    data.add_argument("--domain-b", help="folder of domain B images")
    data.add_argument("--arch", choices=("resnet_9blocks", "resnet_6blocks"), default=None,
                      help="generator (default resnet_9blocks)")
    data.add_argument("--reverse-name", default=None,
                      help="model name of the B->A generator (default NAME_BtoA)")
    data.add_argument("--lambda-cycle", type=float, default=None,
                      help="weight of the cycle losses A->B->A and B->A->B (default 10)")
    data.add_argument("--lambda-identity", type=float, default=None,
                      help="identity loss weight as a fraction of --lambda-cycle (default 0.5)")
    data.add_argument("--pool-size", type=int, default=None,
                      help="history of generated images the discriminators see (default 50)")
    add_gan_arguments(data)
    add_common_arguments(parser, DEFAULTS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .launch import launch

    if getattr(args, "reverse_name", None):
        args.extra = {"reverse_name": args.reverse_name}
    args.reverse_name = None
    return launch("cyclegan", args, DEFAULTS, "cyclegan_model:CycleGANRecipe",
                  required=(("domain_a", "domain_b"),))
