"""Image domains for MIXGAN training: where batches of content (grey) and style (RGB) come from.

A domain is either built in (``builtin:glyphs``, ``builtin:textures``: generated here, seeded) or a
folder of images (searched recursively). Batches are tensors in [-1, 1], N x C x size x size, and
batch ``k`` depends only on (seed, k), so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from backend.data.glyphs import render_glyphs
from backend.data.textures import render_textures

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
BUILTIN = ("builtin:glyphs", "builtin:textures")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W (grey) or N x H x W x 3 uint8 -> N x C x H x W float in [-1, 1]."""
    array = images[..., None] if images.ndim == 3 else images
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # e.g. np.asarray(PIL image): torch wants writable memory
        array = array.copy()
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """N x C x H x W in [-1, 1] -> N x H x W x C uint8."""
    scaled = ((tensor.detach().cpu().clamp(-1, 1) + 1.0) * 127.5).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass
class Domain:
    """A pool of images (uint8, kept in memory) and how to draw random batches from it."""

    name: str
    images: np.ndarray          # N x S x S (grey) or N x S' x S' x 3, S' >= size
    size: int
    flip: bool = True

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else 3

    def batch(self, count: int, rng: np.random.Generator) -> torch.Tensor:
        picks = rng.integers(len(self.images), size=count)
        side = self.images.shape[1]
        crops = []
        for index in picks:
            image = self.images[index]
            if side > self.size:
                top, left = rng.integers(side - self.size + 1, size=2)
                image = image[top:top + self.size, left:left + self.size]
            if self.flip and rng.random() < 0.5:
                image = image[:, ::-1]
            crops.append(image)
        return to_tensor(np.stack(crops))


def builtin_domain(name: str, size: int, pool: int, seed: int) -> Domain:
    if name == "builtin:glyphs":
        images, _ = render_glyphs(pool, size, seed)
        return Domain(name, images, size, flip=False)  # a mirrored glyph is not a glyph
    if name == "builtin:textures":
        return Domain(name, render_textures(pool, 2 * size, seed), size)
    raise ValueError(f"unknown built-in domain {name!r}; choose {', '.join(BUILTIN)}")


def folder_domain(directory: str | Path, size: int, grey: bool, limit: int = 20000,
                  seed: int = 0) -> Domain:
    """Load up to `limit` images of a folder, scaled so the short side is `size` * 1.25 and
    centre-cropped square (random crops of `size` are taken per batch)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{directory} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > limit:
        order = np.random.default_rng(seed).permutation(len(files))[:limit]
        files = [files[i] for i in sorted(order)]
    side = max(size, round(size * 1.25))
    images = []
    for path in files:
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("L" if grey else "RGB")
        except OSError:
            continue  # unreadable files are skipped, not fatal: folders collect junk
        images.append(np.asarray(ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS)))
    if not images:
        raise ValueError(f"none of the images in {directory} could be read")
    return Domain(str(root), np.stack(images), size)


def load_domain(source: str, size: int, grey: bool, pool: int, seed: int) -> Domain:
    """`source` is builtin:glyphs, builtin:textures or a folder."""
    if source.startswith("builtin:"):
        domain = builtin_domain(source, size, pool, seed)
        if (domain.channels == 1) != grey:
            grey_domain = domain.channels == 1
            raise ValueError(f"{source} is a {'grey' if grey_domain else 'colour'} domain; use "
                             f"it as the {'content' if grey_domain else 'style'} domain")
        return domain
    return folder_domain(source, size, grey, seed=seed)
