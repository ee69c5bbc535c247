"""Make `import zmq` work in GIMP's Python.

Linux distributions' GIMP uses the system Python, which has pyzmq when python3-zmq is installed.
GIMP on Windows/macOS bundles its own Python without pyzmq; install.py then puts a matching pyzmq
wheel into the plug-in's vendor/ folder, which is added to sys.path here only when needed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional

VENDOR_DIR = Path(__file__).resolve().parent.parent / "vendor"


def ensure_zmq() -> Optional[str]:
    """Import zmq (falling back to vendor/). Returns None on success, else what the user must do."""
    try:
        importlib.import_module("zmq")
        return None
    except ImportError as first:
        first_error = first
    if VENDOR_DIR.is_dir() and str(VENDOR_DIR) not in sys.path:
        sys.path.insert(0, str(VENDOR_DIR))
        for name in [n for n in sys.modules if n == "zmq" or n.startswith("zmq.")]:
            del sys.modules[name]          # a half-imported system zmq must not shadow vendor/
        try:
            importlib.import_module("zmq")
            return None
        except ImportError as second:
            first_error = second
    return (f"GIMP's Python ({sys.executable or 'python'} {sys.version.split()[0]}) cannot import "
            f"pyzmq ({first_error}). Run `python3 install.py` again (it puts a matching pyzmq "
            f"into {VENDOR_DIR}), or install your system's python3-zmq package, then restart "
            "GIMP.")
