"""Running one filter: read the layer, ask the daemon, insert the result as a new layer.

The source layer is only ever read. The result goes into a NEW layer directly above it, with the
same size and offsets, inside one undo group. With a selection, the WHOLE layer is stylized and
the selection (feathering included) becomes the new layer's alpha, so outside it the new layer is
transparent and soft edges blend with the original below.

Engines with an intermediate option (the optimisation engines' `update_every`): the new layer is
made at the first image so far and updated in place at each next one (its name says which
iteration it shows), so the user sees the result grow and can stop when it looks right. GIMP's
Cancel kills the plug-in: the layer then keeps the last image it got. The final result replaces
it and takes the plain name.

Why the whole layer: the networks normalise with statistics of the whole image (instance norms,
AdaIN's feature statistics) and see context around every pixel, so stylizing only the selection's
bounding box made the look inside the selection depend on its size and shape (up to 241 levels
from "stylize the layer, then mask"). Sending the layer gives exactly the whole-layer result
inside the selection; the cost is that of the whole layer (a working size makes it cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from stclient import registry  # noqa: E402
from stclient.errors import (BAD_IMAGE, INTERNAL, MODEL_MISSING, UNAVAILABLE,  # noqa: E402
                             UNKNOWN_MODEL, StyleTransferError)
from stclient.probe import surely_absent  # noqa: E402
from stclient.protocol import ImageFrame  # noqa: E402

from . import pixels  # noqa: E402
from .timing import Timer  # noqa: E402

@dataclass
class FilterRequest:
    """Everything one filter run needs besides the image and the layer."""

    engine: str
    model: Optional[str]
    label: str                                   # the new layer's name
    options: dict[str, Any] = field(default_factory=dict)
    styles: list[ImageFrame] = field(default_factory=list)
    style_paths: list[str] = field(default_factory=list)
    restrict_to_selection: bool = True           # selection = where the effect applies
    selection_is_mask: bool = False              # selection = where style 1 goes (2 styles)
    # the options to use instead when there is no selection to be the mask (the two mixed)
    options_without_mask: Optional[dict[str, Any]] = None
    endpoint: str = ""


PING_TIMEOUT = 5.0
# What to run when the backend cannot start or answer (install.py diagnoses each part)
CHECK_HINT = "To find out why, run `python3 install.py --check` in the style-transfer folder."


def daemon_is_up() -> bool:
    """Something listens at the default daemon's endpoint (a hint: no request is sent)."""
    from stclient.client import load_config
    return not surely_absent(load_config().get("endpoint") or None)


def with_check_hint(error: StyleTransferError) -> StyleTransferError:
    """A backend that cannot be started or reached: say what finds the cause."""
    if error.code != UNAVAILABLE or CHECK_HINT in error.message:
        return error
    return StyleTransferError(error.code, f"{error.message} {CHECK_HINT}")


def make_client(endpoint: str, autostart: bool = True):
    """The shared client. The default daemon is started (detached) when nothing answers and
    `autostart` is on; an explicit endpoint names a daemon someone runs on purpose, so it is only
    checked, never started, and a dead one is reported at once (not after the reply timeout)."""
    from stclient.client import Client
    if not endpoint and autostart:
        return Client()
    client = Client(endpoint=endpoint or None, autostart=False)
    try:
        # nobody listening there is known at once; only a socket that accepts is pinged
        alive = not surely_absent(client.endpoint) and client.ping(PING_TIMEOUT)
    except StyleTransferError:
        client.close()
        raise
    if not alive:
        client.close()
        if endpoint:
            raise StyleTransferError(
                UNAVAILABLE, f"No style-transfer daemon answers at {endpoint}. Start one there "
                             f"with `python -m backend serve --endpoint {endpoint}`, or leave the "
                             "endpoint empty to use the default daemon (started automatically).")
        raise StyleTransferError(
            UNAVAILABLE, f"The style-transfer daemon is not running (default endpoint "
                         f"{client.endpoint}). It starts by itself when you run a filter, or "
                         "start it with `python -m backend serve` in the project folder.")
    return client


def check_layer(drawable: Any) -> Gimp.Layer:
    if drawable is None:
        raise StyleTransferError(BAD_IMAGE, "No layer is selected; select the layer to stylize.")
    if not drawable.is_layer() or drawable.is_layer_mask():
        raise StyleTransferError(BAD_IMAGE, f"'{drawable.get_name()}' is a mask or channel; "
                                            "select a layer (not its mask) and run the filter "
                                            "again.")
    return drawable


def run_filter(image: Gimp.Image, drawable: Gimp.Layer, request: FilterRequest,
               timer: Timer, client: Any = None) -> Gimp.Layer:
    """Stylize `drawable` as `request` says and return the new layer."""
    layer = check_layer(drawable)
    layout = pixels.layout_of(layer)
    width, height = layer.get_width(), layer.get_height()
    region = (0, 0, width, height)
    mask_frame: Optional[ImageFrame] = None
    restrict = False
    with timer.stage("read"):
        if request.selection_is_mask:
            if not Gimp.Selection.is_empty(image):
                mask_frame = pixels.selection_mask(image, layer, 0, 0, width, height)
        elif request.restrict_to_selection:
            # raises when the selection misses the layer; the layer is sent whole (see above)
            restrict = pixels.selection_rect(image, layer) is not None
        content = pixels.read_region(layer, layout, *region)
    options = dict(request.options)
    if request.selection_is_mask and mask_frame is None and request.options_without_mask:
        options.update(request.options_without_mask)
    timer.extra.update(width=region[2], height=region[3], channels=layout.channels,
                       dtype=layout.dtype)

    starting = client is None and not request.endpoint and not daemon_is_up()
    Gimp.progress_init("Starting the style-transfer backend (the first time takes a few "
                       "seconds)…" if starting else f"{request.label}…")
    owns_client = client is None
    client = client or make_client(request.endpoint)
    live = _LiveLayer(image, layer, request.label, region, restrict, content)
    every = registry.card(request.engine).intermediate_option
    try:
        with timer.stage("request"):
            result, data = client.stylize(
                content, request.engine, model=request.model, options=options,
                styles=request.styles, style_paths=request.style_paths, mask=mask_frame,
                on_progress=_progress,
                on_intermediate=live.show if every and options.get(every) else None)
    except StyleTransferError as error:
        raise _explain(error, request.engine, client) from None
    finally:
        if owns_client:
            client.close()
    compute = float(data.get("compute_s", 0.0) or 0.0)
    timer.extra["compute_s"] = round(compute, 4)
    timer.extra["transfer_s"] = round(max(0.0, timer.stages["request"] - compute), 4)
    timer.extra["intermediate_updates"] = live.updates
    _check_result(result, content)

    with timer.stage("write"):
        new_layer = live.finish(result)
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return new_layer


class _LiveLayer:
    """The result layer while an engine sends its image so far: made at the first one, updated
    in place after (pixel writes outside the undo history: the one undo step is the layer's
    insertion), finished with the result."""

    def __init__(self, image: Gimp.Image, source: Gimp.Layer, label: str,
                 region: tuple[int, int, int, int], restrict: bool,
                 content: ImageFrame) -> None:
        self.image, self.source, self.label = image, source, label
        self.region, self.restrict, self.content = region, restrict, content
        self.layer: Optional[Gimp.Layer] = None
        self.updates = 0

    def show(self, frame: ImageFrame, fraction: float, text: str) -> None:
        _check_result(frame, self.content)
        self._put(frame, f"{self.label} ({text} so far)")
        self.updates += 1
        Gimp.displays_flush()

    def finish(self, result: ImageFrame) -> Gimp.Layer:
        self._put(result, self.label)
        assert self.layer is not None
        return self.layer

    def _put(self, frame: ImageFrame, name: str) -> None:
        if self.layer is None:
            self.layer = _insert_result(self.image, self.source, name, frame, self.region,
                                        self.restrict)
            return
        pixels.write_region(self.layer, frame, self.region[0], self.region[1])  # no undo step
        self.image.undo_freeze()          # the mask and the new name would each make one
        try:
            if self.restrict:
                _apply_selection(self.layer)
            self.layer.set_name(name)
        finally:
            self.image.undo_thaw()


def _apply_selection(layer: Gimp.Layer) -> None:
    """The selection (feathering included) becomes the layer's alpha."""
    mask = layer.create_mask(Gimp.AddMaskType.SELECTION)
    layer.add_mask(mask)
    layer.remove_mask(Gimp.MaskApplyMode.APPLY)


def _progress(fraction: float, text: str) -> None:
    if text:
        Gimp.progress_set_text(text)
    Gimp.progress_update(min(1.0, max(0.0, fraction)))


def _check_result(result: ImageFrame, content: ImageFrame) -> None:
    # a grey layer may come back in colour (the color_output option): 1 -> 3, 2 -> 4 channels
    colour_of_grey = content.channels in (1, 2) and result.channels == content.channels + 2
    if (result.width, result.height, result.dtype) != \
            (content.width, content.height, content.dtype) or \
            (result.channels != content.channels and not colour_of_grey):
        raise StyleTransferError(
            INTERNAL, f"The daemon returned a {result.width}x{result.height}x{result.channels} "
                      f"{result.dtype} image for a {content.width}x{content.height}x"
                      f"{content.channels} {content.dtype} layer; update the backend.")


def _insert_result(image: Gimp.Image, source: Gimp.Layer, name: str, result: ImageFrame,
                   region: tuple[int, int, int, int], restrict: bool) -> Gimp.Layer:
    """New layer above `source`, same size and offsets; one undo step. A colour result for a
    grey image converts the image to RGB first (in the same undo step): GIMP layers share
    their image's mode, and turning the result grey would throw the style's colour away."""
    image.undo_group_start()
    try:
        if result.channels in (3, 4) and image.get_base_type() == Gimp.ImageBaseType.GRAY:
            image.convert_rgb()
        layer_type = source.type_with_alpha() if restrict else source.type()
        new_layer = Gimp.Layer.new(image, name, source.get_width(), source.get_height(),
                                   layer_type, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(new_layer, source.get_parent(), image.get_item_position(source))
        _, off_x, off_y = source.get_offsets()
        new_layer.set_offsets(off_x, off_y)
        if restrict:
            new_layer.fill(Gimp.FillType.TRANSPARENT)
        pixels.write_region(new_layer, result, region[0], region[1])
        if restrict:
            _apply_selection(new_layer)
        image.set_selected_layers([new_layer])
    finally:
        image.undo_group_end()
    return new_layer


def _explain(error: StyleTransferError, engine: str, client: Any) -> StyleTransferError:
    """Unknown/missing model: make sure the message names the models that are installed."""
    if error.code not in (UNKNOWN_MODEL, MODEL_MISSING):
        return with_check_hint(error)
    try:
        listing = client.models().get("models", [])
    except StyleTransferError:
        return error
    installed = [m.get("name") for m in listing
                 if m.get("engine") in registry.model_engines(engine) and m.get("installed")
                 and m.get("name")]
    if installed and not all(name in error.message for name in installed):
        return StyleTransferError(error.code, f"{error.message} Installed {engine} models: "
                                              f"{', '.join(installed)}.")
    if not installed:
        return StyleTransferError(error.code, f"{error.message} No {engine} model is installed; "
                                              "see `python3 install.py --models recommended`.")
    return error

