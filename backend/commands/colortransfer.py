"""`python -m backend colortransfer IN -o OUT --style S`: the instant colour transfer (no network):
the content's colour mean and covariance made the style image's, in a decorrelated colour space
(lαβ), optionally per mask region; "make my photo feel like that photo" in a second."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "colortransfer", help="give an image the colours of another (instant, no network)",
        description="Match IMAGE's colour statistics (mean and covariance in lαβ) to --style's; "
                    "with --mask only where the mask is white.")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (format from its extension)")
    parser.add_argument("--style", required=True, metavar="IMAGE",
                        help="the image whose colours are taken")
    parser.add_argument("--mask", metavar="MASK", help="grey image of IMAGE's size: where")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="0 keeps the colours, 1 is the full transfer (default 1)")
    parser.add_argument("--method", choices=("symmetric", "cholesky", "pca"),
                        default="symmetric", help="how the covariance is matched")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.imageio import read_image, write_image
    from backend.pixels import from_float_rgb, mask_to_float, to_float_rgb
    from stclient.errors import BAD_REQUEST, StyleTransferError

    if not 0.0 <= args.strength <= 1.0:
        raise StyleTransferError(BAD_REQUEST, "--strength must be between 0 and 1.")
    content = read_image(args.image)
    style = read_image(args.style).pixels
    mask = read_image(args.mask).pixels if args.mask else None

    import torch

    from backend.optim import color_transfer

    rgb, alpha = to_float_rgb(content.pixels)
    height, width = rgb.shape[:2]
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    target = torch.from_numpy(to_float_rgb(style)[0]).permute(2, 0, 1)[None]
    regions = ()
    if mask is not None:
        region = torch.from_numpy(mask_to_float(mask, height, width))[None, None]
        regions = ((region, None),)
    out = color_transfer(tensor, target, method=args.method, regions=regions,
                         strength=args.strength)
    result = from_float_rgb(out[0].permute(1, 2, 0).numpy(), content.pixels, alpha)
    print(write_image(args.output, result, icc_profile=content.icc_profile, exif=content.exif))
    return 0
