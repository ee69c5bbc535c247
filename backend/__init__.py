"""Backend of the style-transfer toolkit: networks, engines, daemon, batch, training, CLI.

The protocol, option definitions, engine cards and client live once, in the top-level `stclient`
package (standard library + pyzmq, so it also runs inside GIMP's Python; install.py copies it into
the plug-in folder). The backend imports it as a sibling package: run it from the project root
(`python -m backend ...`), as the client and the tests do.
"""

from __future__ import annotations

from pathlib import Path

from stclient import PROTOCOL_VERSION, __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = PROJECT_ROOT / "plugin" / "style_transfer"

__all__ = ["PROJECT_ROOT", "PLUGIN_DIR", "PROTOCOL_VERSION", "__version__"]
