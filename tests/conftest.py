"""Shared test set-up: import paths and an isolated runtime directory.

Tests must never talk to (or start) a daemon the developer runs for real, so the per-user runtime
directory (socket, state file, token, logs) is redirected to a fresh temporary folder for the run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ["STYLE_TRANSFER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="st-test-run-")
# The native kernel library is built once per machine (install.py) into the user's cache. Tests
# that give a subprocess a temporary HOME must still find it there, not compile it again.
os.environ.setdefault("STYLE_TRANSFER_CACHE",
                      str(Path.home() / ".cache" / "style-transfer"))

import backend  # noqa: E402,F401  (puts stclient on sys.path)
