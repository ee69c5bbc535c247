"""`python -m backend stylize INPUT... -o OUTPUT --engine ENGINE ...`: stylize image files here,
in this process (no daemon), with the same Runtime the daemon uses.

-o rules: with one INPUT, OUTPUT is a file when it has an image extension (the format follows it)
and a folder otherwise (created if needed); with several INPUTs it is a folder. In a folder each
output keeps its input's name (stem and format; `--format` picks another format). Outputs get the
input's size, alpha, ICC profile and EXIF (orientation reset, the pixels being upright), and are
written atomically. An input that cannot be read is reported and the others still run.
Exit status: 0 all written, 1 some failed, 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from backend.commands import _engine_args
from backend.commands._runtime_args import add_compile_argument
from stclient.errors import BAD_IMAGE, BAD_REQUEST, TOO_LARGE, StyleTransferError

USAGE_ERROR = 2
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}
PER_FILE_ERRORS = {BAD_IMAGE, TOO_LARGE, "unreadable", "write_failed"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stylize", help="stylize image files (AdaIN, CycleGAN, pix2pix, MIXGAN)",
        description="Stylize one or more images in this process. Outputs keep each input's "
                    "size, alpha, ICC profile and EXIF and are written atomically.",
        epilog="Examples:\n"
               "  python -m backend stylize photo.jpg -o out.png --engine adain --style "
               "starry.jpg --alpha 0.8\n"
               "  python -m backend stylize a.png b.png -o results/ --engine cyclegan "
               "--model style_monet\n"
               "  python -m backend stylize labels.png -o photo.png --engine pix2pix "
               "--checkpoint facades.pth --norm running\n"
               "Exit status: 0 all written, 1 some failed, 2 usage error, 130 Ctrl-C.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image file(s) to stylize")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output file (one INPUT, with an image extension) or folder")
    _engine_args.add_engine_arguments(parser)
    parser.add_argument("--mask", metavar="MASK",
                        help="AdaIN: grey image of the input's size; style 1 where white, style 2 "
                             "(or the unchanged content with one style) where black")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS),
                        help="format of outputs written into a folder (default: the input's)")
    parser.add_argument("--quality", type=int, default=95, metavar="1-100",
                        help="JPEG/WebP quality (default 95; WebP 100 = lossless)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the networks run (default auto: CUDA, else MPS, else CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (default: all)")
    add_compile_argument(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def output_paths(inputs: list[str], output: str, fmt: Optional[str]) -> list[Path]:
    """Where each input's result goes (the -o rules above); bad_request on clashes."""
    from backend.imageio import FORMATS_BY_EXTENSION, is_image_path

    target = Path(output)
    as_file = len(inputs) == 1 and is_image_path(target) and not target.is_dir()
    if len(inputs) > 1 and is_image_path(target) and not target.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"With {len(inputs)} inputs, -o must be a folder, "
                                              f"not the file name {output!r}.")
    if as_file:
        if Path(output).suffix.lower() not in FORMATS_BY_EXTENSION:
            raise StyleTransferError(BAD_REQUEST, f"Cannot write {output!r}: use a .png, .jpg, "
                                                  ".webp or .tif output.")
        paths = [target]
    else:
        paths = []
        for name in inputs:
            suffix = OUTPUT_FORMATS[fmt] if fmt else Path(name).suffix.lower()
            if suffix not in FORMATS_BY_EXTENSION:
                suffix = ".png"   # e.g. a BMP or GIF input: PNG keeps every pixel
            paths.append(target / (Path(name).stem + suffix))
    seen: dict[Path, str] = {}
    for name, path in zip(inputs, paths):
        resolved = path.resolve()
        if resolved in seen:
            raise StyleTransferError(
                BAD_REQUEST, f"{seen[resolved]} and {name} would both be written to {path}; "
                             "stylize them into different folders.")
        if Path(name).resolve() == resolved:
            raise StyleTransferError(BAD_REQUEST, f"The output {path} is the input itself; "
                                                  "choose another output.")
        seen[resolved] = name
    return paths


def run(args: argparse.Namespace) -> int:
    try:
        options = _engine_args.options_from_args(args, args.engine)
        from stclient import registry

        resolved = registry.resolve_options(args.engine, options)
        checkpoints = _engine_args.checkpoints_from_args(args)
        registry.check_inputs(args.engine, len(args.style or []), bool(args.mask), resolved)
        if not 1 <= args.quality <= 100:
            raise StyleTransferError(BAD_REQUEST, "--quality must be between 1 and 100.")
        if args.threads is not None and args.threads < 1:
            raise StyleTransferError(BAD_REQUEST, "--threads must be at least 1.")
        outputs = output_paths(args.inputs, args.output, args.format)
    except StyleTransferError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return USAGE_ERROR
    return _stylize_all(args, options, checkpoints, outputs)


def _stylize_all(args: argparse.Namespace, options: dict[str, Any], checkpoints: dict[str, str],
                 outputs: list[Path]) -> int:
    from backend.batch.progressbar import ProgressBar
    from backend.engines.job import StylizeJob
    from backend.imageio import read_image, write_image
    from backend.pixels import mask_to_float
    from backend.runtime import Runtime

    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    try:
        styles = [read_image(path).pixels for path in (args.style or [])]
        mask = read_image(args.mask).pixels if args.mask else None
        bar.update(0.0, "loading model")
        runtime = Runtime(device=args.device, threads=args.threads, compile=args.compile)
        runtime.load_model(args.engine, args.model, checkpoints)   # fail early on a bad model
    except StyleTransferError as error:
        bar.finish()
        print(f"error ({error.code}): {error.message}", file=sys.stderr)
        return USAGE_ERROR if error.code == BAD_REQUEST else 1
    total = len(args.inputs)
    failures = 0
    for index, (source, target) in enumerate(zip(args.inputs, outputs)):
        def progress(fraction: float, text: str, index: int = index, name: str = source) -> None:
            label = f"{name}: {text}" if total == 1 else f"{index}/{total} {name}: {text}"
            bar.update((index + fraction) / total if fraction < 1.0 or index + 1 < total
                       else 1.0, label)

        try:
            image = read_image(source)
            job = StylizeJob(engine=args.engine, content=image.pixels, model=args.model,
                             styles=styles, options=dict(options), checkpoints=checkpoints,
                             mask=None if mask is None else
                             mask_to_float(mask, image.height, image.width))
            result = runtime.stylize(job, progress=progress)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, result, icc_profile=image.icc_profile, exif=image.exif,
                        quality=args.quality)
        except StyleTransferError as error:
            failures += 1
            bar.message(f"error ({error.code}): {source}: {error.message}")
            if error.code not in PER_FILE_ERRORS and not (
                    error.code == BAD_REQUEST and "mask" in error.message.lower()):
                bar.finish()
                return USAGE_ERROR if error.code == BAD_REQUEST else 1
            continue
        except OSError as error:   # e.g. the output folder cannot be created
            failures += 1
            bar.message(f"error: {target}: {error.strerror or error}")
            continue
        if not args.quiet and total > 1:
            bar.message(f"wrote {target}")
    bar.finish()
    if not args.quiet:
        written = total - failures
        print(f"{written} of {total} image(s) written" + (f" to {args.output}" if total > 1
                                                          else f": {outputs[0]}"
                                                          if written else ""),
              file=sys.stderr)
    return 1 if failures else 0
