"""Install our plug-in into the chroot's GIMP the way users get it: through install.py.

`python3 install.py --python PY --gimp-plugins-dir DIR` copies plugin/style_transfer into DIR, sets
the run bit, touches the main file (GIMP caches plug-ins by mtime) and writes config.json. The config's
`python` must then point at something that runs the HOST's backend from inside the chroot (for the
auto-start test): a small launcher that chroots into the host view (see chroot.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .chroot import GIMP_CONFIG, HOST_VIEW, GimpChroot

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_NAME = "host-python"


def plugins_dir(gimp: GimpChroot) -> Path:
    return gimp.inside(f"{GIMP_CONFIG}/plug-ins")


def install(gimp: GimpChroot, host_python: str = sys.executable,
            project_root: Path = PROJECT_ROOT) -> Path:
    """Install the plug-in of `project_root` (default: this checkout) with its install.py; returns
    the installed folder (host path).

    The launcher lives in the shared folder, which has the same path on both sides, so the path
    install.py writes into config.json as the backend's Python is valid inside the chroot.
    """
    launcher = write_launcher(gimp, host_python)
    target_root = plugins_dir(gimp)
    proc = subprocess.run(
        [sys.executable, str(project_root / "install.py"), "--python", str(launcher),
         "--gimp-plugins-dir", str(target_root), "--skip-zmq-check", "--no-demo",
         "--no-models"],
        capture_output=True, text=True, cwd=str(project_root), timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"install.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    folder = target_root / "style_transfer"
    config = json.loads((folder / "config.json").read_text())
    if config.get("python") != str(launcher):
        raise RuntimeError(f"install.py wrote {config} instead of python={launcher}")
    # The client starts the daemon with cwd=project_root: that folder must exist in the chroot.
    gimp.inside(config.get("project_root") or str(project_root)).mkdir(parents=True,
                                                                         exist_ok=True)
    main = folder / "style_transfer.py"
    if not os.access(main, os.X_OK):
        raise RuntimeError(f"{main} is not executable after installation")
    return folder


def write_launcher(gimp: GimpChroot, host_python: str) -> Path:
    """`python` for the chroot: re-enter the host's root and run the host's interpreter there."""
    launcher = gimp.shared / LAUNCHER_NAME
    launcher.write_text(
        "#!/bin/sh\n"
        "# Runs the host's Python (the backend's venv) from inside the GIMP test chroot.\n"
        f'exec /usr/sbin/chroot {HOST_VIEW} /bin/sh -c \'cd "$0" && exec "$@"\' "$PWD" '
        f'{host_python} "$@"\n')
    launcher.chmod(0o755)
    return launcher
