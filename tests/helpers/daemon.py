"""Start a real daemon (`python -m backend serve --foreground`) for a test, and stop it again.

    with start_daemon(models_dir) as daemon:          # private runtime dir + ipc socket
        with daemon.client() as client:
            client.status()
    daemon.endpoint, daemon.pid, daemon.log_path, daemon.runtime_dir, daemon.rss()
    free_tcp_port(), non_loopback_address()   # for tcp endpoints and "remote" clients

The daemon runs in its own process with its own runtime dir (a short path under /tmp, because
ipc socket paths are limited to ~100 bytes), on the CPU. Its console output goes to `log_path`;
a daemon that fails to start raises with that log in the message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from backend import PROJECT_ROOT
from stclient import paths
from stclient.client import Client


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def non_loopback_address() -> Optional[str]:
    """An IPv4 address of this machine that is not loopback (connecting to it looks remote to
    the daemon), or None. Nothing is sent: a UDP connect only picks the outgoing address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))           # TEST-NET-1: never routed anywhere real
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def make_runtime_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="st-", dir="/tmp" if os.path.isdir("/tmp") else None))


@dataclass
class DaemonHandle:
    endpoint: str
    runtime_dir: Path
    log_path: Path
    process: subprocess.Popen
    own_runtime_dir: bool = False
    _clients: list = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def token(self) -> Optional[str]:
        return paths.read_token(self.runtime_dir)

    def client(self, **kwargs: Any) -> Client:
        """A Client for this daemon (never auto-starts another one); closed by stop()."""
        kwargs.setdefault("autostart", False)
        kwargs.setdefault("timeout", 30.0)
        kwargs.setdefault("runtime_dir", str(self.runtime_dir))
        client = Client(self.endpoint, **kwargs)
        self._clients.append(client)
        return client

    def rss(self) -> int:
        """Resident memory of the daemon process in bytes (Linux)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        text = []
        for path in (self.log_path, paths.log_path(self.runtime_dir)):
            try:
                text.append(path.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(text)

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """Shut the daemon down (shutdown request, then SIGTERM, then SIGKILL); its exit code."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process.poll() is None:
            try:
                with Client(self.endpoint, autostart=False, timeout=3.0,
                            runtime_dir=str(self.runtime_dir)) as client:
                    client.shutdown()
            except Exception:
                self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> "DaemonHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_daemon(models_dir: Optional[os.PathLike | str], endpoint: Optional[str] = None,
                 extra_args: Sequence[str] = (), runtime_dir: Optional[os.PathLike | str] = None,
                 device: str = "cpu", threads: Optional[int] = 1, ready_timeout: float = 180.0,
                 env: Optional[dict[str, str]] = None,
                 project_root: Optional[os.PathLike | str] = None) -> DaemonHandle:
    """Start `serve --foreground` and wait until its Runtime is ready (state file says so).

    `models_dir` None: the daemon uses $STYLE_TRANSFER_MODELS_DIR / the project's models/.
    `project_root`: run another checkout's backend (default: this one).
    `threads` (default 1) is passed as --threads; None leaves the Runtime's default (all CPUs).
    """
    own = runtime_dir is None
    directory = make_runtime_dir() if own else Path(runtime_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    endpoint = endpoint or f"ipc://{directory / paths.SOCKET_NAME}"
    log_path = directory / "console.log"
    command = [sys.executable, "-m", "backend", "serve", "--foreground", "--endpoint", endpoint,
               "--device", device, *extra_args]
    if threads is not None:              # 1 thread: much faster on a small, shared CI machine
        command += ["--threads", str(threads)]
    child_env = dict(os.environ)
    child_env[paths.RUNTIME_DIR_ENV] = str(directory)
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
        child_env["STYLE_TRANSFER_MODELS_DIR"] = str(models_dir)
    child_env.update(env or {})
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=str(project_root or PROJECT_ROOT), env=child_env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    handle = DaemonHandle(endpoint, directory, log_path, process, own)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = handle.log()
            if own:
                shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"the daemon exited with {process.returncode}:\n{text}")
        state = paths.read_state(directory) or {}
        if state.get("pid") == process.pid and state.get("ready"):
            handle.endpoint = state.get("endpoint", endpoint)
            return handle
        time.sleep(0.05)
    handle.stop(5)
    raise RuntimeError(f"the daemon did not become ready in {ready_timeout} s:\n{handle.log()}")
