"""Interactive dialogs (INTERACTIVE run mode only; scripts never see a window).

Built on GimpUi.ProcedureDialog, so every widget is bound to the procedure's config and GIMP
stores the values for WITH_LAST_VALS / the next run. Everything that needs the daemon (the model
list, the preview, the backend's status) runs in the background (stgimp/background.py): a dialog
is on screen at once, also while the backend is being started, and never freezes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

from stclient import registry, settings  # noqa: E402
from stclient.errors import StyleTransferError  # noqa: E402

from .arguments import ALL_BATCH_OPTIONS  # noqa: E402
from .background import Background  # noqa: E402
from .filters import make_client  # noqa: E402
from .modelbox import ModelBox  # noqa: E402

# Automated UI tests (tests/gimp, under Xvfb) cannot click: with this variable set to "ok" or
# "cancel", a dialog waits for its background work, describes itself on stderr (and saves a
# screenshot into $STYLE_TRANSFER_TEST_SCREENSHOTS), then answers itself.
AUTORESPOND_ENV = settings.ENV["test_dialog_response"]
SETTLE_TIMEOUT = 120.0       # seconds the automated tests wait for background work

# Arguments a filter dialog never shows as fields: the model has its own box, the colour choice
# appears on grey images only, the working size comes last.
NOT_FIELDS = ("model", "working-size", "color-output")


def _background(endpoint: str) -> Background:
    return Background(lambda: make_client(endpoint), deliver=GLib.idle_add)


def _endpoint(config: Any) -> str:
    return (config.get_property("endpoint") or "").strip()


# ------------------------------------------------------------------------------ filters

def filter_dialog(procedure: Gimp.Procedure, config: Any, engine: str, image: Any,
                  drawable: Any = None) -> bool:
    """True when the user pressed OK."""
    opened = time.monotonic()
    GimpUi.init(procedure.get_name())
    card = registry.card(engine)
    calls = _background(_endpoint(config))
    dialog = GimpUi.ProcedureDialog.new(procedure, config, f"Style Transfer: {card.title}")
    grey = image is not None and image.get_base_type() == Gimp.ImageBaseType.GRAY
    fields = [name for name in card.gimp_arguments if name not in NOT_FIELDS]
    fields += [name for name in ("working-size",) if name in card.gimp_arguments]
    fields += ["color-output"] if grey and "color-output" in card.gimp_arguments else []
    dialog.fill(fields)
    content = dialog.get_content_area()
    shown: dict[str, Any] = {"fields": fields}

    def models_arrived(models: list[dict[str, Any]]) -> None:
        sheet = _style_sheet(card, config, models)
        if sheet is not None:
            content.pack_start(sheet, False, False, 0)
            content.reorder_child(sheet, 1)
            shown["sheet"] = True
        if preview is None:
            return
        if box.problem:                       # no backend: say so once, do not retry it
            preview.disable("No preview without the backend (see Model).")
        else:
            preview.refresh()

    box = ModelBox(config, engine, calls, _endpoint(config), models_arrived)
    content.pack_start(box.frame, False, False, 0)
    content.reorder_child(box.frame, 0)
    estimate = _add_estimate(content, config, card, image, drawable, calls)
    preview = _add_preview(dialog, config, engine, image, drawable, calls)
    box.fetch()
    return _run(dialog, shown, calls, opened, describe=lambda: {
        **box.describe(), **({"preview": preview.rendered} if preview is not None else {}),
        **({"estimate": estimate.get_text()} if estimate is not None else {})},
        preview=preview)


def _add_estimate(content: Any, config: Any, card: Any, image: Any, drawable: Any,
                  calls: Background) -> Optional[Gtk.Label]:
    """Engines that estimate their run time: "Estimated time: about 3 min 10 s (...)" for the
    current settings and this layer's size, asked again when a setting changes (the first
    answer measures the computer's speed: a few seconds)."""
    if not card.estimates or drawable is None:
        return None
    from .arguments import option_values
    label = Gtk.Label(label="Estimated time: asking the backend…", xalign=0.0)
    label.set_line_wrap(True)
    content.pack_start(label, False, False, 0)
    label.show()

    def ask(*_args: Any) -> None:
        options = option_values(config, card)
        names = ("style-file", "style-layer", "style2-file")
        given = [name for name in names if procedure_has(config, name)
                 and config.get_property(name) is not None]
        styles = max(1, len(given) - ("style-file" in given and "style-layer" in given))
        mask = styles == 2 and procedure_has(config, "use-selection") and \
            bool(config.get_property("use-selection")) and not Gimp.Selection.is_empty(image)
        width, height = drawable.get_width(), drawable.get_height()
        model = (config.get_property("model") or "").strip() or None
        calls.restart("estimate", lambda client, cancel: client.estimate(
            card.name, width, height, styles, mask, model, options, cancel_event=cancel),
            lambda found: label.set_text(f"Estimated time: {found.text}"),
            lambda error: label.set_text(f"Estimated time: unknown ({error.message})"))

    config.connect("notify", ask)
    ask()
    return label


def procedure_has(config: Any, name: str) -> bool:
    return config.find_property(name) is not None


def _add_preview(dialog: Any, config: Any, engine: str, image: Any, drawable: Any,
                 calls: Background) -> Any:
    """A preview beside the settings, refreshed when any of them changes."""
    if image is None or drawable is None or not drawable.is_layer():
        return None
    from . import requests
    from .preview import Preview, read_input

    def build() -> Any:
        request = requests.filter_request(engine, config)
        return request, read_input(image, drawable, request)

    preview = Preview(calls, build, engine)
    main = dialog.get_content_area()
    children = main.get_children()
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
    settings_column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=3)
    action_area = dialog.get_action_area()
    for child in children:
        # the Load/Save Settings buttons and the dialog's own buttons stay below
        if isinstance(child, Gtk.ButtonBox) or child is action_area \
                or action_area.is_ancestor(child):
            continue
        main.remove(child)
        settings_column.pack_start(child, False, False, 0)
    row.pack_start(settings_column, True, True, 0)
    row.pack_start(preview.frame, False, False, 0)
    main.pack_start(row, True, True, 0)
    main.reorder_child(row, 0)
    row.show_all()
    config.connect("notify", preview.changed)
    dialog.connect("destroy", lambda *_: calls.cancel_all())
    return preview


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
    # the 26-style sheet is ~600 px tall: in a scrolled box no taller than the screen has
    # room for beside the settings, so OK and Cancel stay on a laptop's screen
    scrolled = Gtk.ScrolledWindow()
    scrolled.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
    scrolled.set_propagate_natural_width(True)
    pixbuf = image.get_pixbuf()
    natural = pixbuf.get_height() if pixbuf is not None else SHEET_MIN_HEIGHT
    # a minimum, not a natural size: the dialog is already on screen when the sheet arrives,
    # and only a minimum makes it grow
    scrolled.set_min_content_height(min(natural, max(SHEET_MIN_HEIGHT,
                                                     screen_height() - SHEET_ROOM)))
    scrolled.add(image)
    frame.add(scrolled)
    frame.show_all()
    return frame


SHEET_MIN_HEIGHT = 160     # px of the style sheet always shown
SHEET_ROOM = 620           # px the rest of the CIN dialog takes (settings, preview, buttons)


def screen_height() -> int:
    """The usable height of the screen the dialogs open on (panels excluded), in px."""
    display = Gdk.Display.get_default()
    monitor = display.get_primary_monitor() or display.get_monitor(0) if display else None
    return monitor.get_workarea().height if monitor is not None else 768


# ------------------------------------------------------------------------------ batch

def batch_fields(engine: str) -> list[str]:
    """The batch arguments that apply to `engine` (the others are hidden)."""
    card = registry.card(engine)
    fields = ["input-folder", "output-folder", "engine"]
    if card.styles.takes_images:
        fields.append("style-file")
    if card.styles.builtin_styles:
        fields.append("style-index")
    fields += [registry.shared_option(name).gimp_name
               for name in ALL_BATCH_OPTIONS if card.option(name) is not None]
    return fields + ["recursive", "overwrite"]


def batch_dialog(procedure: Gimp.Procedure, config: Any) -> bool:
    """Engine first; the model list is the daemon's for that engine, the fields its own."""
    opened = time.monotonic()
    GimpUi.init(procedure.get_name())
    calls = _background(_endpoint(config))
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Style Transfer: Batch Process Folder")
    every = ["input-folder", "output-folder", "engine", "style-file", "style-index"]
    every += [registry.shared_option(name).gimp_name
              for name in ALL_BATCH_OPTIONS]
    every += ["recursive", "overwrite"]
    every = [name for name in every if procedure.find_argument(name) is not None]
    dialog.fill(every)
    box = ModelBox(config, config.get_property("engine"), calls, _endpoint(config))
    engine_row = dialog.get_widget("engine", GObject.TYPE_NONE)
    _pack_after(engine_row, box.frame)
    shown: dict[str, Any] = {}

    def show_engine(*_args: Any) -> None:
        engine = config.get_property("engine")
        wanted = batch_fields(engine)
        for name in every:
            widget = dialog.get_widget(name, GObject.TYPE_NONE)
            widget.set_no_show_all(name not in wanted)
            widget.set_visible(name in wanted)
        box.show_engine(engine)
        shown["fields"] = [name for name in every if name in wanted]
        window = dialog.get_window()
        if window is not None:
            dialog.resize(1, 1)

    config.connect("notify::engine", show_engine)
    show_engine()
    box.fetch()
    return _run(dialog, shown, calls, opened, describe=lambda: {
        **box.describe(), "rows": _rows_top_down(dialog, {
            **{name: dialog.get_widget(name, GObject.TYPE_NONE) for name in shown["fields"]},
            "model": box.frame})})


def _pack_after(anchor: Any, widget: Any) -> None:
    """Put `widget` right below `anchor`, in the box that holds it. The procedure dialog's box
    counts positions for reorder_child differently from the list get_children returns (the
    model list landed two rows above the engine), so the position is found by looking."""
    parent = anchor.get_parent()
    parent.pack_start(widget, False, False, 0)
    for position in range(len(parent.get_children()) + 1):
        parent.reorder_child(widget, position)
        children = parent.get_children()
        if children.index(widget) == children.index(anchor) + 1:
            return


def _rows_top_down(dialog: Any, widgets: dict[str, Any]) -> list[str]:
    """The names of the shown widgets in the order a user sees them, top to bottom (tests)."""
    placed = []
    for name, widget in widgets.items():
        if widget.get_visible() and widget.get_mapped():
            at = widget.translate_coordinates(dialog, 0, 0)    # (x, y), or None
            if at is not None:
                placed.append((at[1], name))
    return [name for _, name in sorted(placed)]


# ------------------------------------------------------------------------------ samples

def sample_dialog(procedure: Gimp.Procedure, config: Any, engine: str) -> bool:
    opened = time.monotonic()
    GimpUi.init(procedure.get_name())
    calls = _background(_endpoint(config))
    dialog = GimpUi.ProcedureDialog.new(procedure, config,
                                        f"Style Transfer: {registry.card(engine).title} Samples")
    fields = ["count", "seed"]
    dialog.fill(fields)
    box = ModelBox(config, engine, calls, _endpoint(config))
    content = dialog.get_content_area()
    content.pack_start(box.frame, False, False, 0)
    content.reorder_child(box.frame, 0)
    box.fetch()
    return _run(dialog, {"fields": fields}, calls, opened, describe=box.describe)


# ------------------------------------------------------------------------------ running

def _run(dialog: Any, shown: dict[str, Any], calls: Optional[Background] = None,
         opened: Optional[float] = None, describe: Any = None, preview: Any = None) -> bool:
    """Run a ProcedureDialog: True for OK. See AUTORESPOND_ENV for the automated tests."""
    answer = settings.current().test_dialog_response
    if answer:
        autorespond(dialog, shown, calls, opened, describe, preview,
                    Gtk.ResponseType.OK if answer == "ok" else Gtk.ResponseType.CANCEL)
    try:
        return bool(dialog.run())
    finally:
        if calls is not None:
            calls.cancel_all()
        dialog.destroy()


def autorespond(dialog: Any, shown: dict[str, Any], calls: Optional[Background],
                opened: Optional[float], describe: Any, preview: Any, response: Any) -> None:
    """Tests: once mapped and settled (no background call left), report, screenshot, answer."""
    state: dict[str, Any] = {}

    def mapped(*_args: Any) -> None:
        state["mapped_after_s"] = round(time.monotonic() - (opened or time.monotonic()), 3)
        state["waiting"] = sorted(calls.pending()) if calls is not None else []
        state["deadline"] = time.monotonic() + SETTLE_TIMEOUT
        GLib.timeout_add(200, settle)

    def settle() -> bool:
        busy = calls is not None and calls.pending()
        if busy and time.monotonic() < state["deadline"]:
            return True
        GLib.timeout_add(400, finish)         # let the last update draw
        return False

    def finish() -> bool:
        report = {"title": dialog.get_title(), **shown, **(describe() if describe else {}),
                  "height": dialog.get_allocated_height(), "screen_height": screen_height(),
                  "mapped_after_s": state["mapped_after_s"],
                  "waiting_when_mapped": state["waiting"],
                  "mnemonics": mnemonics(dialog)}
        if preview is not None:
            report["preview_files"] = save_preview(preview, dialog.get_title())
        report["screenshot"] = screenshot(dialog, dialog.get_title())
        print("STYLE_TRANSFER_DIALOG " + json.dumps(report), file=sys.stderr, flush=True)
        dialog.response(response)
        return False

    dialog.connect("map", mapped)


def mnemonics(window: Gtk.Widget) -> list[str]:
    """The mnemonic keys of the visible labels in `window` (tests check them for duplicates)."""
    keys: list[str] = []

    def visit(widget: Gtk.Widget) -> None:
        if not widget.get_visible():
            return
        if isinstance(widget, Gtk.Label) and widget.get_use_underline():
            key = widget.get_mnemonic_keyval()
            if key and key != Gdk.KEY_VoidSymbol:
                keys.append(Gdk.keyval_name(Gdk.keyval_to_lower(key)))
        if isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                visit(child)

    visit(window)
    return keys


def _file_name(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def screenshot(window: Gtk.Widget, title: str) -> Optional[str]:
    """Save the window as PNG into $STYLE_TRANSFER_TEST_SCREENSHOTS (tests, docs/images)."""
    folder = settings.current().test_screenshots
    gdk_window = window.get_window()
    if not folder or gdk_window is None:
        return None
    pixbuf = Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(),
                                        gdk_window.get_height())
    if pixbuf is None:
        return None
    path = os.path.join(folder, _file_name(title) + ".png")
    number = 1
    while os.path.exists(path):               # the same dialog again (another engine, ...)
        number += 1
        path = os.path.join(folder, f"{_file_name(title)}-{number}.png")
    pixbuf.savev(path, "png", [], [])
    return path


def save_preview(preview: Any, title: str) -> Optional[dict[str, Any]]:
    """Tests: the preview's input and result as raw bytes, to compare with the daemon's answer."""
    folder = settings.current().test_screenshots
    if not folder or preview.last_result is None:
        return None
    base = os.path.join(folder, _file_name(title) + "-preview")
    source, result = preview.last_input.content, preview.last_result
    with open(base + "-in.raw", "wb") as handle:
        handle.write(bytes(source.data))
    with open(base + "-out.raw", "wb") as handle:
        handle.write(bytes(result.data))
    return {"in": base + "-in.raw", "out": base + "-out.raw", "width": result.width,
            "height": result.height, "channels": result.channels}


# ------------------------------------------------------------------------------ status

def show_status(procedure: Gimp.Procedure, endpoint: str) -> str:
    """Backend Status: the daemon's state; when it is down, why, and a Start backend button."""
    from .statusview import StatusView
    opened = time.monotonic()
    GimpUi.init(procedure.get_name())
    dialog = GimpUi.Dialog(title="Style Transfer Backend", role=procedure.get_name())
    view = StatusView(dialog, endpoint)
    dialog.add_button("_Close", Gtk.ResponseType.CLOSE)
    dialog.get_content_area().pack_start(view.widget, True, True, 0)
    dialog.show_all()
    view.refresh()
    if settings.current().test_dialog_response:
        _autorespond_status(dialog, view, opened)
    while dialog.run() not in (Gtk.ResponseType.CLOSE, Gtk.ResponseType.DELETE_EVENT):
        pass
    view.calls.cancel_all()
    dialog.destroy()
    return view.text


def _autorespond_status(dialog: Any, view: Any, opened: float) -> None:
    """Tests: report what the dialog shows; with the backend down, press Start backend first."""
    steps: list[dict[str, Any]] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT

    def tick() -> bool:
        if view.calls.pending() and time.monotonic() < deadline:
            return True
        steps.append({"running": view.running, "text": view.text,
                      "start_button": view.start_button.get_visible(),
                      "shown_after_s": round(time.monotonic() - opened, 3)})
        if not view.running and len(steps) == 1 and view.start_button.get_visible():
            view.start_button.clicked()
            return True
        report = {"title": dialog.get_title(), "steps": steps, "text": view.text,
                  "mnemonics": mnemonics(dialog), "height": dialog.get_allocated_height(),
                  "screen_height": screen_height(),
                  "screenshot": screenshot(dialog, "backend-status")}
        print("STYLE_TRANSFER_DIALOG " + json.dumps(report), file=sys.stderr, flush=True)
        dialog.response(Gtk.ResponseType.CLOSE)
        return False

    GLib.timeout_add(300, tick)
