"""The preview of a filter dialog: the current settings on a small copy of the layer (longest side
at most PREVIEW_SIDE), computed by the daemon in the background while the dialog stays usable.

It is redrawn when a setting changes (after a short pause, so dragging a slider sends one
request, not fifty) or on "Preview now"; "Stop" cancels the request in the daemon. A newer
request cancels the one before. With a selection that limits the effect, the preview shows the
result inside it over the original outside, as the filter will. The preview is computed at the
small size: textures and strokes are coarser than on the full layer, and the caption says the
size, the time and a reduced precision when the daemon used one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GdkPixbuf, Gegl, Gimp, GimpUi, GLib, Gtk  # noqa: E402

from stclient.errors import StyleTransferError  # noqa: E402
from stclient.options import PHOTO_RADIUS  # noqa: E402
from stclient.protocol import ImageFrame  # noqa: E402

from .background import Background  # noqa: E402
from .filters import FilterRequest  # noqa: E402

PREVIEW_SIDE = 320         # longest side of the preview, in pixels
SETTLE_MS = 500            # quiet time after a change before a new preview is asked for
FULL_PRECISION = ("", "fp32", "default")


@dataclass
class PreviewInput:
    """The layer (and selection) at preview size, 8-bit RGB (grey for grey layers)."""

    content: ImageFrame
    selection: Optional[bytes]        # 8-bit coverage per pixel, where the effect applies
    mask: Optional[ImageFrame]        # the selection as the style mask (two styles)
    scale: float


def read_input(image: Gimp.Image, layer: Gimp.Drawable, request: FilterRequest,
               side: int = PREVIEW_SIDE) -> PreviewInput:
    """The layer scaled to fit `side` (Gegl's mipmaps: fast), and the selection at that size."""
    width, height = layer.get_width(), layer.get_height()
    scale = min(1.0, side / max(width, height))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    grey = bool(layer.is_gray())          # a grey layer stays grey (or gets colour) as it will
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, small_w, small_h), scale,
                                  "Y' u8" if grey else "R'G'B' u8", Gegl.AbyssPolicy.CLAMP)
    content = ImageFrame(small_w, small_h, 1 if grey else 3, "uint8", bytes(data))
    coverage = None
    if (request.restrict_to_selection or request.selection_is_mask) \
            and not Gimp.Selection.is_empty(image):
        _, off_x, off_y = layer.get_offsets()
        coverage = bytes(image.get_selection().get_buffer().get(
            Gegl.Rectangle.new(round(off_x * scale), round(off_y * scale), small_w, small_h),
            scale, "Y u8", Gegl.AbyssPolicy.NONE))
    mask = None
    if request.selection_is_mask and coverage is not None:
        mask = ImageFrame(small_w, small_h, 1, "uint8", coverage)
    return PreviewInput(content, coverage if request.restrict_to_selection else None, mask,
                        scale)


def rgb_bytes(frame: ImageFrame) -> bytes:
    """8-bit RGB of a 1- or 3-channel frame (grey repeated into the three channels)."""
    data = bytes(frame.data)
    if frame.channels == 3:
        return data
    rgb = bytearray(3 * frame.width * frame.height)
    for channel in range(3):
        rgb[channel::3] = data
    return bytes(rgb)


def to_pixbuf(frame: ImageFrame) -> GdkPixbuf.Pixbuf:
    return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(rgb_bytes(frame)),
                                           GdkPixbuf.Colorspace.RGB, False, 8, frame.width,
                                           frame.height, frame.width * 3)


def inside_selection(result: ImageFrame, original: ImageFrame,
                     coverage: bytes) -> GdkPixbuf.Pixbuf:
    """The result where the selection covers, the original elsewhere (soft edges blended)."""
    count = result.width * result.height
    rgba = bytearray(4 * count)
    data = rgb_bytes(result)
    for channel in range(3):
        rgba[channel::4] = data[channel::3]
    rgba[3::4] = coverage[:count]
    over = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(bytes(rgba)), GdkPixbuf.Colorspace.RGB,
                                           True, 8, result.width, result.height, 4 * result.width)
    below = to_pixbuf(original).copy()
    over.composite(below, 0, 0, result.width, result.height, 0, 0, 1, 1,
                   GdkPixbuf.InterpType.NEAREST, 255)
    return below


class Preview:
    """The preview frame: picture, caption, "Preview now" and "Stop"."""

    def __init__(self, calls: Background, build: Callable[[], tuple[FilterRequest, PreviewInput]],
                 engine: str) -> None:
        self.calls, self.build, self.engine = calls, build, engine
        self.frame = GimpUi.Frame.new("Preview")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        self.picture = Gtk.Image()
        self.picture.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        self.caption = Gtk.Label(label="")
        self.caption.set_xalign(0.0)
        self.caption.set_line_wrap(True)
        self.caption.set_max_width_chars(48)
        buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.now = Gtk.Button.new_with_mnemonic("Pre_view now")
        self.stop = Gtk.Button.new_with_mnemonic("Sto_p")
        self.stop.set_sensitive(False)
        self.now.connect("clicked", lambda *_: self.ask_now())
        self.stop.connect("clicked", lambda *_: self.cancel("Preview stopped."))
        buttons.pack_start(self.now, False, False, 0)
        buttons.pack_start(self.stop, False, False, 0)
        box.pack_start(self.picture, False, False, 0)
        box.pack_start(self.caption, False, False, 0)
        box.pack_start(buttons, False, False, 0)
        self.frame.add(box)
        self.frame.show_all()
        self._timer: Optional[int] = None
        self.enabled = True
        self.rendered: Optional[dict[str, Any]] = None     # what the last preview was
        self.last_input: Optional[PreviewInput] = None
        self.last_result: Optional[ImageFrame] = None

    # ------------------------------------------------------------------ requests
    def disable(self, text: str) -> None:
        """No backend: changes no longer ask for previews ("Preview now" still tries)."""
        self.enabled = False
        self.cancel()
        self._show_text(text)

    def ask_now(self) -> None:
        self.enabled = True
        self.refresh()

    def changed(self, *_args: Any) -> None:
        """A setting changed: ask again once the user pauses."""
        if not self.enabled:
            return
        if self._timer is not None:
            GLib.source_remove(self._timer)
        self._timer = GLib.timeout_add(SETTLE_MS, self._settled)

    def _settled(self) -> bool:
        self._timer = None
        self.refresh()
        return False

    def refresh(self) -> None:
        try:
            request, source = self.build()
        except StyleTransferError as error:       # e.g. no style chosen yet
            self.calls.cancel("preview")
            self._show_text(error.message)
            return
        options = dict(request.options)
        if "working_size" in options:
            options["working_size"] = 0          # the preview is small already
        if options.get(PHOTO_RADIUS):            # pixels of the layer: as many at preview size
            options[PHOTO_RADIUS] = max(1, round(options[PHOTO_RADIUS] * source.scale))
        if request.selection_is_mask and source.mask is None and request.options_without_mask:
            options.update(request.options_without_mask)
        started = time.monotonic()

        def work(client: Any, cancel: Any) -> tuple[ImageFrame, dict[str, Any]]:
            return client.stylize(source.content, request.engine, model=request.model,
                                  options=options, styles=request.styles,
                                  style_paths=request.style_paths, mask=source.mask,
                                  cancel_event=cancel,
                                  on_progress=lambda fraction, text: self.calls.deliver(
                                      self._progress, fraction))

        self.stop.set_sensitive(True)
        self._show_text("Rendering the preview…")
        self.calls.restart("preview", work,
                           lambda reply: self._done(reply, source, started),
                           self._failed)

    def cancel(self, text: str = "") -> None:
        if self.calls.cancel("preview") and text:
            self._show_text(text)
        self.stop.set_sensitive(False)

    # ------------------------------------------------------------------ outcomes (UI thread)
    def _progress(self, fraction: float) -> bool:
        if "preview" in self.calls.pending():
            self.caption.set_text(f"Rendering the preview… {100 * fraction:.0f}%")
        return False

    def _done(self, reply: tuple[ImageFrame, dict[str, Any]], source: PreviewInput,
              started: float) -> None:
        result, data = reply
        if source.selection is not None:
            pixbuf = inside_selection(result, source.content, source.selection)
        else:
            pixbuf = to_pixbuf(result)
        self.picture.set_from_pixbuf(pixbuf)
        seconds = time.monotonic() - started
        precision = str(data.get("precision") or "")
        note = "" if precision in FULL_PRECISION else f", {precision} precision"
        self.caption.set_text(f"{result.width}×{result.height} preview in {seconds:.1f} s"
                              f"{note} (the full layer shows finer detail)")
        self.stop.set_sensitive(False)
        self.last_input, self.last_result = source, result
        self.rendered = {"width": result.width, "height": result.height,
                         "seconds": round(seconds, 3), "precision": precision,
                         "selection": source.selection is not None}

    def _failed(self, error: StyleTransferError) -> None:
        self.stop.set_sensitive(False)
        self._show_text(f"No preview: {error.message}")

    def _show_text(self, text: str) -> None:
        self.caption.set_text(text)
