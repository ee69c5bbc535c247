"""Sampling (engines whose card can draw new images, e.g. MIXGAN): new images from a model's
prior, as layers of a new GIMP image."""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from stclient import registry  # noqa: E402
from stclient.errors import INTERNAL, StyleTransferError  # noqa: E402

from . import pixels  # noqa: E402
from .filters import make_client  # noqa: E402

_LAYER_TYPES = {1: Gimp.ImageType.GRAY_IMAGE, 2: Gimp.ImageType.GRAYA_IMAGE,
                3: Gimp.ImageType.RGB_IMAGE, 4: Gimp.ImageType.RGBA_IMAGE}
_PRECISIONS = {"uint8": Gimp.Precision.U8_NON_LINEAR, "uint16": Gimp.Precision.U16_NON_LINEAR,
               "float32": Gimp.Precision.FLOAT_NON_LINEAR}


def sample_image(config: Any, engine: str) -> Gimp.Image:
    title = registry.card(engine).title
    model = (config.get_property("model") or "").strip() or None
    count = int(config.get_property("count"))
    seed = int(config.get_property("seed"))
    Gimp.progress_init(f"{title}: sampling…")
    client = make_client((config.get_property("endpoint") or "").strip())
    try:
        frames, data = client.sample(model=model, count=count, seed=seed,
                                     on_progress=_progress, engine=engine)
    finally:
        client.close()
    if not frames:
        raise StyleTransferError(INTERNAL, "The daemon returned no sample; update the backend.")
    first = frames[0]
    base = Gimp.ImageBaseType.GRAY if first.channels in (1, 2) else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new_with_precision(first.width, first.height, base,
                                          _PRECISIONS[first.dtype])
    name = data.get("model") or model or title
    for index, frame in enumerate(frames):
        layer = Gimp.Layer.new(image, f"{title}: {name} seed {seed} #{index + 1}", frame.width,
                               frame.height, _LAYER_TYPES[frame.channels], 100.0,
                               Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        pixels.write_region(layer, frame, 0, 0)
    Gimp.progress_end()
    return image


def _progress(fraction: float, text: str) -> None:
    if text:
        Gimp.progress_set_text(text)
    Gimp.progress_update(min(1.0, max(0.0, fraction)))
