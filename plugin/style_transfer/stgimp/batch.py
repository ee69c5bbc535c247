"""The Batch Process Folder procedure: arguments -> a batch spec for the daemon's `batch` op.

The daemon reads and writes the files itself (no pixels travel through GIMP), skips outputs that
exist unless `overwrite`, and reports per-file results; GIMP's progress bar follows its
"done/total name" progress texts.
"""

from __future__ import annotations

import os
import re
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from stclient.errors import BAD_REQUEST, StyleTransferError  # noqa: E402

from stclient import registry  # noqa: E402

from .arguments import ALL_BATCH_OPTIONS  # noqa: E402
from .filters import make_client  # noqa: E402
from .requests import file_path  # noqa: E402

_PROGRESS = re.compile(r"^(\d+)/(\d+)(?: (.*))?$", re.DOTALL)


def _folder(config: Any, name: str, must_exist: bool) -> str:
    gfile = config.get_property(name)
    path = gfile.get_path() if gfile is not None else None
    if not path:
        raise StyleTransferError(BAD_REQUEST, f"Choose the {name.replace('-', ' ')}.")
    path = os.path.abspath(path)
    if must_exist and not os.path.isdir(path):
        raise StyleTransferError(BAD_REQUEST, f"The {name.replace('-', ' ')} {path} does not "
                                              "exist or is not a folder.")
    return path


def batch_spec(config: Any) -> dict[str, Any]:
    """The JSON spec (backend.batch.spec.BatchSpec fields) for these arguments."""
    engine = config.get_property("engine")
    spec: dict[str, Any] = {
        "input_dir": _folder(config, "input-folder", True),
        "output_dir": _folder(config, "output-folder", False),
        "engine": engine,
        "recursive": bool(config.get_property("recursive")),
        "overwrite": bool(config.get_property("overwrite")),
        "options": {},
    }
    if spec["input_dir"] == spec["output_dir"]:
        raise StyleTransferError(BAD_REQUEST, "The output folder must differ from the input "
                                              "folder, so no original is ever overwritten.")
    card = registry.card(engine)
    model = (config.get_property("model") or "").strip()
    if model and card.takes_model:
        spec["model"] = model
    if card.styles.takes_images:
        style = file_path(config, "style-file")
        if not style:
            raise StyleTransferError(BAD_REQUEST, f"{card.title} batch jobs need a style image "
                                                  "(style-file).")
        spec["styles"] = [style]
    if card.styles.builtin_styles:
        spec["options"]["style_index"] = [int(config.get_property("style-index"))]
    for name in ALL_BATCH_OPTIONS:   # the chosen engine's among them
        option = card.option(name)
        if option is not None:
            value = config.get_property(option.gimp_name)
            if value != option.default:
                spec["options"][name] = value
    return spec


def run_batch(config: Any) -> dict[str, Any]:
    spec = batch_spec(config)
    Gimp.progress_init(f"Style transfer: {spec['input_dir']}")
    client = make_client((config.get_property("endpoint") or "").strip())
    try:
        report = client.batch(spec, on_progress=_progress)
    finally:
        client.close()
    Gimp.progress_end()
    return report


def _progress(fraction: float, text: str) -> None:
    match = _PROGRESS.match(text or "")
    if match:
        done, total, name = match.groups()
        Gimp.progress_set_text(f"{done} of {total}: {name or ''}".rstrip(": "))
    elif text:
        Gimp.progress_set_text(text)
    Gimp.progress_update(min(1.0, max(0.0, fraction)))


def summary(report: dict[str, Any]) -> str:
    """One paragraph a user reads: counts, where the results are, and the first failures."""
    counts = report.get("counts", {})
    spec = report.get("spec", {})
    text = (f"Style transfer batch: {counts.get('ok', 0)} written, "
            f"{counts.get('skipped', 0)} skipped (already done), {counts.get('failed', 0)} "
            f"failed, {counts.get('cancelled', 0)} not done, in "
            f"{report.get('elapsed_s', 0):.1f} s. Output: {spec.get('output_dir', '?')}.")
    failures = [item for item in report.get("items", []) if item.get("status") == "failed"]
    for item in failures[:5]:
        text += f"\n{item.get('input', '?')}: {item.get('message', '')}"
    if len(failures) > 5:
        text += f"\n... and {len(failures) - 5} more (see the report)."
    if report.get("cancelled"):
        text += "\nThe batch was cancelled; run it again to resume (done files are skipped)."
    return text
