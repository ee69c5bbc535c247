"""Shared test set-up: an isolated runtime directory.

Tests must never talk to (or start) a daemon the developer runs for real, so the per-user runtime
directory (socket, state file, token, logs) is redirected to a fresh temporary folder for the run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["STYLE_TRANSFER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="st-test-run-")
# The native kernel library is built once per machine (install.py) into the user's cache. Tests
# that give a subprocess a temporary HOME must still find it there, not compile it again.
os.environ.setdefault("STYLE_TRANSFER_CACHE",
                      str(Path.home() / ".cache" / "style-transfer"))
