"""Backend of the style-transfer toolkit: networks, engines, daemon, batch, training, CLI.

The protocol, option definitions, engine cards and client live once, in the top-level `stclient`
package (standard library + pyzmq, so it also runs inside GIMP's Python; install.py copies it into
the plug-in folder). The backend imports it as a sibling package: run it from the project root
(`python -m backend ...`), as the client and the tests do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# OpenMP worker threads (PyTorch's and the native kernels' at::parallel_for) sleep when idle
# instead of spinning: on a loaded machine (other programs, GIMP itself) spinning workers took
# the CPUs from the thread with the work; measured on the shared 2-core machine at load ~5, a
# 512² CIN job 0.21 s passive against 0.42-0.59 s spinning, a 512² Magenta pass 56-83 ms
# against 130-400 ms. Read once, when torch loads libgomp: so only before torch is imported;
# a value the user set is kept.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from stclient import PROTOCOL_VERSION, __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = PROJECT_ROOT / "plugin" / "style_transfer"

__all__ = ["PROJECT_ROOT", "PLUGIN_DIR", "PROTOCOL_VERSION", "__version__"]
