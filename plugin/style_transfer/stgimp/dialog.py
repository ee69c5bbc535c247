"""Interactive dialogs (INTERACTIVE run mode only; scripts never see a window).

Built on GimpUi.ProcedureDialog, so every widget is bound to the procedure's config and GIMP
stores the values for WITH_LAST_VALS / the next run. The model list is not a fixed argument type:
it comes from the daemon's `models` reply (installed models selectable, missing ones listed with
the command that installs them) and writes the chosen name into the `model` argument.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, GLib, Gtk  # noqa: E402

from stclient import registry, settings  # noqa: E402
from stclient.errors import StyleTransferError  # noqa: E402

from .filters import make_client  # noqa: E402

# Automated UI tests (tests/gimp, under Xvfb) cannot click: with this variable set to "ok" or
# "cancel", a dialog describes itself on stderr and answers itself once it is on screen.
AUTORESPOND_ENV = settings.ENV["test_dialog_response"]

# Arguments a filter dialog never shows as fields: the model has its own box (a typed name only
# when nothing is installed), the colour choice appears on grey images only.
NOT_FIELDS = ("model", "working-size", "color-output")


def _fetch_models(endpoint: str) -> tuple[list[dict[str, Any]], Optional[str]]:
    """(models, problem): the daemon's model list, or why it could not be had."""
    client = make_client(endpoint)
    try:
        return client.models().get("models", []), None
    except StyleTransferError as error:
        return [], error.message
    finally:
        client.close()


def _model_box(config: Any, engine: str, models: list[dict[str, Any]],
               problem: Optional[str]) -> tuple[Gtk.Widget, bool, dict[str, Any]]:
    """A frame with the model combo and the not-installed list; (widget, has_combo, what it
    shows)."""
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    frame = GimpUi.Frame.new("Model")
    frame.add(box)
    mine = [m for m in models if m.get("engine") == engine]
    installed = [m for m in mine if m.get("installed")]
    missing = [m for m in mine if not m.get("installed")]
    has_combo = bool(installed)
    if installed:
        combo = Gtk.ComboBoxText()
        for model in installed:
            combo.append(model["name"], model.get("display_name") or model["name"])
        current = config.get_property("model") or ""
        if not combo.set_active_id(current):
            combo.set_active(0)
        config.set_property("model", combo.get_active_id() or "")
        combo.connect("changed",
                      lambda widget: config.set_property("model", widget.get_active_id() or ""))
        box.pack_start(combo, False, False, 0)
    else:
        text = problem or f"No {registry.card(engine).title} model is installed."
        box.pack_start(_label(text + " Type a model name below or install one."), False, False, 0)
    if missing:
        lines = [f"{m.get('display_name') or m['name']}: "
                 f"{m.get('install_hint') or 'python3 install.py --models ' + m['name']}"
                 for m in missing[:12]]
        if len(missing) > 12:
            lines.append(f"... and {len(missing) - 12} more (Filters > Style Transfer > Backend "
                         "Status)")
        expander = Gtk.Expander(label=f"Not installed ({len(missing)})")
        expander.add(_label("\n".join(lines)))
        box.pack_start(expander, False, False, 0)
    frame.show_all()
    shown = {"models": [m["name"] for m in installed], "missing": [m["name"] for m in missing],
             "problem": problem}
    return frame, has_combo, shown


def _label(text: str) -> Gtk.Label:
    label = Gtk.Label(label=text)
    label.set_xalign(0.0)
    label.set_line_wrap(True)
    label.set_selectable(True)
    label.set_max_width_chars(60)
    return label


def filter_dialog(procedure: Gimp.Procedure, config: Any, engine: str, image: Any) -> bool:
    """True when the user pressed OK."""
    GimpUi.init(procedure.get_name())
    models, problem = _fetch_models(config.get_property("endpoint") or "")
    card = registry.card(engine)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, f"Style Transfer: {card.title}")
    box, has_combo, shown = _model_box(config, engine, models, problem)
    grey = image is not None and image.get_base_type() == Gimp.ImageBaseType.GRAY
    fields = [name for name in card.gimp_arguments if name not in NOT_FIELDS]
    fields += [name for name in ("working-size",) if name in card.gimp_arguments]
    fields += ["color-output"] if grey and "color-output" in card.gimp_arguments else []
    fields += [] if has_combo else ["model"]
    dialog.fill(fields)
    content = dialog.get_content_area()
    content.pack_start(box, False, False, 0)
    content.reorder_child(box, 0)
    sheet = _style_sheet(card, config, models)
    if sheet is not None:
        content.pack_start(sheet, False, False, 0)
        content.reorder_child(sheet, 1)
        shown["sheet"] = True
    return _run(dialog, {"fields": fields, **shown})


def _style_sheet(card: Any, config: Any, models: list[dict[str, Any]]) -> Optional[Gtk.Widget]:
    """Engines with built-in styles: the chosen model's contact sheet (made at install time),
    so the user sees what each style number looks like before choosing."""
    if not card.styles.builtin_styles:
        return None
    chosen = config.get_property("model") or card.default_model
    sheets = [m.get("sheet") for m in models if m.get("engine") == card.name
              and m.get("installed") and m.get("sheet")]
    path = next((m.get("sheet") for m in models if m.get("name") == chosen and m.get("sheet")),
                sheets[0] if sheets else None)
    if not path or not os.path.isfile(path):
        return None
    frame = GimpUi.Frame.new("Styles (their numbers)")
    image = Gtk.Image.new_from_file(path)
    frame.add(image)
    frame.show_all()
    return frame


def batch_dialog(procedure: Gimp.Procedure, config: Any) -> bool:
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Style Transfer: Batch Process Folder")
    fields = ["input-folder", "output-folder", "engine", "model", "style-file", "style-index",
              "alpha", "preserve-color", "working-size", "recursive", "overwrite"]
    dialog.fill(fields)
    return _run(dialog, {"fields": fields})


def sample_dialog(procedure: Gimp.Procedure, config: Any, engine: str) -> bool:
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog.new(procedure, config,
                                        f"Style Transfer: {registry.card(engine).title} Samples")
    models, problem = _fetch_models(config.get_property("endpoint") or "")
    box, has_combo, shown = _model_box(config, engine, models, problem)
    fields = ["count", "seed"] + ([] if has_combo else ["model"])
    dialog.fill(fields)
    content = dialog.get_content_area()
    content.pack_start(box, False, False, 0)
    content.reorder_child(box, 0)
    return _run(dialog, {"fields": fields, **shown})


def _run(dialog: Any, shown: dict[str, Any]) -> bool:
    """Run a ProcedureDialog: True for OK. See AUTORESPOND_ENV for the automated tests."""
    answer = settings.current().test_dialog_response
    if answer:
        def respond() -> bool:
            print("STYLE_TRANSFER_DIALOG " + json.dumps({"title": dialog.get_title(), **shown}),
                  file=sys.stderr, flush=True)
            dialog.response(Gtk.ResponseType.OK if answer == "ok" else Gtk.ResponseType.CANCEL)
            return False
        dialog.connect("map", lambda *_: GLib.timeout_add(200, respond))
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()


def show_text(procedure: Gimp.Procedure, title: str, text: str) -> None:
    """A read-only report window (Backend Status)."""
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.Dialog(title=title, role=procedure.get_name())
    dialog.add_button("_Close", Gtk.ResponseType.CLOSE)
    view = Gtk.TextView()
    view.set_editable(False)
    view.set_monospace(True)
    view.get_buffer().set_text(text)
    scrolled = Gtk.ScrolledWindow()
    scrolled.set_min_content_width(560)
    scrolled.set_min_content_height(320)
    scrolled.add(view)
    dialog.get_content_area().pack_start(scrolled, True, True, 0)
    dialog.show_all()
    if settings.current().test_dialog_response:
        print("STYLE_TRANSFER_DIALOG " + json.dumps({"title": title, "text": text}),
              file=sys.stderr, flush=True)
        GLib.timeout_add(200, lambda: dialog.response(Gtk.ResponseType.CLOSE) and False)
    dialog.run()
    dialog.destroy()
