"""Procedure arguments (a GimpProcedureConfig) -> a FilterRequest for the daemon.

The option names sent are the card's option names, so the daemon validates them with the same
specs as the CLI and the batch runner.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from stclient import registry
from stclient.card import EngineCard
from stclient.errors import BAD_REQUEST, StyleTransferError

from . import pixels
from .arguments import option_values
from .filters import FilterRequest


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


def _model(config: Any, card: EngineCard) -> Optional[str]:
    """The model argument (None: the default; cards without one use no model)."""
    if "model" not in card.gimp_arguments:
        return None
    model = (config.get_property("model") or "").strip()
    return model or None


def filter_request(engine: str, config: Any) -> FilterRequest:
    endpoint = (config.get_property("endpoint") or "").strip()
    card = registry.card(engine)
    model = _model(config, card)
    options = option_values(config, card)
    if card.styles.takes_images:
        request = _style_request(card, config, model, endpoint, options)
    elif card.styles.builtin_styles:
        request = _builtin_request(card, config, model, endpoint, options)
    else:
        request = FilterRequest(engine=engine, model=model,
                                label=f"{card.title}: {model or 'default model'}",
                                options=options, endpoint=endpoint)
    request.label += _changed_options(card, options)
    if options.get("working_size"):
        request.label += f" @{options['working_size']}px"
    return request


def _changed_options(card: EngineCard, options: dict[str, Any]) -> str:
    """What the layer name says about choices left away from their defaults (e.g. pix2pix's
    running statistics)."""
    words = [f" ({value} {spec.name.replace('_', ' ')})" for spec in card.options
             if spec.kind == "choice" and (value := options.get(spec.name)) is not None
             and value != spec.default]
    return "".join(words)


def _style_request(card: EngineCard, config: Any, model: Optional[str], endpoint: str,
                   options: dict[str, Any]) -> FilterRequest:
    """Engines that take style images: a layer or a file, an optional second style mixed by
    weight or (with the selection as a mask) placed inside/outside."""
    style_layer = config.get_property("style-layer")
    style_file = file_path(config, "style-file")
    style2_file = file_path(config, "style2-file") if "style2-file" in card.gimp_arguments \
        else None
    styles, style_paths, names = [], [], []
    if style_layer is not None:
        styles.append(pixels.read_style_layer(style_layer))   # the layer wins over the file
        names.append(style_layer.get_name())
    elif style_file:
        style_paths.append(style_file)
        names.append(_stem(style_file))
    else:
        raise StyleTransferError(BAD_REQUEST, f"{card.title} needs a style: choose a style image "
                                              "(style-file) or an open layer (style-layer).")
    if style2_file:
        style_paths.append(style2_file)       # frames are style 1, paths follow: style 2
        names.append(_stem(style2_file))
    weight = float(config.get_property("style-weight")) \
        if "style-weight" in card.gimp_arguments else 1.0
    use_selection = bool(config.get_property("use-selection"))
    two = len(names) == 2
    # two styles: the selection places them; one style on a card whose mask is the region the
    # style's statistics apply to (colour transfer): the selection is that region
    as_mask = (two or card.styles.mask_is_region) and use_selection and card.styles.mask
    if two and not as_mask:
        options["style_weights"] = [weight, 1.0 - weight]
        label = f"{card.title}: {names[0]} {weight:.0%} + {names[1]} {1 - weight:.0%}"
    elif two:
        label = f"{card.title}: {names[0]} inside, {names[1]} outside the selection"
    else:
        label = f"{card.title}: {names[0]}"
    if "alpha" in options:
        label += f" α={options['alpha']:g}"
    if options.get("preserve_color"):
        label += ", colours kept"
    return FilterRequest(engine=card.name, model=model, label=label, options=options,
                         styles=styles, style_paths=style_paths,
                         restrict_to_selection=use_selection and not as_mask,
                         selection_is_mask=as_mask,
                         options_without_mask={"style_weights": [weight, 1.0 - weight]}
                         if as_mask and two else None,
                         endpoint=endpoint)


def _builtin_request(card: EngineCard, config: Any, model: Optional[str], endpoint: str,
                     options: dict[str, Any]) -> FilterRequest:
    """Engines with built-in styles: a style number, an optional second one mixed by weight or
    (with the selection as a mask) placed outside it."""
    first = int(config.get_property("style-index"))
    second = int(config.get_property("style2-index"))
    weight = float(config.get_property("style-weight"))
    use_selection = bool(config.get_property("use-selection"))
    two = second >= 0
    as_mask = two and use_selection and card.styles.mask
    mixed = {"style_index": [first, second], "style_weights": [weight, 1.0 - weight]}
    if two and not as_mask:
        options.update(mixed)
        label = f"{card.title}: style {first} {weight:.0%} + style {second} {1 - weight:.0%}"
    elif two:
        options.update(style_index=[first], outside_style_index=[second])
        label = f"{card.title}: style {first} inside, style {second} outside the selection"
    else:
        options["style_index"] = [first]
        label = f"{card.title}: style {first}"
    if "alpha" in options:
        label += f" α={options['alpha']:g}"
    if options.get("preserve_color"):
        label += ", colours kept"
    return FilterRequest(engine=card.name, model=model, label=label, options=options,
                         restrict_to_selection=use_selection and not as_mask,
                         selection_is_mask=as_mask,
                         options_without_mask={**mixed, "outside_style_index": []}
                         if as_mask else None,
                         endpoint=endpoint)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
