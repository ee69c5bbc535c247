"""The project's example photos (examples/), scaled down for tests: real colours, real edges."""

from __future__ import annotations

import numpy as np
from PIL import Image

from backend import PROJECT_ROOT


def example(path: str, size: tuple[int, int]) -> np.ndarray:
    """examples/<path> as H x W x 3 uint8 at `size` (width, height)."""
    with Image.open(PROJECT_ROOT / "examples" / path) as image:
        return np.asarray(image.convert("RGB").resize(size, Image.BILINEAR))
