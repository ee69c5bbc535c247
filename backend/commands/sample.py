"""`python -m backend sample`: new images from a model's prior (reproducible with a seed), for the
engines whose card can sample (MIXGAN).

    python -m backend sample [--engine E] [--model NAME | --checkpoint PATH] -n 16 --seed 7 -o DIR
    python -m backend sample -n 64 --sheet sheet.png          # one PNG grid instead of files

Files are named sample_<seed>_<index>.png; image i of a seed is the same whatever -n is. A sheet
is enlarged (nearest neighbour) to at least SHEET_SIDE pixels across unless --scale is given:
16 samples of the 32 px starter model make a 138 px grid, too small to read.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

SHEET_SIDE = 512      # the default sheet is enlarged to at least this many pixels across


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate new images with a MIXGAN model",
        description="Draw new images from a MIXGAN model's prior: content from its content "
                    "domain, style from its style domain.")
    from stclient import registry

    able = registry.sampling_engines()
    parser.add_argument("--engine", choices=able, default=None,
                        help=f"which engine draws the images (default: {able[0]})" if len(able) == 1
                        else "which engine draws the images")
    parser.add_argument("--model", metavar="NAME",
                        help="model name (default: the engine's default model)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a checkpoint file (the engine's main file) instead of --model")
    parser.add_argument("-n", "--count", type=int, default=16, help="how many images (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=0,
                        help="side of the images for 'conv' models (multiple of 16; default: the "
                             "training size)")
    parser.add_argument("-o", "--output", metavar="DIR", help="folder for the images")
    parser.add_argument("--sheet", metavar="FILE.png", help="write one grid image instead")
    parser.add_argument("--scale", type=int, default=0,
                        help="enlarge the sheet by this factor (nearest neighbour; default: the "
                             f"smallest that makes it at least {SHEET_SIDE} px wide)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--models-dir", metavar="DIR", help="models folder (default: models/)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stclient.errors import BAD_REQUEST, StyleTransferError

    if not args.output and not args.sheet:
        raise StyleTransferError(BAD_REQUEST,
                                 "Say where the images go: -o DIR or --sheet FILE.png.")
    if not 1 <= args.count <= 10000:
        raise StyleTransferError(BAD_REQUEST, "-n must be 1 to 10000.")
    if not 0 <= args.seed < 2**31:
        raise StyleTransferError(BAD_REQUEST, "--seed must be 0 to 2147483647.")
    if args.size < 0 or args.scale < 0:
        raise StyleTransferError(BAD_REQUEST, "--size and --scale must be 0 (automatic) or more.")

    from backend.imageio import write_image
    from backend.runtime import Runtime

    from stclient import registry

    engine = registry.sampling_engine(args.engine)
    runtime = Runtime(device=args.device, models_dir=args.models_dir)
    checkpoints = {registry.card(engine).main_role.name: args.checkpoint} \
        if args.checkpoint else None
    images = runtime.sample(args.model, count=args.count, seed=args.seed,
                            options={"working_size": args.size}, progress=_progress,
                            checkpoints=checkpoints, engine=engine)
    print(file=sys.stderr)
    if args.sheet:
        path = write_image(args.sheet, _sheet(images, args.scale))
        print(path)
    if args.output:
        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            print(write_image(folder / f"sample_{args.seed}_{index:04d}.png", image))
    return 0


def _sheet(images: list, scale: int = 0, pad: int = 2):
    """Images (same size, uint8 H x W x 3) on a near-square white grid, enlarged `scale` times
    (0: enough to be SHEET_SIDE pixels wide)."""
    import numpy as np

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h, w = images[0].shape[:2]
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for index, image in enumerate(images):
        top = pad + (index // columns) * (h + pad)
        left = pad + (index % columns) * (w + pad)
        sheet[top:top + h, left:left + w] = image
    scale = scale or max(1, math.ceil(SHEET_SIDE / sheet.shape[1]))
    return sheet.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else sheet


def _progress(fraction: float, text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r  {fraction:4.0%} {text}\x1b[K")
        sys.stderr.flush()
