#!/usr/bin/env python3
"""Style Transfer for GIMP 3: one filter per engine card (stclient/cards/), backed by a local daemon.

Procedures (names and argument names are the public scripting API):
  python-fu-style-transfer-<engine>  one per engine card: the card's `gimp_arguments` in order
                                     (adain: style-file, style-layer, style2-file, style-weight,
                                     alpha, preserve-color, use-selection, model, working-size,
                                     color-output; cyclegan, mixgan: model, working-size,
                                     color-output; pix2pix: model, norm, working-size,
                                     color-output; the feed-forward ones then photo-radius,
                                     photo-eps; colortransfer: style-file, style-layer, alpha,
                                     histogram-method, color-space, keep-luminance,
                                     use-selection, color-output), then endpoint
  python-fu-style-transfer-<engine>-sample  engines that draw new images (mixgan): model, count,
                                     seed, endpoint (new image)
  python-fu-style-transfer-batch     input-folder, output-folder, engine, model, style-file, alpha,
                                     preserve-color, recursive, overwrite, endpoint, working-size,
                                     style-index (engines with built-in styles), photo-radius,
                                     photo-eps (the feed-forward engines)
  python-fu-style-transfer-status    endpoint
Ranges, defaults and help of option arguments are the card's OptionSpecs. Each filter returns the
new layer. Failures return EXECUTION_ERROR with a sentence to act on.

GIMP's Python only: standard library, PyGObject and pyzmq (never torch or numpy); the heavy work
happens in the daemon (`python -m backend serve`), which the client starts when it is not running.
"""

from __future__ import annotations

import sys
import traceback

# GIMP runs this file as a script, so its folder (with stclient/ and stgimp/) is sys.path[0].
import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

from stclient import registry  # noqa: E402
from stclient.errors import BAD_IMAGE, CANCELLED, StyleTransferError  # noqa: E402
from stgimp import arguments, zmqsetup  # noqa: E402
from stgimp.arguments import RW  # noqa: E402
from stgimp.timing import Timer  # noqa: E402

MENU = "<Image>/Filters/Style Transfer"
FILTERS = {card.procedure: card for card in registry.cards().values()}
SAMPLERS = {card.sample_procedure: card for card in registry.cards().values()
            if card.sample is not None}
BATCH = "python-fu-style-transfer-batch"
STATUS = "python-fu-style-transfer-status"


# ------------------------------------------------------------------------------- results

def _success(procedure: Gimp.Procedure, *values: GObject.Value) -> Gimp.ValueArray:
    return Gimp.ValueArray.new_from_values(
        [GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS), *values])


def _failure(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, message: str) -> Gimp.ValueArray:
    """Tell the caller (EXECUTION_ERROR with the message) and the terminal. GIMP itself shows an
    EXECUTION_ERROR's message to the user of a filter run from the GUI, so no Gimp.message here:
    that showed every error twice in one box."""
    print(f"{procedure.get_name()}: {message}", file=sys.stderr, flush=True)
    try:
        Gimp.progress_end()
    except Exception:
        pass
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def _cancelled(procedure: Gimp.Procedure) -> Gimp.ValueArray:
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def _guarded(body):
    """Run `body(procedure, run_mode, ...)`, turning every failure into EXECUTION_ERROR."""
    def wrapper(procedure, run_mode, *args):
        problem = zmqsetup.ensure_zmq()
        if problem:
            return _failure(procedure, run_mode, problem)
        try:
            return body(procedure, run_mode, *args)
        except StyleTransferError as error:
            if error.code == CANCELLED:
                return _cancelled(procedure)
            return _failure(procedure, run_mode, error.message)
        except Exception as error:  # a bug: still a readable message, details on stderr
            traceback.print_exc()
            return _failure(procedure, run_mode,
                            "The style-transfer plug-in failed unexpectedly "
                            f"({type(error).__name__}: {error}). Please report this with GIMP's terminal output.")
    return wrapper


# ------------------------------------------------------------------------------ filters

@_guarded
def _run_filter(procedure, run_mode, image, drawables, config):
    from stgimp import dialog, filters, requests
    engine = FILTERS[procedure.get_name()].name
    if run_mode == Gimp.RunMode.INTERACTIVE:
        if not dialog.filter_dialog(procedure, config, engine, image,
                                    drawables[0] if len(drawables) == 1 else None):
            return _cancelled(procedure)
    if len(drawables) != 1:
        raise StyleTransferError(BAD_IMAGE, "Select exactly one layer to stylize "
                                              f"({len(drawables)} are selected).")
    timer = Timer()
    request = requests.filter_request(engine, config)
    layer = filters.run_filter(image, drawables[0], request, timer)
    timer.emit(procedure.get_name())
    return _success(procedure, GObject.Value(Gimp.Layer, layer))


def _filter_entry(procedure, run_mode, image, drawables, config, data):
    return _run_filter(procedure, run_mode, image, list(drawables), config)


def _add_endpoint(procedure: Gimp.Procedure) -> None:
    procedure.add_string_argument("endpoint", "Daemon _endpoint",
                                  "ZeroMQ endpoint of the daemon (empty = the default, which is "
                                  "started when not running)", "", RW)


# ------------------------------------------------------------------- image-less procedures

@_guarded
def _run_batch(procedure, run_mode, config):
    from stgimp import batch, dialog
    if run_mode == Gimp.RunMode.INTERACTIVE and not dialog.batch_dialog(procedure, config):
        return _cancelled(procedure)
    report = batch.run_batch(config)
    counts = report.get("counts", {})
    summary = batch.summary(report)
    if run_mode != Gimp.RunMode.NONINTERACTIVE:
        Gimp.message(summary)
    if report.get("cancelled"):
        return _cancelled(procedure)
    return _success(procedure,
                    GObject.Value(GObject.TYPE_INT, int(counts.get("ok", 0))),
                    GObject.Value(GObject.TYPE_INT, int(counts.get("skipped", 0))),
                    GObject.Value(GObject.TYPE_INT, int(counts.get("failed", 0))),
                    GObject.Value(GObject.TYPE_STRING, summary))


@_guarded
def _run_status(procedure, run_mode, config):
    from stgimp import dialog, status
    endpoint = (config.get_property("endpoint") or "").strip()
    if run_mode == Gimp.RunMode.INTERACTIVE:
        text = dialog.show_status(procedure, endpoint)      # a backend that is down is shown
    else:
        text = status.status_text(endpoint)
        print(text, file=sys.stderr, flush=True)
    return _success(procedure, GObject.Value(GObject.TYPE_STRING, text))


@_guarded
def _run_sample(procedure, run_mode, config):
    from stgimp import dialog, sample
    card = SAMPLERS[procedure.get_name()]
    if run_mode == Gimp.RunMode.INTERACTIVE and not dialog.sample_dialog(procedure, config,
                                                                         card.name):
        return _cancelled(procedure)
    image = sample.sample_image(config, card.name)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.Display.new(image)
        Gimp.displays_flush()
    return _success(procedure, GObject.Value(Gimp.Image, image))


def _config_entry(body):
    def entry(procedure, config, data):
        return body(procedure, config.get_property("run-mode"), config)
    return entry


class StyleTransfer(Gimp.PlugIn):
    """The plug-in: registers every procedure; GIMP calls do_create_procedure per name."""

    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [*FILTERS, *SAMPLERS, BATCH, STATUS]

    def do_create_procedure(self, name):
        Gegl.init(None)
        if name in FILTERS:
            return self._filter_procedure(name)
        if name == BATCH:
            return self._batch_procedure(name)
        if name == STATUS:
            return self._status_procedure(name)
        if name in SAMPLERS:
            return self._sample_procedure(name)
        return None

    def _filter_procedure(self, name: str) -> Gimp.ImageProcedure:
        card = FILTERS[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN,
                                            _filter_entry, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(card.menu_label)
        procedure.add_menu_path(MENU)
        procedure.set_documentation(
            card.description,
            f"{card.description}. The result is a new layer above the source layer (same "
            "offsets, the source's alpha kept, only the selection when there is one). The "
            "daemon is started automatically when it is not running.", name)
        procedure.set_attribution("Style Transfer for GIMP", "GPL-3.0-or-later", "2026")
        arguments.add_filter_arguments(procedure, card)
        _add_endpoint(procedure)
        procedure.add_layer_return_value("layer", "Layer", "The new stylized layer", False,
                                         RW)
        return procedure

    def _plain_procedure(self, name: str, entry, label: str, blurb: str) -> Gimp.Procedure:
        procedure = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, _config_entry(entry),
                                       None)
        procedure.set_menu_label(label)
        procedure.add_menu_path(MENU)
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        procedure.set_documentation(blurb, blurb, name)
        procedure.set_attribution("Style Transfer for GIMP", "GPL-3.0-or-later", "2026")
        procedure.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode,
                                    Gimp.RunMode.INTERACTIVE, RW)
        return procedure

    def _batch_procedure(self, name: str) -> Gimp.Procedure:
        procedure = self._plain_procedure(
            name, _run_batch, "Batch Process Folder...",
            "Stylize every image of a folder into another folder (the daemon does the work; "
            "existing outputs are skipped unless overwrite is set)")
        procedure.add_menu_path("<Image>/File/Style Transfer")
        procedure.add_file_argument("input-folder", "_Input folder", "Folder of images to stylize",
                                    Gimp.FileChooserAction.SELECT_FOLDER, True, None, RW)
        procedure.add_file_argument("output-folder", "Res_ults folder",
                                    "Where the results are written (created when missing)",
                                    Gimp.FileChooserAction.CREATE_FOLDER, True, None, RW)
        arguments.add_engine_choice(procedure)
        procedure.add_string_argument("model", "_Model", "Model name (empty = engine default)",
                                      "", RW)
        procedure.add_file_argument("style-file", "St_yle image",
                                    "Style image, for engines that take one ("
                                    + ", ".join(arguments.style_engines()) + ")",
                                    Gimp.FileChooserAction.OPEN, True, None, RW)
        for option in arguments.BATCH_OPTIONS:
            arguments.add_option_argument(procedure, registry.shared_option(option))
        procedure.add_boolean_argument("recursive", "Include sub-_folders", "Include sub-folders", False,
                                       RW)
        procedure.add_boolean_argument("overwrite", "O_verwrite",
                                       "Redo images whose output exists (default: skip them)",
                                       False, RW)
        _add_endpoint(procedure)
        for option in arguments.BATCH_LATER_OPTIONS:   # added later: after the first ones
            arguments.add_option_argument(procedure, registry.shared_option(option))
        arguments.add_batch_style_index(procedure)
        for option in arguments.BATCH_PHOTO_OPTIONS:   # added last
            arguments.add_option_argument(procedure, registry.shared_option(option))
        procedure.add_int_return_value("ok", "Done", "Images written", 0, 2**31 - 1, 0, RW)
        procedure.add_int_return_value("skipped", "Skipped", "Outputs that already existed",
                                       0, 2**31 - 1, 0, RW)
        procedure.add_int_return_value("failed", "Failed", "Images that could not be done",
                                       0, 2**31 - 1, 0, RW)
        procedure.add_string_return_value("summary", "Summary", "What happened, in words", "",
                                          RW)
        return procedure

    def _status_procedure(self, name: str) -> Gimp.Procedure:
        procedure = self._plain_procedure(
            name, _run_status, "Backend Status...",
            "Show the style-transfer daemon's state, device and models, and how to install "
            "missing models")
        _add_endpoint(procedure)
        procedure.add_string_return_value("status", "Status", "The status report", "", RW)
        return procedure

    def _sample_procedure(self, name: str) -> Gimp.Procedure:
        card = SAMPLERS[name]
        procedure = self._plain_procedure(name, _run_sample, card.sample.menu_label,
                                          card.sample.description)
        procedure.add_string_argument("model", "_Model", f"{card.title} model (empty = default)",
                                      "", RW)
        procedure.add_int_argument("count", "_Number of images", "How many images", 1,
                                   card.sample.max_count, 4, RW)
        arguments.add_option_argument(procedure, card.option("seed"))
        _add_endpoint(procedure)
        procedure.add_image_return_value("image", "Image", "The new image", False, RW)
        return procedure


if __name__ == "__main__":
    Gimp.main(StyleTransfer.__gtype__, sys.argv)
