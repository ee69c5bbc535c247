"""The Backend Status window's content: the daemon's state in a few readable lines (device,
memory, loaded models, running job, queue) above the full report and the models, asked in the
background; when the backend is down it says so, why, and offers "Start backend"."""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

from stclient.errors import StyleTransferError  # noqa: E402
from stclient.status import DaemonStatus, mib  # noqa: E402

from .background import Background  # noqa: E402
from .filters import CHECK_HINT, make_client  # noqa: E402
from .status import format_report  # noqa: E402


def summary_rows(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows a person reads first."""
    status = DaemonStatus.from_json(state)
    runtime = status.runtime
    device = status.device + (f" ({runtime['device_name']})" if runtime.get("device_name")
                              else "")
    loaded = ", ".join(f"{m.name} ({mib(m.bytes)})" for m in status.models) or "none yet"
    running = status.running
    job = f"{running.op} {running.engine} {running.model} {100 * running.fraction:.0f}% " \
          f"{running.text}".strip() if running is not None else "nothing"
    return [("Device", device),
            ("Memory", f"{mib(status.rss_bytes)} in use, models {mib(runtime.get('model_bytes'))}"
                       f" of {mib(runtime.get('memory_budget'))}"),
            ("Loaded models", loaded), ("Working on", job),
            ("Waiting jobs", str(len(status.queue))),
            ("Backend", f"version {status.version}, pid {status.pid}, {status.endpoint}")]


class StatusView:
    """Summary grid + report text + Start backend / Refresh buttons."""

    def __init__(self, dialog: Any, endpoint: str) -> None:
        self.endpoint = endpoint
        self.calls = Background(lambda: make_client(endpoint, autostart=False),
                                deliver=GLib.idle_add)
        self.running = False
        self.text = ""
        self.widget = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        self.widget.set_border_width(8)
        self.headline = Gtk.Label(label="Asking the backend…")
        self.headline.set_xalign(0.0)
        self.headline.set_line_wrap(True)
        self.headline.set_selectable(True)
        self.headline.set_max_width_chars(70)
        self.grid = Gtk.Grid(column_spacing=12, row_spacing=4)
        self.report = Gtk.TextView()
        self.report.set_editable(False)
        self.report.set_monospace(True)
        self.report.set_wrap_mode(Gtk.WrapMode.NONE)
        scrolled = Gtk.ScrolledWindow()
        scrolled.set_min_content_width(620)
        scrolled.set_min_content_height(240)
        scrolled.add(self.report)
        buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.start_button = Gtk.Button.new_with_mnemonic("_Start backend")
        self.start_button.connect("clicked", lambda *_: self.start())
        self.start_button.set_no_show_all(True)
        refresh = Gtk.Button.new_with_mnemonic("_Refresh")
        refresh.connect("clicked", lambda *_: self.refresh())
        buttons.pack_start(self.start_button, False, False, 0)
        buttons.pack_start(refresh, False, False, 0)
        for child in (self.headline, self.grid, buttons, scrolled):
            self.widget.pack_start(child, child is scrolled, child is scrolled, 0)

    def refresh(self) -> None:
        self.calls.restart("status", lambda client, cancel: (client.status(), client.models()),
                           self._shown, self._down)

    def start(self) -> None:
        """Start the default daemon (the client starts it when nothing answers), then show it."""
        self.start_button.set_sensitive(False)
        self.headline.set_text("Starting the style-transfer backend (the first time takes a few "
                               "seconds)…")
        starter = Background(lambda: make_client("", autostart=True), deliver=GLib.idle_add)
        self.calls = starter
        starter.start("status", lambda client, cancel: (client.status(), client.models()),
                      self._shown, self._down)

    def _shown(self, reply: tuple[dict[str, Any], dict[str, Any]]) -> None:
        state, listing = reply
        self.running = True
        self.start_button.set_visible(False)
        self.headline.set_text("The style-transfer backend is running.")
        self._rows(summary_rows(state))
        self.text = format_report(state, listing)
        self.report.get_buffer().set_text(self.text)

    def _down(self, error: StyleTransferError) -> None:
        self.running = False
        can_start = not self.endpoint
        self.start_button.set_sensitive(True)
        self.start_button.set_visible(can_start)
        advice = "Start it here, or run any Style Transfer filter (it starts the backend)." \
            if can_start else f"Start it there with `python -m backend serve --endpoint " \
                              f"{self.endpoint}`."
        self.headline.set_text(f"The style-transfer backend is not running. {advice}")
        self._rows([])
        self.text = f"{error.message}\n\n{CHECK_HINT}"
        self.report.get_buffer().set_text(self.text)

    def _rows(self, rows: list[tuple[str, str]]) -> None:
        for child in self.grid.get_children():
            self.grid.remove(child)
        for index, (name, value) in enumerate(rows):
            label = Gtk.Label(label=name)
            label.set_xalign(1.0)
            label.get_style_context().add_class("dim-label")
            content = Gtk.Label(label=value)
            content.set_xalign(0.0)
            content.set_selectable(True)
            content.set_line_wrap(True)
            content.set_max_width_chars(64)
            self.grid.attach(label, 0, index, 1, 1)
            self.grid.attach(content, 1, index, 1, 1)
        self.grid.show_all()
