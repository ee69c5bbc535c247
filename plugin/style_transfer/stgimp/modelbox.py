"""The model chooser of the dialogs: filled from the daemon's `models` reply in the background, so
the dialog is on screen at once, saying that the backend is being asked (or started).

- installed models of the engine: a combo that writes the `model` argument;
- none installed: an entry for a model name, and what to install;
- no backend: why, and the command that finds out what is wrong (`python3 install.py --check`);
- "Not installed (N)": a collapsed list of install commands, selectable and copyable (a Copy
  button), one per line without wrapping inside paths, in a box of bounded height; closing it
  gives the dialog its size back.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GimpUi, Gtk  # noqa: E402

from stclient import registry  # noqa: E402
from stclient.errors import StyleTransferError  # noqa: E402

from .background import Background  # noqa: E402
from .filters import CHECK_HINT, daemon_is_up  # noqa: E402

LIST_HEIGHT = 140        # pixels: the not-installed list scrolls beyond this


def install_hint(model: dict[str, Any]) -> str:
    return model.get("install_hint") or f"python3 install.py --models {model['name']}"


def wrapped_label(text: str, selectable: bool = True) -> Gtk.Label:
    label = Gtk.Label(label=text)
    label.set_xalign(0.0)
    label.set_line_wrap(True)
    label.set_selectable(selectable)
    label.set_max_width_chars(60)
    return label


class ModelBox:
    """A frame whose content follows the daemon's model list for one engine."""

    def __init__(self, config: Any, engine: str, calls: Background, endpoint: str,
                 on_models: Optional[Callable[[list[dict[str, Any]]], None]] = None) -> None:
        self.config, self.engine, self.calls, self.endpoint = config, engine, calls, endpoint
        self.on_models = on_models
        self.models: list[dict[str, Any]] = []
        self.problem: Optional[str] = None
        self.loaded = False
        self.frame = GimpUi.Frame.new("Model")
        self.box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.frame.add(self.box)
        starting = not endpoint and not daemon_is_up()
        self._waiting(("Starting the style-transfer backend (the first time takes a few "
                       "seconds)…") if starting else "Asking the backend for its models…")
        self.frame.show_all()

    # ------------------------------------------------------------------ fetching
    def fetch(self) -> None:
        self.calls.start("models", lambda client, cancel: client.models().get("models", []),
                         self._loaded, self._failed)

    def _loaded(self, models: list[dict[str, Any]]) -> None:
        self.models, self.problem, self.loaded = list(models), None, True
        self.show_engine(self.engine)
        if self.on_models is not None:
            self.on_models(self.models)

    def _failed(self, error: StyleTransferError) -> None:
        self.models, self.loaded = [], True
        self.problem = error.message if CHECK_HINT in error.message else \
            f"{error.message} {CHECK_HINT}"
        self.show_engine(self.engine)
        if self.on_models is not None:
            self.on_models([])

    # ------------------------------------------------------------------ contents
    def _clear(self) -> None:
        for child in self.box.get_children():
            self.box.remove(child)

    def _waiting(self, text: str) -> None:
        self._clear()
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        spinner = Gtk.Spinner()
        spinner.start()
        row.pack_start(spinner, False, False, 0)
        row.pack_start(wrapped_label(text, selectable=False), True, True, 0)
        self.box.pack_start(row, False, False, 0)

    def show_engine(self, engine: str) -> None:
        """Show the models of `engine` (the batch dialog switches engines)."""
        self.engine = engine
        if not self.loaded:
            return
        self._clear()
        card = registry.card(engine)
        if not card.takes_model:              # maths only: nothing to choose or install
            self.box.pack_start(wrapped_label(self.problem or f"{card.title} uses no model.",
                                              selectable=bool(self.problem)), False, False, 0)
            self.frame.show_all()
            return
        mine = [m for m in self.models if m.get("engine") in registry.model_engines(engine)]
        installed = [m for m in mine if m.get("installed")]
        missing = [m for m in mine if not m.get("installed")]
        if installed:
            self.box.pack_start(self._combo(installed), False, False, 0)
        else:
            text = self.problem or f"No {registry.card(engine).title} model is installed; " \
                                   "install one (below), or type the name of one you have."
            self.box.pack_start(wrapped_label(text), False, False, 0)
            self.box.pack_start(self._entry(), False, False, 0)
        if missing:
            self.box.pack_start(self._missing(missing), False, False, 0)
        self.frame.show_all()

    def _combo(self, installed: list[dict[str, Any]]) -> Gtk.Widget:
        combo = Gtk.ComboBoxText()
        for model in installed:
            combo.append(model["name"], model.get("display_name") or model["name"])
        if not combo.set_active_id(self.config.get_property("model") or ""):
            combo.set_active(0)
        self.config.set_property("model", combo.get_active_id() or "")
        combo.connect("changed", lambda widget: self.config.set_property(
            "model", widget.get_active_id() or ""))
        return combo

    def _entry(self) -> Gtk.Widget:
        entry = Gtk.Entry()
        entry.set_text(self.config.get_property("model") or "")
        entry.set_placeholder_text("model name (python -m backend models lists them)")
        entry.connect("changed", lambda widget: self.config.set_property(
            "model", widget.get_text().strip()))
        return entry

    def _missing(self, missing: list[dict[str, Any]]) -> Gtk.Widget:
        commands = "\n".join(f"{install_hint(m)}    # {m.get('display_name') or m['name']}"
                             for m in missing)
        view = Gtk.TextView()
        view.set_editable(False)
        view.set_monospace(True)
        view.set_wrap_mode(Gtk.WrapMode.NONE)       # a path never breaks in two
        view.get_buffer().set_text(commands)
        scrolled = Gtk.ScrolledWindow()
        scrolled.set_policy(Gtk.PolicyType.AUTOMATIC, Gtk.PolicyType.AUTOMATIC)
        scrolled.set_min_content_height(min(LIST_HEIGHT, 22 * len(missing) + 8))
        scrolled.set_max_content_height(LIST_HEIGHT)
        scrolled.set_propagate_natural_height(True)
        scrolled.set_min_content_width(420)
        scrolled.add(view)
        copy = Gtk.Button.new_with_mnemonic("Copy install comman_ds")
        copy.connect("clicked", lambda *_: Gtk.Clipboard.get(Gdk.SELECTION_CLIPBOARD)
                     .set_text("\n".join(install_hint(m) for m in missing), -1))
        inner = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        inner.pack_start(scrolled, True, True, 0)
        inner.pack_start(copy, False, False, 0)
        expander = Gtk.Expander(label=f"Not installed ({len(missing)})")
        expander.add(inner)
        expander.connect("notify::expanded", self._shrink_when_closed)
        self.commands = commands
        return expander

    def _shrink_when_closed(self, expander: Gtk.Expander, _spec: Any) -> None:
        if not expander.get_expanded():
            window = self.frame.get_toplevel()
            if isinstance(window, Gtk.Window):
                window.resize(1, 1)            # back to the natural size without the list

    def describe(self) -> dict[str, Any]:
        mine = [m for m in self.models
                if m.get("engine") in registry.model_engines(self.engine)]
        return {"models": [m["name"] for m in mine if m.get("installed")],
                "missing": [m["name"] for m in mine if not m.get("installed")],
                "problem": self.problem}
