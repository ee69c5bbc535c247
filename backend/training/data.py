"""Folder datasets for training: unpaired A/B, paired (A|B side by side or two folders with the
same names) and content/style, with the reference's augmentation (square resize, random crop,
random horizontal flip, the same parameters for both halves of a pair).

Every folder is scanned and every image decoded once before training, so unreadable files are
skipped (with a warning, and counted) and empty, too-small or mismatched folders fail with a clear
error before any network is built. Items are addressed by their *global sample number* in the run:
which file it is and how it is cropped follow from (seed, sample number) alone, so a resumed run
sees exactly the data the uninterrupted run would have seen, whatever the number of workers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from backend.imageio import IMAGE_EXTENSIONS, read_image
from stclient.errors import BAD_IMAGE, BAD_REQUEST, StyleTransferError

MIN_SIDE = 8            # images smaller than this on a side are not usable training data
WarnFn = Callable[[str], None]


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- reading

def load_rgb(path: Path) -> Image.Image:
    """Decode an image as 8-bit RGB through the project's one image reader (EXIF orientation,
    16-bit, CMYK, pixel limit); grey is replicated and alpha dropped, as the reference does."""
    pixels = read_image(path).pixels
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = (np.clip(pixels.astype(np.float32), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    channels = pixels.shape[2]
    if channels in (1, 2):
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    else:
        pixels = pixels[:, :, :3]
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _check_readable(path: Path) -> str | None:
    """None when the file decodes to a usable image, else why not."""
    try:
        image = load_rgb(path)
    except StyleTransferError as error:
        return f"cannot be read ({error.message})"
    except (OSError, ValueError) as error:
        return f"cannot be read ({error.__class__.__name__}: {error})"
    if min(image.size) < MIN_SIDE:
        return f"is only {image.size[0]}x{image.size[1]} pixels"
    return None


@dataclass
class ScanReport:
    """What a folder scan found: usable files, and the skipped ones with the reason."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def list_image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, hidden files ignored), sorted for determinism."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _require_folder(folder: str | Path, what: str) -> Path:
    if not folder:
        raise StyleTransferError(BAD_REQUEST, f"No {what} folder was given.")
    path = Path(folder).expanduser()
    if not path.exists():
        raise StyleTransferError(BAD_REQUEST, f"The {what} folder {path} does not exist.")
    if not path.is_dir():
        raise StyleTransferError(BAD_REQUEST, f"The {what} path {path} is not a folder.")
    return path


def scan_folder(folder: str | Path, what: str, warn: WarnFn = warn_to_stderr) -> ScanReport:
    """Decode every image once; unreadable ones are skipped with a warning."""
    path = _require_folder(folder, what)
    report = ScanReport(path)
    for file in list_image_files(path):
        problem = _check_readable(file)
        if problem is None:
            report.files.append(file)
        else:
            report.skipped.append((file, problem))
            warn(f"skipping {file}: it {problem}")
    if report.skipped:
        warn(f"{len(report.skipped)} of {len(report.skipped) + len(report.files)} images in the "
             f"{what} folder {path} were skipped")
    return report


def require_images(report: ScanReport, what: str, minimum: int) -> None:
    """Empty or too-small folders are an error, said before any training starts."""
    usable = len(report.files)
    if usable == 0:
        extra = (f" ({len(report.skipped)} unreadable file(s) skipped)" if report.skipped
                 else f"; supported types: {', '.join(sorted(IMAGE_EXTENSIONS))}")
        raise StyleTransferError(
            BAD_REQUEST, f"The {what} folder {report.folder} has no usable images{extra}.")
    if usable < minimum:
        raise StyleTransferError(
            BAD_REQUEST,
            f"The {what} folder {report.folder} has only {usable} usable image(s); at least "
            f"{minimum} are needed (one batch). Add images or lower --batch.")


# ---------------------------------------------------------------------------- pairing

@dataclass
class PairSource:
    """One training pair: either a side-by-side A|B file or two files."""

    first: Path
    second: Path | None = None       # None: `first` holds A|B side by side


def pairs_from_folders(input_dir: str | Path, target_dir: str | Path,
                       warn: WarnFn = warn_to_stderr) -> tuple[list[PairSource], int]:
    """Match input and target files by their path without extension; any unmatched name or
    duplicate stem is an error (silently dropping half the data is worse than stopping)."""
    inputs = _require_folder(input_dir, "input")
    targets = _require_folder(target_dir, "target")

    def by_stem(folder: Path, what: str) -> dict[str, Path]:
        table: dict[str, Path] = {}
        for file in list_image_files(folder):
            key = file.relative_to(folder).with_suffix("").as_posix()
            if key in table:
                raise StyleTransferError(
                    BAD_REQUEST, f"The {what} folder has two images named {key!r} "
                                 f"({table[key].name} and {file.name}); names must be unique.")
            table[key] = file
        return table

    left, right = by_stem(inputs, "input"), by_stem(targets, "target")
    if not left:
        raise StyleTransferError(BAD_REQUEST, f"The input folder {inputs} has no images.")
    if not right:
        raise StyleTransferError(BAD_REQUEST, f"The target folder {targets} has no images.")
    only_left, only_right = sorted(set(left) - set(right)), sorted(set(right) - set(left))
    if only_left or only_right:
        def show(names: list[str]) -> str:
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts = []
        if only_left:
            parts.append(f"{len(only_left)} input image(s) without a target ({show(only_left)})")
        if only_right:
            parts.append(f"{len(only_right)} target image(s) without an input "
                         f"({show(only_right)})")
        raise StyleTransferError(
            BAD_REQUEST, "pix2pix needs pairs with the same file names: " + "; ".join(parts) + ".")
    pairs: list[PairSource] = []
    skipped = 0
    for key in sorted(left):
        problems = [(f, p) for f in (left[key], right[key]) if (p := _check_readable(f))]
        if problems:
            skipped += 1
            for file, problem in problems:
                warn(f"skipping pair {key!r}: {file} {problem}")
            continue
        pairs.append(PairSource(left[key], right[key]))
    if skipped:
        warn(f"{skipped} of {len(left)} pairs were skipped")
    return pairs, skipped


def pairs_from_aligned(folder: str | Path, warn: WarnFn = warn_to_stderr
                       ) -> tuple[list[PairSource], int]:
    """Side-by-side A|B images (the reference's aligned format)."""
    report = scan_folder(folder, "pairs", warn)
    pairs = []
    skipped = len(report.skipped)
    for file in report.files:
        with Image.open(file) as image:
            width, height = image.size
        if width < 2 * MIN_SIDE:
            skipped += 1
            warn(f"skipping {file}: {width}x{height} is too narrow to hold A and B side by side")
            continue
        pairs.append(PairSource(file))
    return pairs, skipped


# ---------------------------------------------------------------------------- augmentation

@dataclass(frozen=True)
class Augment:
    """The reference's resize_and_crop + flip: square resize to load_size (bicubic), random
    size x size crop, random horizontal flip. `train=False`: plain resize to size."""

    size: int
    load_size: int
    flip: bool = True
    train: bool = True

    def __post_init__(self) -> None:
        if self.load_size < self.size:
            raise StyleTransferError(BAD_REQUEST, f"--load-size ({self.load_size}) must be at "
                                                  f"least --size ({self.size}).")

    def params(self, rng: np.random.Generator) -> tuple[int, int, bool]:
        span = self.load_size - self.size
        x = int(rng.integers(0, span + 1))
        y = int(rng.integers(0, span + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        return x, y, flip

    def apply(self, image: Image.Image, params: tuple[int, int, bool]) -> Image.Image:
        if not self.train:
            return image.resize((self.size, self.size), Image.BICUBIC)
        x, y, flip = params
        image = image.resize((self.load_size, self.load_size), Image.BICUBIC)
        image = image.crop((x, y, x + self.size, y + self.size))
        return image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image


def to_tensor(image: Image.Image, signed: bool) -> torch.Tensor:
    """RGB PIL image -> 3 x H x W float32 in [-1, 1] (GANs) or [0, 1] (AdaIN)."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.transpose(2, 0, 1).copy())
    return tensor * 2.0 - 1.0 if signed else tensor


def from_tensor(tensor: torch.Tensor, signed: bool) -> np.ndarray:
    """3 x H x W tensor -> H x W x 3 uint8."""
    values = tensor.detach().float().cpu()
    if signed:
        values = (values + 1.0) / 2.0
    return (values.clamp(0, 1).numpy().transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------- ordering

class RunOrder:
    """Which item the g-th sample of a run is: a fresh permutation of range(length) per epoch,
    drawn from (seed, salt, epoch), so any sample number can be looked up directly."""

    def __init__(self, length: int, seed: int, salt: int) -> None:
        self.length, self.seed, self.salt = length, seed, salt
        self._cached: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            order = np.random.default_rng([self.seed, self.salt, epoch]).permutation(self.length)
            self._cached = (epoch, order)
        return self._cached[1]

    def __call__(self, sample: int) -> int:
        epoch, position = divmod(sample, self.length)
        return int(self._permutation(epoch)[position])


def sample_rng(seed: int, sample: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, salt, sample, 7919])


class RunDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by global sample number (see the module docstring)."""

    signed = True

    def __len__(self) -> int:  # samples are addressed directly; the sampler bounds them
        return 2**62

    @property
    def epoch_length(self) -> int:
        raise NotImplementedError


def _read(path: Path) -> Image.Image:
    try:
        return load_rgb(path)
    except (StyleTransferError, OSError, ValueError) as error:
        raise StyleTransferError(
            BAD_IMAGE, f"{path} could be read before training but not now ({error}); "
                       "was it changed or removed?") from None


class UnpairedDataset(RunDataset):
    """Two folders without correspondence: A in shuffled order, B drawn at random (reference's
    unaligned mode); an epoch is max(|A|, |B|) samples. Also used for AdaIN content/style."""

    def __init__(self, files_a: list[Path], files_b: list[Path], augment: Augment, seed: int,
                 keys: tuple[str, str] = ("A", "B"), signed: bool = True) -> None:
        self.files_a, self.files_b, self.augment = files_a, files_b, augment
        self.seed, self.keys, self.signed = seed, keys, signed
        self.order = RunOrder(max(len(files_a), len(files_b)), seed, salt=1)

    @property
    def epoch_length(self) -> int:
        return self.order.length

    def __getitem__(self, sample: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, sample, salt=2)
        a = self.files_a[self.order(sample) % len(self.files_a)]
        b = self.files_b[int(rng.integers(len(self.files_b)))]
        image_a = self.augment.apply(_read(a), self.augment.params(rng))
        image_b = self.augment.apply(_read(b), self.augment.params(rng))
        return {self.keys[0]: to_tensor(image_a, self.signed),
                self.keys[1]: to_tensor(image_b, self.signed)}


class PairedDataset(RunDataset):
    """pix2pix pairs; A and B share one crop/flip. direction BtoA swaps the roles."""

    def __init__(self, pairs: list[PairSource], augment: Augment, seed: int,
                 direction: str = "AtoB") -> None:
        if direction not in ("AtoB", "BtoA"):
            raise StyleTransferError(BAD_REQUEST, f"--direction must be AtoB or BtoA, "
                                                  f"not {direction!r}.")
        self.pairs, self.augment, self.seed, self.direction = pairs, augment, seed, direction
        self.order = RunOrder(len(pairs), seed, salt=3)

    @property
    def epoch_length(self) -> int:
        return self.order.length

    def load_pair(self, pair: PairSource) -> tuple[Image.Image, Image.Image]:
        if pair.second is None:
            both = _read(pair.first)
            half = both.width // 2
            a, b = both.crop((0, 0, half, both.height)), both.crop((half, 0, 2 * half, both.height))
        else:
            a, b = _read(pair.first), _read(pair.second)
        return (a, b) if self.direction == "AtoB" else (b, a)

    def __getitem__(self, sample: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, sample, salt=4)
        a, b = self.load_pair(self.pairs[self.order(sample)])
        params = self.augment.params(rng)
        return {"A": to_tensor(self.augment.apply(a, params), True),
                "B": to_tensor(self.augment.apply(b, params), True)}


class RunSampler(torch.utils.data.Sampler):
    """Batches of global sample numbers for steps [start, stop)."""

    def __init__(self, start_step: int, stop_step: int, batch: int) -> None:
        self.start, self.stop, self.batch = start_step, stop_step, batch

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield list(range(step * self.batch, (step + 1) * self.batch))


class StepDataset(RunDataset):
    """Data drawn a whole batch at a time: item (step, phase) is the batch of that step, drawn
    from (seed, step) alone. For data held in memory whose batch is not a stack of independent
    items (MIXGAN's domains: one random draw per batch, and a different draw in each phase)."""

    def __getitem__(self, key: tuple[int, str]) -> dict[str, torch.Tensor]:
        step, phase = key
        return self.batch(step, phase)

    def batch(self, step: int, phase: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def examples(self, count: int) -> dict[str, torch.Tensor]:
        """The fixed inputs of the sample grids (the same at every step)."""
        raise NotImplementedError


class StepSampler(torch.utils.data.Sampler):
    """(step, phase name) for steps [start, stop): the keys of a StepDataset."""

    def __init__(self, start_step: int, stop_step: int, phase_of: Callable[[int], str]) -> None:
        self.start, self.stop, self.phase_of = start_step, stop_step, phase_of

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield step, self.phase_of(step)


def fixed_examples(dataset: RunDataset, count: int) -> dict[str, torch.Tensor]:
    """The first `count` items without random crops or flips: the rows of the sample grids."""
    if isinstance(dataset, StepDataset):
        return dataset.examples(count)
    count = max(1, min(count, dataset.epoch_length))
    plain = Augment(dataset.augment.size, dataset.augment.load_size, flip=False, train=False)
    saved = dataset.augment
    dataset.augment = plain
    try:
        if isinstance(dataset, UnpairedDataset):
            items = []
            for i in range(count):
                a = _read(dataset.files_a[i % len(dataset.files_a)])
                b = _read(dataset.files_b[i % len(dataset.files_b)])
                items.append({dataset.keys[0]: to_tensor(plain.apply(a, (0, 0, False)),
                                                         dataset.signed),
                              dataset.keys[1]: to_tensor(plain.apply(b, (0, 0, False)),
                                                         dataset.signed)})
        elif isinstance(dataset, PairedDataset):
            items = []
            for i in range(count):
                a, b = dataset.load_pair(dataset.pairs[i])
                items.append({"A": to_tensor(plain.apply(a, (0, 0, False)), True),
                              "B": to_tensor(plain.apply(b, (0, 0, False)), True)})
        else:
            raise TypeError(f"no fixed examples for {type(dataset).__name__}")
    finally:
        dataset.augment = saved
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}
