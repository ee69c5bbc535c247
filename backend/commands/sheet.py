"""`python -m backend sheet IMAGE -o sheet.png --model cin26`: the image in every built-in style of
a model, on one labelled grid, so users see what each --style-index looks like before choosing.

install.py makes one for every installed model with built-in styles (`<model folder>/sheet.png`,
from an example image), which GIMP's dialogs show beside the style index.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

TILE = 160                   # default longest side of one tile (px)
INSTALL_TILE = 96            # the sheets made at install time
INSTALL_IMAGE = "examples/content/landscape.jpg"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sheet", help="render an image in every built-in style of a model (a contact sheet)",
        description="Render IMAGE in each built-in style of a model (e.g. CIN's 26) on one grid, "
                    "each tile labelled with its --style-index.")
    parser.add_argument("image", metavar="IMAGE", help="the picture to show the styles on")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png",
                        help="where the sheet goes (PNG, JPEG, TIFF or WebP by extension)")
    parser.add_argument("--model", metavar="NAME", help="model (default: the default model of "
                        "the first engine with built-in styles)")
    parser.add_argument("--tile", type=int, default=TILE, metavar="PX",
                        help=f"longest side of each tile (default {TILE})")
    parser.add_argument("--columns", type=int, default=0, metavar="N",
                        help="tiles per row (default: a near-square grid)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.batch.progressbar import ProgressBar
    from backend.imageio import read_image, write_image
    from backend.runtime import Runtime
    from stclient.errors import BAD_REQUEST, StyleTransferError

    if not 16 <= args.tile <= 2048 or args.columns < 0:
        raise StyleTransferError(BAD_REQUEST, "--tile must be 16 to 2048 and --columns >= 0.")
    pixels = read_image(args.image).pixels       # a missing or bad image fails before the model
    engine = builtin_engine(args.model)
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    runtime = Runtime(device=args.device)
    sheet = make_sheet(runtime, pixels, engine, args.model, args.tile, args.columns,
                       progress=bar.update)
    bar.finish()
    print(write_image(args.output, sheet))
    return 0


def builtin_engine(model: Optional[str], models_dir: Optional[Path] = None) -> str:
    """The engine with built-in styles that `model` (or, None, the default) belongs to."""
    from backend.modelstore import get_model
    from stclient import registry
    from stclient.errors import BAD_REQUEST, StyleTransferError

    able = [name for name, card in registry.cards().items() if card.styles.builtin_styles]
    if model is None:
        if not able:
            raise StyleTransferError(BAD_REQUEST, "No engine has built-in styles.")
        return able[0]
    engine = get_model(model, models_dir=models_dir, require_installed=False).engine
    if engine not in able:
        raise StyleTransferError(BAD_REQUEST, f"{model} is a {engine} model; a contact sheet "
                                              f"needs built-in styles ({', '.join(able)}).")
    return engine


def make_sheet(runtime: Any, pixels: Any, engine: str, model: Optional[str], tile: int = TILE,
               columns: int = 0, progress: Callable[[float, str], None] = lambda f, t: None):
    """H x W x 3 uint8: `pixels` (scaled to `tile`) in each style, labelled with its index."""
    import math

    import numpy as np
    from PIL import Image, ImageDraw

    from backend.engines.job import StylizeJob
    from backend.pixels import to_float_rgb
    from stclient import registry

    count = registry.card(engine).styles.builtin
    rgb = np.round(to_float_rgb(pixels)[0] * 255).astype(np.uint8)
    small = Image.fromarray(rgb)
    small.thumbnail((tile, tile), Image.Resampling.LANCZOS)
    content = np.asarray(small)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = content.shape[:2]
    label_h, gap = 18, 4
    canvas = Image.new("RGB", (columns * (width + gap) + gap,
                               rows * (height + label_h + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for index in range(count):
        progress(index / count, f"style {index + 1} of {count}")
        out = runtime.stylize(StylizeJob(engine=engine, content=content, model=model,
                                         options={"style_index": [index]}))
        x = gap + (index % columns) * (width + gap)
        y = gap + (index // columns) * (height + label_h + gap)
        canvas.paste(Image.fromarray(out[:, :, :3]), (x, y + label_h))
        draw.text((x + 2, y + 3), f"{index}", fill="black")
    progress(1.0, "done")
    return np.asarray(canvas)


def make_installed_sheets(names: list[str], log: Callable[[str], None],
                          models_dir: Optional[Path] = None) -> None:
    """After `models install`: a contact sheet beside each named model with built-in styles that
    has none yet (`<model folder>/sheet.png`, from an example image)."""
    from backend import PROJECT_ROOT
    from backend.imageio import read_image, write_image
    from backend.modelstore import ModelRegistry
    from backend.modelstore.registry import SHEET_FILE
    from backend.runtime import Runtime
    from stclient import registry

    store = ModelRegistry(models_dir)
    wanted = [m for m in store.models if m.name in names and m.installed and m.folder
              and m.sheet is None and registry.card(m.engine).styles.builtin_styles]
    if not wanted:
        return
    pixels = read_image(PROJECT_ROOT / INSTALL_IMAGE).pixels
    runtime = Runtime(device="auto", models_dir=store.models_dir)
    for model in wanted:
        sheet = make_sheet(runtime, pixels, model.engine, model.name, INSTALL_TILE)
        log(f"{model.name}: contact sheet of its styles: "
            f"{write_image(model.folder / SHEET_FILE, sheet)}")
