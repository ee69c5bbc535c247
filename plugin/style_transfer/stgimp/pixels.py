"""Drawable pixels <-> protocol ImageFrames, through Gegl buffers in the drawable's own layout.

Why these formats: the networks expect perceptual (gamma-encoded) sRGB values, so pixels are read
as R'G'B'(A) / Y'(A) whatever the image's storage (Babl converts linear images both ways), in the
image's own precision (8-bit as uint8, 16-bit as uint16, everything else as float32) so 16/32-bit
work is never squashed to 8 bits. Grey images travel as grey channels (1 or 2): the backend turns
them into RGB for the network and back, exactly as it does for grey files in the CLI and batch
runner, and it is a third of the bytes. Alpha travels along and comes back untouched.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from typing import Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from stclient.errors import BAD_IMAGE, StyleTransferError  # noqa: E402
from stclient.protocol import ImageFrame  # noqa: E402

_U8 = {"U8_LINEAR", "U8_NON_LINEAR", "U8_PERCEPTUAL"}
_U16 = {"U16_LINEAR", "U16_NON_LINEAR", "U16_PERCEPTUAL"}
_BABL_TYPE = {"uint8": "u8", "uint16": "u16", "float32": "float"}


@dataclass(frozen=True)
class Layout:
    """How one drawable's pixels are read, sent and written back."""

    grey: bool
    alpha: bool
    dtype: str           # uint8 | uint16 | float32

    @property
    def channels(self) -> int:
        return (1 if self.grey else 3) + (1 if self.alpha else 0)

    @property
    def babl_format(self) -> str:
        model = ("Y'" if self.grey else "R'G'B'") + ("A" if self.alpha else "")
        return f"{model} {_BABL_TYPE[self.dtype]}"

    def with_alpha(self, alpha: bool) -> "Layout":
        return Layout(self.grey, alpha, self.dtype)


def precision_dtype(image: Gimp.Image) -> str:
    """uint8 / uint16 for 8/16-bit integer images; float32 for half, float, double and u32."""
    name = image.get_precision().value_name.replace("GIMP_PRECISION_", "")
    if name in _U8:
        return "uint8"
    if name in _U16:
        return "uint16"
    return "float32"


def layout_of(drawable: Gimp.Drawable) -> Layout:
    """Indexed images are read as RGB (Babl resolves the palette); grey stays grey."""
    image = drawable.get_image()
    return Layout(grey=bool(drawable.is_gray()), alpha=bool(drawable.has_alpha()),
                  dtype=precision_dtype(image))


def _to_wire(data: bytes, dtype: str) -> bytes:
    """The protocol is little-endian; Babl gives native order."""
    if sys.byteorder == "little" or dtype == "uint8":
        return data
    values = array("H" if dtype == "uint16" else "f", data)
    values.byteswap()
    return values.tobytes()


_from_wire = _to_wire   # byte swapping is its own inverse


def read_region(drawable: Gimp.Drawable, layout: Layout, x: int, y: int, width: int,
                height: int) -> ImageFrame:
    """Pixels of a rectangle in drawable coordinates, as an ImageFrame in `layout`."""
    buffer = drawable.get_buffer()
    data = buffer.get(Gegl.Rectangle.new(x, y, width, height), 1.0, layout.babl_format,
                      Gegl.AbyssPolicy.CLAMP)
    frame = ImageFrame(width, height, layout.channels, layout.dtype,
                       _to_wire(bytes(data), layout.dtype))
    return frame.check("layer")


def write_region(drawable: Gimp.Drawable, frame: ImageFrame, x: int, y: int) -> None:
    """Write a result frame into a drawable at (x, y) (drawable coordinates)."""
    layout = Layout(grey=frame.channels in (1, 2), alpha=frame.channels in (2, 4),
                    dtype=frame.dtype)
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(x, y, frame.width, frame.height), layout.babl_format,
               _from_wire(bytes(frame.data), frame.dtype))
    buffer.flush()
    drawable.update(x, y, frame.width, frame.height)


def read_style_layer(layer: Gimp.Drawable) -> ImageFrame:
    """A style image is only looked at for its statistics: 8-bit RGB is plenty."""
    layout = Layout(grey=False, alpha=False, dtype="uint8")
    return read_region(layer, layout, 0, 0, layer.get_width(), layer.get_height())


def selection_mask(image: Gimp.Image, drawable: Gimp.Drawable, x: int, y: int, width: int,
                   height: int) -> ImageFrame:
    """The selection over a rectangle of the drawable, float32 0..1 (outside the canvas = 0)."""
    off_x, off_y = drawable.get_offsets()[1:]
    selection = image.get_selection()
    data = selection.get_buffer().get(Gegl.Rectangle.new(off_x + x, off_y + y, width, height),
                                      1.0, "Y float", Gegl.AbyssPolicy.NONE)
    return ImageFrame(width, height, 1, "float32", _to_wire(bytes(data), "float32")).check("mask")


Rect = tuple[int, int, int, int]


def selection_rect(image: Gimp.Image, drawable: Gimp.Drawable) -> Optional[Rect]:
    """(x, y, w, h) of the selection's bounding box within the drawable, or None without one.

    Raises when there is a selection that does not touch the drawable at all.
    """
    if Gimp.Selection.is_empty(image):
        return None
    found, x, y, width, height = drawable.mask_intersect()
    if not found or width <= 0 or height <= 0:
        raise StyleTransferError(
            BAD_IMAGE, "The selection does not overlap the layer; select part of the layer, or "
                       "remove the selection (Select > None) to stylize all of it.")
    return x, y, width, height

