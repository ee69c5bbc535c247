"""Backend of the style-transfer toolkit: networks, engines, daemon, batch, training, CLI.

The protocol, option definitions and client live once, in the plug-in folder's `stclient`
package (it must run inside GIMP's Python); this puts that folder on sys.path so the backend
imports the very same modules.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = PROJECT_ROOT / "plugin" / "style_transfer"
if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))

from stclient import PROTOCOL_VERSION, __version__  # noqa: E402

__all__ = ["PROJECT_ROOT", "PLUGIN_DIR", "PROTOCOL_VERSION", "__version__"]
