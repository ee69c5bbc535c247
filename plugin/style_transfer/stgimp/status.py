"""Backend Status: the daemon's state and models in words, with the command for missing models."""

from __future__ import annotations

from typing import Any

from .filters import make_client


def status_text(endpoint: str) -> str:
    """Does not start a daemon: an unreachable one is an error that says how to start it."""
    client = make_client(endpoint, autostart=False)
    try:
        state = client.status()
        listing = client.models()
    finally:
        client.close()
    return format_status(client.endpoint, state, listing)


def format_status(endpoint: str, state: dict[str, Any], listing: dict[str, Any]) -> str:
    lines = [f"Daemon: running at {endpoint}"]
    for key, title in (("version", "Version"), ("device", "Device"), ("pid", "Process")):
        if key in state:
            lines.append(f"{title}: {state[key]}")
    loaded = state.get("loaded_models") or state.get("loaded") or []
    if loaded:
        lines.append("Loaded: " + ", ".join(str(name) for name in loaded))
    queue = state.get("queue")
    if queue is not None:
        lines.append(f"Queue: {queue}")
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
