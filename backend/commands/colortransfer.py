"""`python -m backend colortransfer IN -o OUT --style S`: the instant colour transfer (no network):
the content's colour mean and covariance made the style image's, in a decorrelated colour space
(lαβ), optionally per mask region; "make my photo feel like that photo" in a second.

The same engine as `stylize --engine colortransfer` (its card's options are the flags here; the
maths is backend/engines/colortransfer.py), kept as a short command of its own, run in this
process (it takes well under a second per megapixel)."""

from __future__ import annotations

import argparse

from backend.commands._engine_args import add_option_flag
from stclient import registry

ENGINE = "colortransfer"
# the spellings this command had before the engine existed
ALIASES = {"alpha": ("--strength",), "histogram_method": ("--method",)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "colortransfer",
        help="give an image the colours of another (instant, no network)",
        description="Match IMAGE's colour statistics (mean and covariance in lαβ) to --style's; "
                    "with --mask only where the mask is white. The same as `stylize --engine "
                    "colortransfer`.")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (format from its extension)")
    parser.add_argument("--style", required=True, metavar="IMAGE",
                        help="the image whose colours are taken")
    parser.add_argument("--mask", metavar="MASK", help="grey image of IMAGE's size: where")
    for spec in registry.card(ENGINE).options:
        add_option_flag(parser, spec, f"{spec.help} (default {spec.default})".replace("%", "%%"),
                        aliases=ALIASES.get(spec.name, ()))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.engines.job import StylizeJob
    from backend.imageio import read_image, write_image
    from backend.runtime import Runtime

    options = {spec.name: getattr(args, spec.name) for spec in registry.card(ENGINE).options
               if getattr(args, spec.name, None) is not None}
    registry.resolve_options(ENGINE, options)          # a bad value fails before any reading
    content = read_image(args.image)
    style = read_image(args.style).pixels
    mask = read_image(args.mask).pixels if args.mask else None
    job = StylizeJob(engine=ENGINE, content=content.pixels, styles=[style], mask=mask,
                     options=options)
    result = Runtime(device="cpu").stylize(job)
    print(write_image(args.output, result, icc_profile=content.icc_profile, exif=content.exif))
    return 0
