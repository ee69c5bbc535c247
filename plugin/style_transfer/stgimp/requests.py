"""Procedure arguments (a GimpProcedureConfig) -> a FilterRequest for the daemon.

The option names sent are stclient.options' names, so the daemon validates them with the same
specs as the CLI and the batch runner.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from stclient.errors import BAD_REQUEST, StyleTransferError

from . import pixels
from .filters import ENGINE_TITLES, FilterRequest


def file_path(config: Any, name: str) -> Optional[str]:
    """A file argument's local path, or None when unset. Non-local URIs are refused clearly."""
    gfile = config.get_property(name)
    if gfile is None:
        return None
    path = gfile.get_path()
    if not path:
        uri = gfile.get_uri()
        if not uri:
            return None
        raise StyleTransferError(BAD_REQUEST, f"'{uri}' is not a local file; copy it to a local "
                                              f"folder and choose it as {name}.")
    if not os.path.isfile(path):
        raise StyleTransferError(BAD_REQUEST, f"The {name} '{path}' does not exist or is not a "
                                              "file; choose an existing image.")
    return os.path.abspath(path)


def _model(config: Any) -> Optional[str]:
    model = (config.get_property("model") or "").strip()
    return model or None


def filter_request(engine: str, config: Any) -> FilterRequest:
    endpoint = (config.get_property("endpoint") or "").strip()
    model = _model(config)
    title = ENGINE_TITLES[engine]
    if engine == "adain":
        request = _adain_request(config, model, endpoint)
    else:
        request = _engine_request(engine, title, config, model, endpoint)
    working_size = int(config.get_property("working-size"))
    if working_size > 0:
        request.options["working_size"] = working_size
        request.label += f" @{working_size}px"
    request.options["color_output"] = bool(config.get_property("color-output"))
    return request


def _engine_request(engine: str, title: str, config: Any, model: Optional[str],
                    endpoint: str) -> FilterRequest:
    options: dict[str, Any] = {}
    label = f"{title}: {model or 'default model'}"
    if engine == "pix2pix":
        options["norm"] = config.get_property("norm")
        if options["norm"] == "running":
            label += " (running stats)"
    return FilterRequest(engine=engine, model=model, label=label, options=options,
                         endpoint=endpoint)


def _adain_request(config: Any, model: Optional[str], endpoint: str) -> FilterRequest:
    style_layer = config.get_property("style-layer")
    style_file = file_path(config, "style-file")
    style2_file = file_path(config, "style2-file")
    styles, style_paths, names = [], [], []
    if style_layer is not None:
        styles.append(pixels.read_style_layer(style_layer))   # the layer wins over the file
        names.append(style_layer.get_name())
    elif style_file:
        style_paths.append(style_file)
        names.append(_stem(style_file))
    else:
        raise StyleTransferError(BAD_REQUEST, "AdaIN needs a style: choose a style image "
                                              "(style-file) or an open layer (style-layer).")
    if style2_file:
        style_paths.append(style2_file)       # frames are style 1, paths follow: style 2
        names.append(_stem(style2_file))
    alpha = float(config.get_property("alpha"))
    weight = float(config.get_property("style-weight"))
    use_selection = bool(config.get_property("use-selection"))
    options: dict[str, Any] = {"alpha": alpha,
                               "preserve_color": bool(config.get_property("preserve-color"))}
    two = len(names) == 2
    if two and not use_selection:
        options["style_weights"] = [weight, 1.0 - weight]
        label = f"AdaIN: {names[0]} {weight:.0%} + {names[1]} {1 - weight:.0%}"
    elif two:
        label = f"AdaIN: {names[0]} inside, {names[1]} outside the selection"
    else:
        label = f"AdaIN: {names[0]}"
    label += f" α={alpha:g}"
    if options["preserve_color"]:
        label += ", colours kept"
    return FilterRequest(engine="adain", model=model, label=label, options=options,
                         styles=styles, style_paths=style_paths,
                         restrict_to_selection=use_selection and not two,
                         selection_is_mask=use_selection and two,
                         weights_without_mask=[weight, 1.0 - weight] if two else None,
                         endpoint=endpoint)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
