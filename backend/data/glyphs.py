"""Seeded renders of digits and letters: MIXGAN's content domain for the starter model.

Glyphs are drawn white on black with Pillow, from the TrueType/OpenType fonts found on the machine
(fc-list, then the usual font folders), at random sizes, positions and rotations. A machine without
fonts falls back to Pillow's built-in scalable font, so a fresh CI machine works too.

Sample ``i`` of a set with seed ``s`` depends only on (s, i, the font list): the same call gives the
same pixels, and sets with different seeds are independent (used for held-out evaluation).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DIGITS = "0123456789"
# Upper-case letters without I, O, S and Z: under rotation and font changes they are the same
# shape as 1, 0, 5 and 2, and a label the pixels cannot decide would only add noise.
LETTERS = "ABCDEFGHJKLMNPQRTUVWXY"
DEFAULT_CHARSET = DIGITS + LETTERS
BUILTIN_FONT = "<pillow-default>"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
             "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts")


def _candidate_fonts() -> list[str]:
    paths: set[str] = set()
    if shutil.which("fc-list"):
        try:
            listing = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True,
                                     timeout=20, check=False).stdout
            paths.update(line.strip().rstrip(":").strip() for line in listing.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in FONT_DIRS:
        root = os.path.expanduser(folder)
        if os.path.isdir(root):
            paths.update(glob.glob(os.path.join(root, "**", "*"), recursive=True))
    return sorted(p for p in paths if p.lower().endswith(FONT_SUFFIXES) and os.path.isfile(p))


def _renders_charset(path: str, charset: str) -> bool:
    """A usable font draws every character with ink, and different characters differently
    (symbol and dingbat fonts fail this)."""
    try:
        font = ImageFont.truetype(path, 32)
    except OSError:
        return False
    seen: set[bytes] = set()
    for char in charset:
        image = Image.new("L", (48, 48))
        ImageDraw.Draw(image).text((24, 24), char, fill=255, font=font, anchor="mm")
        if image.getbbox() is None:
            return False
        seen.add(image.tobytes())
    return len(seen) == len(charset)


@functools.lru_cache(maxsize=8)
def find_fonts(charset: str = DEFAULT_CHARSET) -> tuple[str, ...]:
    """Font files on this machine that render `charset`, sorted; the built-in font if none."""
    fonts = tuple(p for p in _candidate_fonts() if _renders_charset(p, charset))
    return fonts or (BUILTIN_FONT,)


@functools.lru_cache(maxsize=4096)
def _font(path: str, pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path == BUILTIN_FONT:
        return ImageFont.load_default(size=pixels)  # scalable FreeType font in Pillow >= 10.1
    return ImageFont.truetype(path, pixels)


@dataclass(frozen=True)
class GlyphRenderer:
    """Draws one glyph per call; all randomness comes from the caller's numpy Generator."""

    size: int = 64
    charset: str = DEFAULT_CHARSET
    fonts: tuple[str, ...] = ()          # empty = find_fonts(charset)
    scale: tuple[float, float] = (0.65, 1.05)   # font size as a fraction of the image side
    max_rotation: float = 15.0           # degrees, either way
    supersample: int = 3

    def font_list(self) -> tuple[str, ...]:
        return self.fonts or find_fonts(self.charset)

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A random glyph: (H x W uint8 image, label = index into charset)."""
        fonts = self.font_list()
        label = int(rng.integers(len(self.charset)))
        font = fonts[int(rng.integers(len(fonts)))]
        scale = float(rng.uniform(*self.scale))
        angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
        shift = rng.uniform(0.0, 1.0, size=2)
        return self.render_char(self.charset[label], font, scale, angle, shift), label

    def render_char(self, char: str, font: str, scale: float, angle: float,
                    shift: tuple[float, float] | np.ndarray = (0.5, 0.5)) -> np.ndarray:
        """Draw `char` centred, rotate it, then move it to `shift` (0..1 of the free room
        left and right / above and below, 0.5 = centred); downsample for anti-aliasing."""
        side = self.size * self.supersample
        canvas = Image.new("L", (side, side))
        pixels = max(4, round(scale * side))
        ImageDraw.Draw(canvas).text((side / 2, side / 2), char, fill=255,
                                    font=_font(font, pixels), anchor="mm")
        canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC,
                               center=(side / 2, side / 2))
        box = canvas.getbbox()
        if box is not None:
            left, top, right, bottom = box
            dx = _place(left, side - right, float(shift[0]))
            dy = _place(top, side - bottom, float(shift[1]))
            canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
                                      resample=Image.Resampling.NEAREST)
        small = canvas.resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.uint8).copy()


def _place(room_before: int, room_after: int, fraction: float) -> int:
    """Offset that moves the ink within [−room_before, room_after] (0 if there is no room)."""
    if room_before < 0 or room_after < 0:
        return 0
    return round(-room_before + fraction * (room_before + room_after))


def render_glyphs(count: int, size: int = 64, seed: int = 0, charset: str = DEFAULT_CHARSET,
                  fonts: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """`count` glyphs: (N x size x size uint8 white-on-black images, N int64 labels)."""
    renderer = GlyphRenderer(size=size, charset=charset, fonts=fonts)
    images = np.empty((count, size, size), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for index in range(count):
        images[index], labels[index] = renderer.render(np.random.default_rng([seed, index]))
    return images, labels


def save_glyphs(directory: str | Path, count: int, size: int = 64, seed: int = 0,
                charset: str = DEFAULT_CHARSET) -> list[Path]:
    """Write a glyph set as PNG files (name = index_char) for training from a folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = render_glyphs(count, size, seed, charset)
    paths = []
    for index, (image, label) in enumerate(zip(images, labels)):
        path = directory / f"{index:06d}_{charset[label]}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths
