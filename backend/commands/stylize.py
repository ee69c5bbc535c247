"""`python -m backend stylize INPUT... -o OUTPUT --engine ENGINE ...`: stylize image files.

Where the work happens: in the running daemon when there is one (its models stay loaded, so a
warm model answers in about a second), else in this process; `--in-process` forces this process,
and so do the flags that configure a Runtime (--device, --threads, --compile) or name checkpoint
files (--checkpoint). Files are read and written here either way.

-o rules: `-` writes the result to stdout as PNG (one INPUT); a path with an image extension
this program writes (.png .jpg .jpeg .webp .tif .tiff) is a file (the format follows it; one
INPUT); any other extension is an error naming those; no extension, a trailing slash or an
existing folder is a folder (created if needed), where each output keeps its input's name (stem
and format; `--format` picks another). An INPUT of `-` is read from stdin. Outputs get the input's
size, alpha, ICC profile and EXIF (orientation reset, the pixels being upright) and precision
(16-bit stays 16-bit in PNG and TIFF; JPEG and WebP store 8 bits, which is said), and are written
atomically.

Before any model is loaded: every input, style and mask is checked, the model is looked up and
each output folder is proved writable. An input that cannot be read is reported and the others
still run. `-q` hides the progress only; errors always go to stderr. `--json` prints one JSON
object per image on stdout. Ctrl-C cancels the job (in the daemon too).

Engines whose card `estimates` (the optimisation engines) print "estimated time: about ..."
before each image; `--estimate` prints only that, on stdout, and computes nothing. Engines with
an intermediate option (`--update-every N`) have the result so far written to the output file
every N steps (atomically: a viewer never sees half a file); after Ctrl-C the file keeps the
last one, and the message says so.
Exit status: 0 all written (or estimated), 1 some failed, 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from backend.commands import _engine_args
from backend.commands._runtime_args import (add_compile_argument, add_precision_argument,
                                            apply_precision)
from stclient.errors import (BAD_IMAGE, BAD_REQUEST, CANCELLED, TOO_LARGE, WRITE_FAILED,
                             StyleTransferError)

USAGE_ERROR = 2
INTERRUPTED = 130
STDIO = "-"
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}
PER_FILE_ERRORS = {BAD_IMAGE, TOO_LARGE, "unreadable", WRITE_FAILED}
EIGHT_BIT_FORMATS = {".jpg", ".jpeg", ".webp"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stylize", help="stylize image files (AdaIN, CycleGAN, pix2pix, MIXGAN)",
        description="Stylize one or more images, in the running daemon when there is one "
                    "(warm models), else in this process. Outputs keep each input's size, "
                    "alpha, ICC profile, EXIF and precision and are written atomically.",
        epilog="Examples:\n"
               "  python -m backend stylize photo.jpg -o out.png --engine adain --style "
               "starry.jpg --alpha 0.8\n"
               "  python -m backend stylize a.png b.png -o results/ --engine cyclegan "
               "--model style_monet\n"
               "  cat photo.png | python -m backend stylize - -o - --engine cyclegan > out.png\n"
               "  python -m backend stylize photo.jpg -o out.png --engine optimize --style "
               "starry.jpg --estimate\n"
               "-o: '-' = stdout (PNG); .png .jpg .jpeg .webp .tif .tiff = a file; no "
               "extension, a trailing / or an existing folder = a folder.\n"
               "Exit status: 0 all written, 1 some failed, 2 usage error, 130 Ctrl-C.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image file(s) to stylize; - reads one image from stdin")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output file (one INPUT, with an image extension), folder, or - "
                             "for stdout (PNG)")
    _engine_args.add_engine_arguments(parser)
    parser.add_argument("--mask", metavar="MASK",
                        help="AdaIN: grey image of the input's size; style 1 where white, style 2 "
                             "(or the unchanged content with one style) where black")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS),
                        help="format of outputs written into a folder (default: the input's)")
    parser.add_argument("--quality", type=int, default=95, metavar="1-100",
                        help="JPEG/WebP quality (default 95; WebP 100 = lossless)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in-process", action="store_true",
                       help="compute in this process even when a daemon is running")
    where.add_argument("--endpoint", metavar="URL",
                       help="use the daemon at URL (default: this user's daemon, if it runs)")
    parser.add_argument("--device", default=None, choices=("auto", "cpu", "cuda", "mps"),
                        help="where the networks run (implies --in-process; default auto: "
                             "CUDA, else MPS, else CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (implies --in-process; default: all)")
    add_compile_argument(parser, "implies --in-process: ")
    add_precision_argument(parser, "implies --in-process: ")
    estimators = [name for name, card in _cards().items() if card.estimates]
    parser.add_argument("--estimate", action="store_true",
                        help="print how long each image would take and stop, computing nothing "
                             f"({', '.join(estimators) or 'no engine'}; the first time measures "
                             "this computer's speed)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image on stdout (input, output, status, "
                             "error code and message, size, seconds, where it ran)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress display (errors are still printed)")
    parser.set_defaults(func=run)


def _cards() -> dict[str, Any]:
    from stclient import registry
    return registry.cards()


def registry_card(engine: str) -> Any:
    from stclient import registry
    return registry.card(engine)


# ------------------------------------------------------------------------------ -o rules

def writable_extensions() -> list[str]:
    from backend.imageio import FORMATS_BY_EXTENSION
    return list(FORMATS_BY_EXTENSION)


def output_is_folder(output: str) -> bool:
    """No extension, a trailing slash or an existing folder: a folder."""
    return output.endswith(("/", os.sep)) or os.path.isdir(output) or not Path(output).suffix


def output_paths(inputs: list[str], output: str, fmt: Optional[str]) -> list[Path]:
    """Where each input's result goes (the -o rules above); bad_request on clashes. `-` (stdout)
    is returned as Path('-')."""
    known = writable_extensions()
    if output == STDIO:
        if len(inputs) != 1:
            raise StyleTransferError(BAD_REQUEST, f"-o - writes one image to stdout; "
                                                  f"{len(inputs)} inputs need a folder.")
        return [Path(STDIO)]
    if not output_is_folder(output):
        suffix = Path(output).suffix.lower()
        if suffix not in known:
            raise StyleTransferError(
                BAD_REQUEST, f"-o {output}: {suffix} is not an image format this program "
                             f"writes ({' '.join(known)}); for a folder, end the name with /.")
        if len(inputs) > 1:
            raise StyleTransferError(BAD_REQUEST, f"With {len(inputs)} inputs, -o must be a "
                                                  f"folder, not the file name {output!r}.")
        paths = [Path(output)]
    else:
        target = Path(output)
        paths = []
        for name in inputs:
            stem = "stdin" if name == STDIO else Path(name).stem
            suffix = OUTPUT_FORMATS[fmt] if fmt else Path(name).suffix.lower()
            if suffix not in known:
                suffix = ".png"   # e.g. a BMP or GIF input (or stdin): PNG keeps every pixel
            paths.append(target / (stem + suffix))
    seen: dict[Path, str] = {}
    for name, path in zip(inputs, paths):
        resolved = path.resolve()
        if resolved in seen:
            raise StyleTransferError(
                BAD_REQUEST, f"{seen[resolved]} and {name} would both be written to {path}; "
                             "stylize them into different folders.")
        if name != STDIO and Path(name).resolve() == resolved:
            raise StyleTransferError(BAD_REQUEST, f"The output {path} is the input itself; "
                                                  "choose another output.")
        seen[resolved] = name
    return paths


# ---------------------------------------------------------------------------- the command

@dataclass
class Item:
    """One input and what became of it (a --json line)."""

    input: str
    output: str
    status: str = "pending"           # ok | failed | cancelled
    code: str = ""
    message: str = ""
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    where: str = ""
    notes: list[str] = field(default_factory=list)
    estimate: Any = None              # stclient.estimate.Estimate, for engines that estimate
    partial: str = ""                 # the output holds the result so far (e.g. "iteration 40")

    def to_json(self) -> dict[str, Any]:
        data = {"input": self.input, "output": self.output, "status": self.status,
                "where": self.where}
        if self.estimate is not None:
            data["estimate"] = self.estimate.to_json()
        if self.partial:
            data["partial"] = self.partial
        if self.status == "ok":
            data.update(width=self.width, height=self.height, seconds=round(self.seconds, 3))
        if self.code:
            data.update(code=self.code, message=self.message)
        if self.notes:
            data["notes"] = list(self.notes)
        return data


def run(args: argparse.Namespace) -> int:
    apply_precision(args)
    try:
        plan = _plan(args)
    except StyleTransferError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return USAGE_ERROR
    return _Stylize(args, *plan).run()


def _plan(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str], list[Path]]:
    """Everything that can be refused without reading a pixel or loading a model."""
    options = _engine_args.options_from_args(args, args.engine)
    from stclient import registry

    resolved = registry.resolve_options(args.engine, options)
    checkpoints = _engine_args.checkpoints_from_args(args)
    registry.check_inputs(args.engine, len(args.style or []), bool(args.mask), resolved)
    card = registry.card(args.engine)
    if args.estimate and not card.estimates:
        raise StyleTransferError(BAD_REQUEST, f"--estimate: the {card.title} engine gives no "
                                              "run-time estimate (it is quick).")
    if not 1 <= args.quality <= 100:
        raise StyleTransferError(BAD_REQUEST, "--quality must be between 1 and 100.")
    if args.threads is not None and args.threads < 1:
        raise StyleTransferError(BAD_REQUEST, "--threads must be at least 1.")
    if args.inputs.count(STDIO) > 1:
        raise StyleTransferError(BAD_REQUEST, "stdin (-) can be read only once.")
    if STDIO in (args.style or []) + [args.mask] and STDIO in args.inputs:
        raise StyleTransferError(BAD_REQUEST, "stdin (-) can be read only once.")
    outputs = output_paths(args.inputs, args.output, args.format)
    if args.output == STDIO:
        if args.json:
            raise StyleTransferError(BAD_REQUEST, "--json prints on stdout, where -o - writes "
                                                  "the image; write the image to a file.")
        if sys.stdout.isatty():
            raise StyleTransferError(BAD_REQUEST, "-o - writes PNG bytes to stdout, which is a "
                                                  "terminal; redirect it to a file or a pipe.")
    for path in [*(args.style or []), *([args.mask] if args.mask else [])]:
        _check_readable(path, "style or mask image")
    for path in checkpoints.values():
        _check_readable(path, "checkpoint")
    return options, checkpoints, outputs


def _check_readable(path: str, what: str) -> None:
    if path == STDIO:
        return
    if not os.path.isfile(path):
        raise StyleTransferError(BAD_REQUEST, f"The {what} {path} does not exist or is not a "
                                              "file.")
    if not os.access(path, os.R_OK):
        raise StyleTransferError(BAD_REQUEST, f"The {what} {path} cannot be read "
                                              "(permission denied).")


class _Stylize:
    """One run of the command: checks, then each image through the daemon or a Runtime."""

    def __init__(self, args: argparse.Namespace, options: dict[str, Any],
                 checkpoints: dict[str, str], outputs: list[Path]) -> None:
        from backend.batch.progressbar import ProgressBar
        self.args, self.options, self.checkpoints = args, options, checkpoints
        self.items = [Item(source, str(target)) for source, target in zip(args.inputs, outputs)]
        self.outputs = outputs
        self.bar = ProgressBar(sys.stderr, enabled=not args.quiet)
        self.cancel = threading.Event()

    def error(self, text: str) -> None:
        """Errors are printed whatever -q says (above the bar when there is one)."""
        if self.bar.enabled:
            self.bar.message(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.bar.enabled:
            self.bar.message(text)

    def run(self) -> int:
        todo = self._check_files()
        if not todo:
            return self._finish()
        try:
            client = self._choose()
            styles = [self._read(path).pixels for path in (self.args.style or [])]
            mask = self._read(self.args.mask).pixels if self.args.mask else None
            worker = self._worker(client)
        except StyleTransferError as error:
            self.bar.finish()
            self.error(f"error ({error.code}): {error.message}")
            return USAGE_ERROR if error.code == BAD_REQUEST else 1
        try:
            with self._ctrl_c():
                for number, item in enumerate(todo):
                    if self.cancel.is_set():
                        item.status = "cancelled"
                        continue
                    if self.args.estimate:
                        self._estimate_only(worker, item, styles, mask)
                    else:
                        self._one(worker, number, len(todo), item, styles, mask)
        except _Fatal as fatal:
            self.bar.finish()
            self.error(f"error ({fatal.error.code}): {fatal.error.message}")
            self._print_json()
            return USAGE_ERROR if fatal.error.code == BAD_REQUEST else 1
        finally:
            worker.close()
        return self._finish()

    # ------------------------------------------------------------------ before any model
    def _check_files(self) -> list[Item]:
        """Inputs readable and outputs writable, before anything is loaded."""
        from backend.atomicfile import check_writable
        todo = []
        for item, target in zip(self.items, self.outputs):
            if item.input != STDIO:
                try:
                    _check_readable(item.input, "input")
                except StyleTransferError as error:
                    self._failed(item, BAD_IMAGE, error.message.replace("The input ", ""))
                    continue
            if str(target) != STDIO:
                if target.is_dir():
                    self._failed(item, WRITE_FAILED, f"The output {target} is a folder.")
                    continue
                try:
                    check_writable(target.parent)
                except OSError as error:
                    why = "it is a file, not a folder" if target.parent.is_file() else \
                        error.strerror or str(error)
                    self._failed(item, WRITE_FAILED, f"Cannot write to {target.parent}: {why}.")
                    continue
            todo.append(item)
        return todo

    def _failed(self, item: Item, code: str, message: str) -> None:
        item.status, item.code, item.message = "failed", code, message
        self.error(f"error ({code}): {item.input}: {message}")

    def _read(self, path: str) -> Any:
        from backend.imageio import decode_image_bytes, read_image
        if path == STDIO:
            return decode_image_bytes(sys.stdin.buffer.read(), name="stdin")
        return read_image(path)

    def _choose(self) -> Any:
        """The running daemon's client, or None to compute here (the model checked first)."""
        args = self.args
        local = args.in_process or args.device is not None or args.threads is not None \
            or bool(args.compile) or args.precision is not None or bool(self.checkpoints)
        if not local:
            client = _daemon_client(args.endpoint)
            if client is not None:
                return client
        if args.endpoint:
            raise StyleTransferError("unavailable", f"No style-transfer daemon answers at "
                                                    f"{args.endpoint}; start one there with "
                                                    "`python -m backend serve`, or leave out "
                                                    "--endpoint.")
        if not self.checkpoints:
            from backend.modelstore.choice import model_for
            model_for(args.engine, args.model)      # a wrong name fails before torch loads
        return None

    def _worker(self, client: Any) -> "_Worker":
        if client is not None:
            return _DaemonWorker(client, self.args, self.cancel)
        self.bar.update(0.0, "loading model")
        return _LocalWorker(self.args, self.checkpoints, self.cancel)

    # ------------------------------------------------------------------ per image
    def _estimate_of(self, worker: "_Worker", item: Item, image: Any, styles: list,
                     mask: Any, progress: Any) -> None:
        """The engine's estimate for this image, said before it runs (engines that estimate)."""
        if not registry_card(self.args.engine).estimates:
            return
        item.estimate = worker.estimate((image.height, image.width), len(styles),
                                        mask is not None, self.options,
                                        lambda fraction, text: progress(0.0, text))
        if not self.args.estimate:
            self.note(f"{item.input}: estimated time: {item.estimate.text}")

    def _estimate_only(self, worker: "_Worker", item: Item, styles: list, mask: Any) -> None:
        item.where = worker.where
        try:
            image = self._read(item.input)
            item.width, item.height = image.width, image.height
            self._estimate_of(worker, item, image, styles, mask,
                              lambda fraction, text: self.bar.update(0.0, text))
        except _Cancelled:
            item.status = "cancelled"
            return
        except StyleTransferError as error:
            if error.code == CANCELLED:
                item.status = "cancelled"
                return
            self._failed(item, error.code, error.message)
            if error.code not in PER_FILE_ERRORS:
                raise _Fatal(error) from None
            return
        item.status = "estimated"
        self.bar.finish()
        if not self.args.json:
            print(f"{item.input}: estimated time: {item.estimate.text}", flush=True)

    def _one(self, worker: "_Worker", number: int, total: int, item: Item, styles: list,
             mask: Any) -> None:
        from backend.imageio import encode_image_bytes, write_image

        name = "stdin" if item.input == STDIO else item.input

        def progress(fraction: float, text: str) -> None:
            label = f"{name}: {text}" if total == 1 else f"{number}/{total} {name}: {text}"
            overall = (number + fraction) / total
            self.bar.update(overall if fraction < 1.0 or number + 1 < total else 1.0, label)

        started = time.monotonic()
        item.where = worker.where
        try:
            image = self._read(item.input)
            item.width, item.height = image.width, image.height
            self._estimate_of(worker, item, image, styles, mask, progress)
            started = time.monotonic()

            def so_far(pixels: Any, text: str) -> None:
                write_image(item.output, pixels, icc_profile=image.icc_profile,
                            exif=image.exif, quality=self.args.quality)
                if not item.partial:
                    self.note(f"{item.output}: the result so far is written here every "
                              f"{self._every()} iterations")
                item.partial = text

            result = worker.stylize(image.pixels, styles, mask, self.options, progress,
                                    so_far if self._every() and item.output != STDIO
                                    else None)
            if item.output == STDIO:
                data = encode_image_bytes(result, "PNG", icc_profile=image.icc_profile,
                                          exif=image.exif)
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                write_image(item.output, result, icc_profile=image.icc_profile,
                            exif=image.exif, quality=self.args.quality)
                self._precision_note(item, result)
        except _Cancelled:
            self._cancelled(item)
            return
        except StyleTransferError as error:
            if error.code == CANCELLED:
                self._cancelled(item)
                self.cancel.set()
                return
            self._failed(item, error.code, error.message)
            if error.code not in PER_FILE_ERRORS and not (
                    error.code == BAD_REQUEST and "mask" in error.message.lower()):
                raise _Fatal(error) from None
            return
        item.status, item.seconds = "ok", time.monotonic() - started
        if not self.args.quiet and total > 1:
            self.bar.message(f"wrote {item.output}")

    def _every(self) -> int:
        """N of the engine's intermediate option (0: none, or the engine has none)."""
        from stclient.registry import resolve_options
        option = registry_card(self.args.engine).intermediate_option
        if not option:
            return 0
        return int(resolve_options(self.args.engine, self.options).get(option) or 0)

    def _cancelled(self, item: Item) -> None:
        item.status = "cancelled"
        if item.partial:
            self.error(f"{item.output} keeps the result so far ({item.partial})")

    def _precision_note(self, item: Item, result: Any) -> None:
        if result.dtype.itemsize > 1 and Path(item.output).suffix.lower() in EIGHT_BIT_FORMATS:
            text = (f"{item.output}: {Path(item.output).suffix[1:].upper()} stores 8 bits per "
                    f"channel; the {8 * result.dtype.itemsize}-bit result was rounded to 8 bits "
                    "(write .png or .tif to keep it)")
            item.notes.append(text)
            self.error(f"note: {text}")

    # ------------------------------------------------------------------ the end
    def _finish(self) -> int:
        self.bar.finish()
        self._print_json()
        written = sum(item.status == "ok" for item in self.items)
        total = len(self.items)
        if self.args.estimate and not any(item.status == "cancelled" for item in self.items):
            estimated = sum(item.status == "estimated" for item in self.items)
            return 0 if estimated == total else 1
        if not self.args.quiet:
            where = (f" to {self.args.output}" if total > 1 else " to stdout"
                     if self.args.output == STDIO and written else
                     f": {self.items[0].output}" if written else "")
            print(f"{written} of {total} image(s) written{where}", file=sys.stderr)
        if any(item.status == "cancelled" for item in self.items):
            self.error("interrupted: the job was cancelled")
            return INTERRUPTED
        return 0 if written == total else 1

    def _print_json(self) -> None:
        if self.args.json:
            for item in self.items:
                print(json.dumps(item.to_json()), flush=True)

    @contextmanager
    def _ctrl_c(self) -> Iterator[None]:
        """Ctrl-C cancels the job in hand (the daemon's as well) and stops; twice: at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: Any) -> None:
            if self.cancel.is_set():
                raise KeyboardInterrupt
            self.cancel.set()
            self.error("Cancelling (Ctrl-C again to quit at once)...")

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _Fatal(Exception):
    def __init__(self, error: StyleTransferError) -> None:
        super().__init__(error.message)
        self.error = error


class _Cancelled(Exception):
    """Ctrl-C while the image was being computed in this process."""


# ---------------------------------------------------------------------------- where it runs

class _Worker:
    where = ""

    def stylize(self, content: Any, styles: list, mask: Any, options: dict[str, Any],
                progress: Any, intermediate: Any = None) -> Any:
        raise NotImplementedError

    def estimate(self, shape: tuple[int, int], styles: int, mask: bool,
                 options: dict[str, Any], progress: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LocalWorker(_Worker):
    """A Runtime in this process (the model loaded once for every input)."""

    where = "in-process"

    def __init__(self, args: argparse.Namespace, checkpoints: dict[str, str],
                 cancel: threading.Event) -> None:
        from backend.runtime import Runtime
        self.args, self.checkpoints, self.cancel = args, checkpoints, cancel
        self.runtime = Runtime(device=args.device or "auto", threads=args.threads,
                               compile=args.compile)
        self.runtime.load_model(args.engine, args.model, checkpoints)   # fail early

    def stylize(self, content: Any, styles: list, mask: Any, options: dict[str, Any],
                progress: Any, intermediate: Any = None) -> Any:
        from backend.engines.job import StylizeJob
        from backend.pixels import mask_to_float
        from stclient.errors import Cancelled
        job = StylizeJob(engine=self.args.engine, content=content, model=self.args.model,
                         styles=list(styles), options=dict(options), checkpoints=self.checkpoints,
                         mask=None if mask is None else
                         mask_to_float(mask, content.shape[0], content.shape[1]))
        try:
            return self.runtime.stylize(job, progress=progress, cancelled=self.cancel.is_set,
                                        intermediate=intermediate)
        except Cancelled:
            raise _Cancelled() from None

    def estimate(self, shape: tuple[int, int], styles: int, mask: bool,
                 options: dict[str, Any], progress: Any) -> Any:
        from stclient.errors import Cancelled
        try:
            return self.runtime.estimate(self.args.engine, shape, styles, mask, options,
                                         self.args.model, self.checkpoints, progress,
                                         self.cancel.is_set)
        except Cancelled:
            raise _Cancelled() from None


class _DaemonWorker(_Worker):
    """The running daemon: pixels travel, files stay here (so a remote daemon works too)."""

    where = "daemon"

    def __init__(self, client: Any, args: argparse.Namespace, cancel: threading.Event) -> None:
        self.client, self.args, self.cancel = client, args, cancel

    def stylize(self, content: Any, styles: list, mask: Any, options: dict[str, Any],
                progress: Any, intermediate: Any = None) -> Any:
        import numpy as np

        from backend.daemon.images import array_to_frame, frame_to_array
        args = self.args
        mask_frame = None
        if mask is not None:
            from backend.pixels import mask_to_float
            mask_frame = array_to_frame(mask_to_float(mask, content.shape[0],
                                                      content.shape[1]).astype(np.float32))
        so_far = None if intermediate is None else \
            lambda frame, fraction, text: intermediate(np.array(frame_to_array(frame)), text)
        result, _ = self.client.stylize(
            array_to_frame(content), args.engine, model=args.model, options=dict(options),
            styles=[array_to_frame(style) for style in styles], mask=mask_frame,
            on_progress=progress, cancel_event=self.cancel, on_intermediate=so_far)
        return np.array(frame_to_array(result))

    def estimate(self, shape: tuple[int, int], styles: int, mask: bool,
                 options: dict[str, Any], progress: Any) -> Any:
        return self.client.estimate(self.args.engine, shape[1], shape[0], styles, mask,
                                    self.args.model, dict(options), on_progress=progress,
                                    cancel_event=self.cancel)

    def close(self) -> None:
        self.client.close()


def _daemon_client(endpoint: Optional[str]) -> Any:
    """A client of the running daemon, or None when none answers (never starts one)."""
    from backend.commands._daemon import running_daemon
    return running_daemon(endpoint, timeout=300.0)
