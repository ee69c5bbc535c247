"""Regenerate the example images in examples/content and examples/styles (procedural, no
third-party pictures, so they carry no licence strings; deterministic).

    .venv/bin/python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = 256


def _grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    return x, y


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def landscape(rng: np.random.Generator) -> Image.Image:
    """Sky, sun, three ranges of hills and a lake that mirrors them."""
    x, y = _grid()
    sky = np.stack([0.35 + 0.5 * y, 0.55 + 0.35 * y, 0.95 - 0.15 * y], axis=-1)
    sun = np.exp(-(((x - 0.72) ** 2 + (y - 0.25) ** 2) / 0.004))[..., None]
    image = sky * (1 - sun) + np.array([1.0, 0.92, 0.6]) * sun
    colours = [(0.45, 0.55, 0.7), (0.3, 0.5, 0.35), (0.2, 0.38, 0.2)]
    for index, colour in enumerate(colours):
        phase = rng.random() * 6.28
        ridge = 0.42 + 0.08 * index + 0.05 * np.sin(x * (5 + 3 * index) + phase) \
            + 0.03 * _smooth_noise(rng, SIZE, 6 + 2 * index)
        mask = (y > ridge)[..., None]
        shade = (0.85 + 0.3 * (y - ridge))[..., None]
        image = np.where(mask & (y < 0.7)[..., None], np.array(colour) * shade, image)
    lake = y >= 0.7
    mirror = image[np.clip((1.4 - y) * (SIZE - 1), 0, SIZE - 1).astype(int), (x * (SIZE - 1))
                   .astype(int)]
    ripple = 0.05 * np.sin(y * 180 + _smooth_noise(rng, SIZE, 12) * 8)[..., None]
    water = 0.7 * mirror + 0.3 * np.array([0.2, 0.35, 0.55]) + ripple
    image = np.where(lake[..., None], water, image)
    return _to_image(image)


def still_life(rng: np.random.Generator) -> Image.Image:
    """Three shaded balls on a table in front of a wall."""
    x, y = _grid()
    wall = np.stack([0.8 - 0.2 * y, 0.75 - 0.2 * y, 0.65 - 0.15 * y], axis=-1)
    table = np.stack([0.55 + 0.1 * x, 0.35 + 0.05 * x, 0.2 + 0 * x], axis=-1)
    image = np.where((y > 0.6)[..., None], table * (0.8 + 0.4 * (y - 0.6))[..., None], wall)
    balls = [(0.28, 0.55, 0.14, (0.85, 0.15, 0.12)), (0.55, 0.6, 0.11, (0.2, 0.45, 0.85)),
             (0.76, 0.52, 0.16, (0.95, 0.75, 0.15))]
    for cx, cy, radius, colour in balls:
        shadow = np.exp(-(((x - cx - 0.06) / (radius * 1.3)) ** 2
                          + ((y - cy - radius * 0.9) / (radius * 0.35)) ** 2))
        image = image * (1 - 0.5 * shadow[..., None])
        distance = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / radius
        inside = distance < 1
        nz = np.sqrt(np.clip(1 - distance ** 2, 0, 1))
        light = np.clip(0.25 + 0.75 * (nz * 0.7 - (x - cx) / radius * 0.4
                                       - (y - cy) / radius * 0.5), 0, 1)
        highlight = np.clip(light - 0.85, 0, 1) * 4
        ball = np.array(colour) * light[..., None] + highlight[..., None]
        image = np.where(inside[..., None], ball, image)
    image += 0.02 * (_smooth_noise(rng, SIZE, 64)[..., None] - 0.5)
    return _to_image(image)


def city(rng: np.random.Generator) -> Image.Image:
    """A skyline at dusk with lit windows."""
    x, y = _grid()
    sky = np.stack([0.95 - 0.6 * y, 0.55 - 0.3 * y, 0.45 + 0.1 * y], axis=-1)
    canvas = Image.fromarray((np.clip(sky, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    left = 0
    while left < SIZE:
        width = int(rng.integers(22, 48))
        top = int(rng.integers(70, 190))
        shade = int(rng.integers(25, 60))
        draw.rectangle([left, top, left + width - 2, SIZE], fill=(shade, shade, shade + 15))
        for wy in range(top + 6, SIZE - 6, 9):
            for wx in range(left + 4, left + width - 6, 7):
                if rng.random() < 0.45:
                    draw.rectangle([wx, wy, wx + 3, wy + 4], fill=(250, 220, 120))
        left += width
    return canvas.filter(ImageFilter.SMOOTH)


def swirls(rng: np.random.Generator) -> Image.Image:
    """Blue and yellow brush-stroke swirls (a style image)."""
    canvas = Image.new("RGB", (SIZE, SIZE), (20, 40, 110))
    draw = ImageDraw.Draw(canvas)
    palette = [(30, 60, 150), (60, 110, 200), (240, 210, 80), (250, 240, 170), (15, 25, 70)]
    for _ in range(2200):
        px, py = rng.random(2) * SIZE
        angle = np.arctan2(py - SIZE * 0.45, px - SIZE * 0.55) + np.pi / 2 \
            + 0.6 * np.sin(px / 23.0)
        length = rng.integers(6, 16)
        dx, dy = np.cos(angle) * length, np.sin(angle) * length
        colour = palette[int(rng.integers(0, len(palette)))]
        draw.line([(px, py), (px + dx, py + dy)], fill=colour, width=int(rng.integers(2, 5)))
    return canvas.filter(ImageFilter.SMOOTH_MORE)


def mosaic(rng: np.random.Generator) -> Image.Image:
    """Voronoi tiles in warm colours with dark grout (a style image)."""
    x, y = _grid()
    points = rng.random((90, 2)).astype(np.float32)
    distances = (x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2
    order = np.sort(distances, axis=-1)
    nearest = np.argmin(distances, axis=-1)
    colours = np.array([(0.8, 0.3, 0.15), (0.9, 0.65, 0.2), (0.25, 0.5, 0.45),
                        (0.7, 0.15, 0.3), (0.95, 0.85, 0.6)])[rng.integers(0, 5, 90)]
    image = colours[nearest] * (0.85 + 0.3 * _smooth_noise(rng, SIZE, 40))[..., None]
    grout = (np.sqrt(order[..., 1]) - np.sqrt(order[..., 0])) < 0.008
    image[grout] = (0.12, 0.1, 0.1)
    return _to_image(image)


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8))


def main() -> None:
    rng = np.random.default_rng(2024)
    outputs = {"content/landscape.jpg": landscape, "content/still_life.jpg": still_life,
               "content/city.jpg": city, "styles/swirls.jpg": swirls,
               "styles/mosaic.jpg": mosaic}
    for relative, make in outputs.items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        make(rng).save(path, quality=88, optimize=True)
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
