"""Runs INSIDE gimp-console (python-fu-eval): builds test images, calls our procedures exactly as a
user's script would (Gimp.get_pdb().lookup_procedure(...).run(config)), and dumps the results.

Executed as `exec(open(DRIVER).read())` with CASES_PATH and RESULTS_PATH defined; Gimp, Gegl, Gio
come from the python-fu-eval globals. Standard library only (GIMP's Python has no numpy).

A case (JSON, written by harness.py):
  {"name", "image": {"width", "height", "base": rgb|gray|indexed, "precision": u8|u16|float,
                     "layers": [{"name", "width", "height", "offset": [x, y], "alpha": bool,
                                 "raw": path, "format": babl format of the raw bytes,
                                 "group": optional name of a layer group to put it in}]},
   "extra_images": [image specs (e.g. a style layer in another image)],
   "selection": {"rect": [x, y, w, h]} | {"ellipse": [x, y, w, h], "feather": r} | null,
   "drawable": layer name, "procedure": name, "args": {name: value | {"file": p} | {"layer": n}},
   "run_mode": noninteractive|interactive|with-last-vals, "out_dir": path,
   "before": [["move" | "copytree", src, dst] | ["remove", path], ...] file-system steps in the
             chroot first,
   "dump": false to skip dumping pixels (benchmarks)}
Each result lists every layer of the image afterwards (top first) with its pixels dumped as raw
bytes in the image's own layout, plus the procedure's status, message and returned layer.
"""

import json
import os
import time
import traceback

_BASES = {"rgb": Gimp.ImageBaseType.RGB, "gray": Gimp.ImageBaseType.GRAY,
          "indexed": Gimp.ImageBaseType.INDEXED}
_PRECISIONS = {"u8": Gimp.Precision.U8_NON_LINEAR, "u16": Gimp.Precision.U16_NON_LINEAR,
               "float": Gimp.Precision.FLOAT_NON_LINEAR}


_RUN_MODES = {"noninteractive": Gimp.RunMode.NONINTERACTIVE,
              "interactive": Gimp.RunMode.INTERACTIVE,
              "with-last-vals": Gimp.RunMode.WITH_LAST_VALS}


def _layer_type(gray, alpha):
    if gray:
        return Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    return Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE


def _make_image(spec):
    base = spec.get("base", "rgb")
    image = Gimp.Image.new_with_precision(spec["width"], spec["height"],
                                          _BASES["gray" if base == "gray" else "rgb"],
                                          _PRECISIONS[spec.get("precision", "u8")])
    layers = {}
    groups = {}
    for layer_spec in spec["layers"]:          # bottom first
        layer = Gimp.Layer.new(image, layer_spec["name"], layer_spec["width"],
                               layer_spec["height"],
                               _layer_type(base == "gray", layer_spec.get("alpha", False)),
                               100.0, Gimp.LayerMode.NORMAL)
        parent = None
        if layer_spec.get("group"):
            parent = groups.get(layer_spec["group"])
            if parent is None:
                parent = groups[layer_spec["group"]] = Gimp.GroupLayer.new(image,
                                                                           layer_spec["group"])
                image.insert_layer(parent, None, 0)
        image.insert_layer(layer, parent, 0)
        layer.set_offsets(*layer_spec.get("offset", [0, 0]))
        with open(layer_spec["raw"], "rb") as handle:
            data = handle.read()
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, layer_spec["width"], layer_spec["height"]),
                   layer_spec["format"], data)
        buffer.flush()
        layers[layer_spec["name"]] = layer
    if base == "indexed":
        image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE,
                              spec.get("colors", 16), False, False, "")
    return image, layers


def _select(image, selection):
    if not selection:
        return
    if "rect" in selection:
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *selection["rect"])
    elif "ellipse" in selection:
        image.select_ellipse(Gimp.ChannelOps.REPLACE, *selection["ellipse"])
    if selection.get("feather"):
        Gimp.Selection.feather(image, float(selection["feather"]))


def _dump_format(image, drawable):
    dtype = {"U8": "u8", "U16": "u16"}.get(image.get_precision().value_name.split("_")[2],
                                            "float")
    gray = drawable.is_gray()
    model = ("Y'" if gray else "R'G'B'") + ("A" if drawable.has_alpha() else "")
    return f"{model} {dtype}"


def _dump(image, drawable, path, fmt=None):
    fmt = fmt or _dump_format(image, drawable)
    data = drawable.get_buffer().get(
        Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), 1.0, fmt,
        Gegl.AbyssPolicy.CLAMP)
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    return fmt


def _flat_layers(layers, parent=None):
    """Top first, a group's children right after the group (depth first)."""
    for layer in layers:
        yield layer, parent
        if layer.is_group():
            yield from _flat_layers(layer.get_children(), layer.get_name())


def _describe_layers(image, out_dir, prefix):
    described = []
    for index, (layer, parent) in enumerate(_flat_layers(image.get_layers())):
        path = os.path.join(out_dir, f"{prefix}-{index}.raw")
        fmt = _dump(image, layer, path)
        _, x, y = layer.get_offsets()
        described.append({"name": layer.get_name(), "id": layer.get_id(), "offset": [x, y],
                          "width": layer.get_width(), "height": layer.get_height(),
                          "alpha": bool(layer.has_alpha()), "raw": path, "format": fmt,
                          "type": layer.type().value_nick, "parent": parent})
    return described


def _arg_value(value, images):
    if isinstance(value, dict) and "file" in value:
        return Gio.File.new_for_path(value["file"])
    if isinstance(value, dict) and "layer" in value:
        for _image, layers in images:
            if value["layer"] in layers:
                return layers[value["layer"]]
        raise KeyError(f"no layer {value['layer']!r}")
    return value


def _prepare(actions):
    """File-system steps inside the chroot before a case (e.g. hide a Python package)."""
    import shutil
    for action, *paths in actions:
        if action == "move":            # rename(2) of a directory fails on overlayfs (EXDEV)
            shutil.move(*paths)
        elif action == "copytree":
            shutil.copytree(*paths)
        elif action == "remove":          # e.g. GIMP's stored last values of the procedures
            shutil.rmtree(paths[0], ignore_errors=True)
        else:
            raise ValueError(f"unknown action {action!r}")


def _run_case(case):
    out_dir = case["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    _prepare(case.get("before", []))
    result = {"name": case["name"]}
    images = []
    image = None
    layers = {}
    if case.get("image"):
        image, layers = _make_image(case["image"])
        images.append((image, layers))
    for extra in case.get("extra_images", []):
        images.append(_make_image(extra))
    if image is not None:
        _select(image, case.get("selection"))
        if case.get("selection"):
            selection_path = os.path.join(out_dir, "selection.raw")
            sel = image.get_selection().get_buffer().get(
                Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()), 1.0,
                "Y float", Gegl.AbyssPolicy.NONE)
            with open(selection_path, "wb") as handle:
                handle.write(bytes(sel))
            result["selection_raw"] = selection_path
    procedure = Gimp.get_pdb().lookup_procedure(case["procedure"])
    if procedure is None:
        raise RuntimeError(f"procedure {case['procedure']} is not registered")
    config = procedure.create_config()
    config.set_property("run-mode", _RUN_MODES[case.get("run_mode", "noninteractive")])
    if image is not None:
        config.set_property("image", image)
        config.set_core_object_array("drawables", [layers[case["drawable"]]])
    for name, value in case.get("args", {}).items():
        config.set_property(name, _arg_value(value, images))
    if image is not None:
        result["undo_before"] = image.undo_is_enabled()
    started = time.monotonic()
    returned = procedure.run(config)
    result["call_s"] = round(time.monotonic() - started, 4)
    status = returned.index(0)
    result["status"] = status.value_nick
    if status != Gimp.PDBStatusType.SUCCESS:
        result["message"] = returned.index(1) if returned.length() > 1 else ""
    else:
        values = [returned.index(i) for i in range(1, returned.length())]
        result["returned"] = [v.get_id() if hasattr(v, "get_id") else v for v in values]
        for value in values:
            if isinstance(value, Gimp.Image):          # e.g. MIXGAN samples: a new image
                result["new_image"] = {"id": value.get_id(), "layers": _describe_layers(
                    value, out_dir, "new-image")}
    if image is not None and case.get("dump", True):
        result["layers"] = _describe_layers(image, out_dir, "layer")
        result["source_raw"] = os.path.join(out_dir, "source-after.raw")
        _dump(image, layers[case["drawable"]], result["source_raw"])
        if case.get("selection") and image is not None:
            result["selection_after_empty"] = bool(Gimp.Selection.is_empty(image))
    return result


def _main():
    with open(CASES_PATH) as handle:  # noqa: F821 (defined by the harness)
        cases = json.load(handle)
    results = []
    for case in cases:
        try:
            results.append(_run_case(case))
        except Exception:
            results.append({"name": case["name"], "status": "driver-error",
                            "message": traceback.format_exc()})
        with open(RESULTS_PATH + ".partial", "w") as handle:  # noqa: F821
            json.dump(results, handle, indent=1)
        os.replace(RESULTS_PATH + ".partial", RESULTS_PATH)  # noqa: F821


_main()
