"""Where the daemon's per-user files live: runtime dir, socket, state file, lock, token, logs.

Shared by the daemon (which creates them) and every client (which reads them). Standard library
only. The runtime directory is private to the user (0700, owned by them, not a symlink): the ipc
socket inside it is therefore reachable by that user only, and the TCP token file stays secret.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from . import settings
from .errors import UNAVAILABLE, StyleTransferError

RUNTIME_DIR_ENV = settings.ENV["runtime_dir"]
TOKEN_ENV = settings.ENV["token"]
DEFAULT_TCP_PORT = 47621
IPC_PATH_LIMIT = 100          # sockaddr_un.sun_path is 104-108 bytes depending on the system

SOCKET_NAME = "daemon.sock"
STATE_NAME = "state.json"
LOCK_NAME = "daemon.lock"
TOKEN_NAME = "token"
PLAIN_USER = "style-transfer"  # ZeroMQ PLAIN user name on shared endpoints; the password is the token
LOG_NAME = "daemon.log"
OUTPUT_NAME = "daemon.out"    # stdout/stderr of a detached daemon (crashes outside logging)

IS_WINDOWS = sys.platform.startswith("win")


def runtime_dir() -> Path:
    """The per-user directory for the socket and state (not created here)."""
    override = settings.current().runtime_dir
    if override:
        return Path(override)
    if IS_WINDOWS:
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "style-transfer" / "run"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "style-transfer"
    return Path(tempfile.gettempdir()) / f"style-transfer-{os.getuid()}"


def ensure_runtime_dir(directory: Optional[Path] = None) -> Path:
    """Create the runtime dir 0700 and refuse one that another user owns or that is a symlink."""
    directory = Path(directory or runtime_dir())
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StyleTransferError(UNAVAILABLE, f"Cannot create the runtime directory {directory}: "
                                              f"{error.strerror}.") from None
    return check_runtime_dir(directory)


def runtime_dir_problem(directory: Path) -> Optional[str]:
    """Why `directory` cannot be this user's private runtime dir (None when it can).

    A plain directory (not a symlink), owned by the current user; group/other access is not a
    problem here (the owner may tighten it, see check_runtime_dir).
    """
    if IS_WINDOWS:
        return None
    try:
        info = os.lstat(directory)
    except OSError as error:
        return f"cannot be examined ({error.strerror})"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "is not a plain directory (a symlink or a file)"
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    return None


def check_runtime_dir(directory: Path) -> Path:
    """Refuse a runtime dir another user owns or that is a symlink; make ours 0700.

    The daemon (serve) and every client call this before they trust anything inside: whoever
    owns the folder decides which daemon a client finds (state.json) and talks to (the socket).
    """
    directory = Path(directory)
    problem = runtime_dir_problem(directory)
    if problem is not None:
        raise StyleTransferError(
            UNAVAILABLE, f"The runtime directory {directory} {problem}, so neither its daemon "
                         "nor its files can be trusted. Remove it if it is yours, or set "
                         f"{RUNTIME_DIR_ENV} (or XDG_RUNTIME_DIR) to a private directory.")
    if not IS_WINDOWS and stat.S_IMODE(os.lstat(directory).st_mode) & 0o077:
        os.chmod(directory, 0o700)
    return directory


def is_private_endpoint(endpoint: str, directory: Optional[Path] = None) -> bool:
    """True for an ipc socket directly inside this user's private runtime dir.

    Only such a socket is reachable by this user alone, so only there may a client go without
    the token. Abstract sockets (ipc://@name), relative paths, sockets in other folders and every
    tcp:// endpoint need it.
    """
    if not endpoint.startswith("ipc://"):
        return False
    path = endpoint[len("ipc://"):]
    if not path or path.startswith("@") or not os.path.isabs(path):
        return False
    directory = Path(directory or runtime_dir())
    if os.path.realpath(os.path.dirname(path)) != os.path.realpath(directory):
        return False
    if IS_WINDOWS or runtime_dir_problem(directory) is not None:
        return False
    return stat.S_IMODE(os.lstat(directory).st_mode) & 0o077 == 0


def socket_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / SOCKET_NAME


def state_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / STATE_NAME


def lock_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / LOCK_NAME


def token_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / TOKEN_NAME


def log_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / LOG_NAME


def output_path(directory: Optional[Path] = None) -> Path:
    return Path(directory or runtime_dir()) / OUTPUT_NAME


def default_endpoint(directory: Optional[Path] = None) -> str:
    """ipc socket in the runtime dir; loopback TCP on Windows or when the path is too long."""
    if IS_WINDOWS:
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORT}"
    path = socket_path(directory)
    if len(str(path)) > IPC_PATH_LIMIT:
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORT}"
    return f"ipc://{path}"


def read_own_file(path: os.PathLike | str, limit: int = 1 << 20) -> Optional[bytes]:
    """The bytes of `path` when it is a regular file (not a link) of this user's and at most
    `limit` bytes, else None: a file someone else put there, or a device, says nothing to us."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit \
                or (not IS_WINDOWS and info.st_uid != os.getuid()):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_own_text(path: Path, limit: int = 1 << 20) -> Optional[str]:
    data = read_own_file(path, limit)
    try:
        return data.decode("utf-8") if data is not None else None
    except UnicodeDecodeError:
        return None


def read_state(directory: Optional[Path] = None) -> Optional[dict[str, Any]]:
    """The running daemon's state file (endpoint, pid, version), or None."""
    text = _read_own_text(state_path(directory))
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def resolve_endpoint(endpoint: Optional[str] = None, directory: Optional[Path] = None) -> str:
    """Explicit > the `endpoint` setting > the running daemon's state file > the default."""
    if endpoint:
        return endpoint
    if settings.current().endpoint:
        return settings.current().endpoint
    state = read_state(directory)
    if state and isinstance(state.get("endpoint"), str) and pid_alive(state.get("pid")):
        return state["endpoint"]
    return default_endpoint(directory)


def read_token(directory: Optional[Path] = None) -> Optional[str]:
    """The per-user TCP token (the `token` setting wins), or None when there is none yet."""
    if settings.current().token:
        return settings.current().token
    text = _read_own_text(token_path(directory), 4096)
    if text is None:
        return None
    return text.strip() or None


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if IS_WINDOWS:
        import ctypes
        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFO
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (Linux); it no longer serves anything."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
