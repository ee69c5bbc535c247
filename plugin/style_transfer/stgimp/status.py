"""Backend Status: the daemon's state (the same text as `python -m backend status`) and its
models, with the command that installs the missing ones."""

from __future__ import annotations

from typing import Any

from stclient.status import DaemonStatus, format_status

from .filters import make_client


def status_text(endpoint: str) -> str:
    """Does not start a daemon: an unreachable one is an error that says how to start it."""
    client = make_client(endpoint, autostart=False)
    try:
        state = client.status()
        listing = client.models()
    finally:
        client.close()
    return format_report(state, listing)


def format_report(state: dict[str, Any], listing: dict[str, Any]) -> str:
    lines = [format_status(DaemonStatus.from_json(state))]
    models = listing.get("models", [])
    installed = [m for m in models if m.get("installed")]
    missing = [m for m in models if not m.get("installed")]
    lines.append("")
    lines.append(f"Installed models ({len(installed)}):")
    for model in installed:
        lines.append(f"  {model.get('engine', '?'):9} {model.get('name')}"
                     f" - {model.get('display_name', '')}")
    if missing:
        lines.append("")
        lines.append(f"Not installed ({len(missing)}):")
        for model in missing:
            hint = model.get("install_hint") or \
                f"python3 install.py --models {model.get('name')}"
            lines.append(f"  {model.get('engine', '?'):9} {model.get('name')}: {hint}")
    return "\n".join(lines)
