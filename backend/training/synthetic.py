"""Procedural training sets whose true mapping is known, so that training can be *measured*.

Scenes: a two-colour gradient background with random circles, boxes, triangles and lines, in a
warm palette (hues 0-60 degrees, most of them red-orange). Known mappings:
- `hue_rotate`: channels (R, G, B) -> (B, R, G), a 120 degree hue rotation; invertible, and the
  warm palette becomes a green-cyan one, so the two domains are told apart by colour alone.
- `pix2pix_target`: the hue rotation inverted (1 - x) with black outlines where the scene has
  edges: a fixed colour and edge transform, like the reference's label/edge tasks.
Used by the fast tests and by bench/train_proof.py.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROTATION = (2, 0, 1)          # output channel i takes input channel ROTATION[i]


def _warm_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = rng.triangular(0.0, 10.0, 60.0) / 360.0
    saturation = rng.uniform(0.45, 1.0)
    value = rng.uniform(0.35, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """One size x size scene, H x W x 3 float32 in 0..1."""
    c0, c1 = np.array(_warm_colour(rng), np.float32), np.array(_warm_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    t = np.clip(0.5 + (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle), 0, 1)[..., None]
    background = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        kind = int(rng.integers(0, 4))
        x0, y0 = rng.uniform(-0.1, 0.9, 2) * size
        w, h = rng.uniform(0.15, 0.45, 2) * size
        colour = _warm_colour(rng)
        if kind == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + w], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 2:
            draw.polygon([(x0, y0 + h), (x0 + w, y0 + h), (x0 + w / 2, y0)], fill=colour)
        else:
            x1, y1 = rng.uniform(0, 1, 2) * size
            draw.line([x0, y0, x1, y1], fill=colour, width=max(1, size // 32))
    return np.asarray(image, dtype=np.float32) / 255.0


def hue_rotate(image: np.ndarray) -> np.ndarray:
    """The CycleGAN task's true A -> B map (an invertible channel rotation)."""
    return image[..., list(ROTATION)]


def edges(image: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """Boolean H x W map of luminance edges (central differences, replicated borders)."""
    luma = image @ np.array([0.299, 0.587, 0.114], np.float32)
    padded = np.pad(luma, 1, mode="edge")
    gx = padded[1:-1, 2:] - padded[1:-1, :-2]
    gy = padded[2:, 1:-1] - padded[:-2, 1:-1]
    return np.hypot(gx, gy) > threshold


def pix2pix_target(image: np.ndarray) -> np.ndarray:
    """The pix2pix task's true input -> target map: inverted hue rotation, black outlines."""
    target = 1.0 - hue_rotate(image)
    target[edges(image)] = 0.0
    return target


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def scenes(count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [scene(rng, size) for _ in range(count)]


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)


def write_unpaired(root: Path, count: int, size: int, seed: int) -> tuple[Path, Path]:
    """root/A: scenes; root/B: hue-rotated *other* scenes (no pairs exist between them)."""
    domain_a, domain_b = root / "A", root / "B"
    for i, image in enumerate(scenes(count, size, seed)):
        _save(domain_a / f"a{i:04d}.png", image)
    for i, image in enumerate(scenes(count, size, seed + 10_000)):
        _save(domain_b / f"b{i:04d}.png", hue_rotate(image))
    return domain_a, domain_b


def write_paired(root: Path, count: int, size: int, seed: int, aligned: bool = False) -> Path:
    """aligned: root/pairs/NNNN.png holding input|target side by side; otherwise root/input and
    root/target with the same file names. Returns the folder (pairs) or root."""
    for i, image in enumerate(scenes(count, size, seed)):
        target = pix2pix_target(image)
        if aligned:
            _save(root / "pairs" / f"{i:04d}.png", np.concatenate([image, target], axis=1))
        else:
            _save(root / "input" / f"{i:04d}.png", image)
            _save(root / "target" / f"{i:04d}.png", target)
    return root / "pairs" if aligned else root


def write_styles(root: Path, count: int, size: int, seed: int) -> tuple[Path, Path]:
    """AdaIN toy set: root/content (warm scenes) and root/style (striped, cool, high-contrast
    textures), so that the style statistics differ clearly from the content's."""
    rng = np.random.default_rng(seed + 20_000)
    for i, image in enumerate(scenes(count, size, seed)):
        _save(root / "content" / f"c{i:04d}.png", image)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(count):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.2, 0.6)
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * freq) > 0
        colours = rng.uniform(0, 1, (2, 3)).astype(np.float32)
        colours[:, 2] = np.maximum(colours[:, 2], 0.6)      # cool, blue-heavy
        colours[:, 0] *= 0.3
        image = np.where(wave[..., None], colours[0], colours[1])
        image = image + rng.normal(0, 0.08, image.shape).astype(np.float32)
        _save(root / "style" / f"s{i:04d}.png", image)
    return root / "content", root / "style"


# ---------------------------------------------------------------------------- measuring

def mapping_error(generate, inputs: list[np.ndarray], truth) -> tuple[float, float]:
    """(mean |generate(x) - truth(x)|, mean |x - truth(x)|) over held-out images, in 0..1 units.

    `generate` maps an N x 3 x H x W tensor in [-1, 1] to the same; the second number is the
    identity map's error, the baseline a trained model must beat.
    """
    import torch

    learned, identity = [], []
    for image in inputs:
        tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[None] * 2.0 - 1.0
        with torch.no_grad():
            output = generate(tensor).float().clamp(-1, 1)
        result = (output[0].cpu().numpy().transpose(1, 2, 0) + 1.0) / 2.0
        expected = truth(image)
        learned.append(float(np.abs(result - expected).mean()))
        identity.append(float(np.abs(image - expected).mean()))
    return float(np.mean(learned)), float(np.mean(identity))


def random_vgg_state_dict(seed: int = 0) -> dict:
    """A vgg_normalised-layout encoder with random He-normal weights (activations keep their
    scale through the layers) and a first 1x1 conv that swaps RGB to BGR and centres it, like
    the released one. Stands in for the real encoder where the real one cannot be downloaded."""
    import torch

    from backend.networks.adain import VggEncoder

    generator = torch.Generator().manual_seed(seed)
    encoder = VggEncoder()
    with torch.no_grad():
        for index, module in enumerate(encoder):
            if not isinstance(module, torch.nn.Conv2d):
                continue
            if index == 0:
                module.weight.zero_()
                for out_channel, in_channel in enumerate((2, 1, 0)):
                    module.weight[out_channel, in_channel] = 1.0
                module.bias.fill_(-0.45)
                continue
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                * (2.0 / fan_in) ** 0.5)
            module.bias.zero_()
    return encoder.state_dict()
