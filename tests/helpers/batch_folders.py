"""Folders of small test images for the batch tests and the batch benchmark.

    make_mixed_folder(root, side=40) -> {rel: what}    nested; PNG+alpha, EXIF-rotated JPEG with an
                                                        ICC profile, WebP, TIFF, 16-bit PNG, grey,
                                                        grey+alpha, BMP
    make_bad_files(root) -> {rel: expected error code} corrupt, truncated, empty, not an image,
                                                        decompression bomb, FIFO, symlink loops
    make_plain_folder(root, count, side, seed) -> [rel] RGB PNGs (smooth random pictures)
Images are written with Pillow directly (16-bit colour PNG with a tiny encoder here, as Pillow
cannot), so the batch's reader is tested against files it did not write itself.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

EXIF_ORIENTATION = 0x0112


def smooth_image(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    """A picture-like uint8 image: low-frequency colour fields plus mild noise."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, height // 8), max(2, width // 8), channels))
    big = np.kron(small, np.ones((8, 8, 1)))[:height, :width]
    if big.shape[0] < height or big.shape[1] < width:
        big = np.pad(big, ((0, height - big.shape[0]), (0, width - big.shape[1]), (0, 0)),
                     mode="edge")
    noise = rng.normal(0, 0.04, (height, width, channels))
    return np.clip((big + noise) * 255, 0, 255).astype(np.uint8)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16_rgb(path: Path, pixels: np.ndarray) -> None:
    """16-bit RGB PNG (Pillow writes only 16-bit grey)."""
    height, width, _ = pixels.shape
    raw = pixels.astype(">u2").reshape(height, width * 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in raw)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + _png_chunk(b"IDAT", zlib.compress(rows))
                     + _png_chunk(b"IEND", b""))


def write_png_bomb(path: Path, side: int = 40000) -> None:
    """A valid PNG header claiming side x side grey pixels with a tiny deflate stream: the
    classic decompression bomb (1.6 gigapixels in a few kilobytes)."""
    row = b"\x00" + bytes(side)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + _png_chunk(b"IDAT", body)
                     + _png_chunk(b"IEND", b""))


def make_mixed_folder(root: Path, side: int = 40) -> dict[str, str]:
    """Nested folder of every layout the batch must keep; returns {relative name: what}."""
    root = Path(root)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    h, w = side, side + 8
    made: dict[str, str] = {}

    rgba = np.concatenate([smooth_image(1, h, w), np.tile(
        np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, 1, 1))], axis=2)
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    made["alpha.png"] = "RGBA PNG"

    stored = smooth_image(2, w, h)               # stored sideways; orientation 6 turns it upright
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    exif[0x010F] = "TestCam"                     # Make: must survive into the output
    Image.fromarray(stored, "RGB").save(root / "sub" / "photo.jpg", "JPEG", quality=92,
                                        exif=exif.tobytes(), icc_profile=srgb_icc())
    made["sub/photo.jpg"] = "JPEG, EXIF orientation 6, ICC"

    Image.fromarray(smooth_image(3, h, w), "RGB").save(root / "sub" / "deeper" / "web.webp",
                                                       "WEBP", quality=90)
    made["sub/deeper/web.webp"] = "WebP"

    Image.fromarray(smooth_image(4, h, w), "RGB").save(root / "sub" / "scan.tif", "TIFF")
    made["sub/scan.tif"] = "TIFF"

    rng = np.random.default_rng(5)
    wide = (smooth_image(5, h, w).astype(np.uint16) * 257
            + rng.integers(0, 200, (h, w, 3)).astype(np.uint16))
    write_png16_rgb(root / "deep16.png", wide)
    made["deep16.png"] = "16-bit RGB PNG"

    Image.fromarray(smooth_image(6, h, w, 1)[:, :, 0], "L").save(root / "grey.png")
    made["grey.png"] = "grey PNG"

    grey_alpha = np.concatenate([smooth_image(7, h, w, 1), smooth_image(8, h, w, 1)], axis=2)
    Image.fromarray(grey_alpha, "LA").save(root / "sub" / "grey_alpha.png")
    made["sub/grey_alpha.png"] = "grey + alpha PNG"

    Image.fromarray(smooth_image(9, h, w), "RGB").save(root / "old.bmp", "BMP")
    made["old.bmp"] = "BMP (written back as PNG)"
    return made


def make_bad_files(root: Path, good_side: int = 32) -> dict[str, str]:
    """Every kind of bad input next to one good image; returns {relative name: error code}.

    Runs as root here, so "unreadable" cannot be made with chmod 000: a FIFO named like an
    image and symlink loops stand in for it (their reads fail in the file system, like EACCES).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(10, good_side, good_side), "RGB").save(root / "good.png")
    good = (root / "good.png").read_bytes()
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "notes.png").write_text("this is not an image\n")
    write_png_bomb(root / "bomb.png", side=12000)       # 144 MP: over the backend's limit
    write_png_bomb(root / "bomb_huge.png", side=40000)  # 1.6 GP: over Pillow's own cap too
    os.mkfifo(root / "pipe.png")
    os.symlink("selfloop.png", root / "selfloop.png")
    (root / "sub").mkdir(exist_ok=True)
    os.symlink("..", root / "sub" / "back")        # a folder loop (recursive scans)
    return {"empty.png": "bad_image", "corrupt.jpg": "bad_image", "truncated.png": "bad_image",
            "notes.png": "bad_image", "bomb.png": "too_large", "bomb_huge.png": "too_large",
            "pipe.png": "unreadable",
            "selfloop.png": "unreadable", "sub/back": "unreadable"}


def make_plain_folder(root: Path, count: int, side: int | list[tuple[int, int]],
                      seed: int = 0) -> list[str]:
    """`count` RGB PNGs named img_0000.png...; `side` is one side or a list of (h, w) cycled."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [(side, side)] if isinstance(side, int) else list(side)
    names = []
    for index in range(count):
        h, w = sizes[index % len(sizes)]
        name = f"img_{index:04d}.png"
        Image.fromarray(smooth_image(seed + index, h, w), "RGB").save(root / name,
                                                                     compress_level=1)
        names.append(name)
    return names


def image_files(root: Path) -> list[str]:
    """Visible files under `root`, relative and sorted (temp files are hidden, so left out)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def wait_for_outputs(process: subprocess.Popen, out: Path, count: int = 2,
                     timeout: float = 240.0) -> None:
    """Wait until a running batch has written `count` outputs (or ended), to interrupt it there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and len(image_files(out)) >= count:
            return
        time.sleep(0.005)
