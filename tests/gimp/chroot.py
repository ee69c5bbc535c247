"""A real GIMP 3.0 (Debian trixie) in a chroot, for end-to-end tests of the plug-in.

Debian 12 ships only GIMP 2.10, so the tests build a minimal trixie root with debootstrap once
(root and network access to the Debian mirror needed; ~80 s on an idle machine), cache it as a
zstd tarball outside the repository ($STYLE_TRANSFER_TEST_CACHE, default
/var/cache/style-transfer-tests/gimp-trixie-<key>.tar.zst, keyed by the package list) and unpack
it once next to the tarball. Each test session then mounts a copy-on-write overlay of that root
(instant to create and to delete); where overlayfs is unavailable it unpacks the tarball (~3 s).

Paths are kept identical on both sides so that the daemon (on the host) and the plug-in (inside the
chroot) can exchange file paths and ipc:// socket paths unchanged:
- `shared` (a host temp folder) is bind-mounted at the same absolute path inside the chroot;
- the host's root is bind-mounted at /.host inside the chroot (as a slave mount, so no mount or
  unmount made there propagates back to the host). A process inside the chroot reaches the host's
  Python through `chroot /.host ...`; this is how the plug-in's auto-start of the daemon is tested
  for real.

Teardown unmounts everything and refuses to delete the folder while anything is still mounted under
it (deleting through a bind mount of / would delete the host's files); deletion never crosses file
systems (rm --one-file-system).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CACHE_DIR = Path(os.environ.get("STYLE_TRANSFER_TEST_CACHE", "/var/cache/style-transfer-tests"))
SUITE = "trixie"
# xvfb: a display for the dialog tests (INTERACTIVE run mode needs one).
PACKAGES = ("gimp", "python3-zmq", "xvfb")
# The cache is keyed by the package list, so changing it rebuilds instead of reusing a stale root.
CACHE_KEY = hashlib.sha256(" ".join((SUITE,) + PACKAGES).encode()).hexdigest()[:8]
TARBALL_NAME = f"gimp-{SUITE}-{CACHE_KEY}.tar.zst"
HOST_VIEW = "/.host"                      # where the host's / appears inside the chroot
GIMP_CONFIG = "/root/.config/GIMP/3.0"    # GIMP3_DIRECTORY inside the chroot
GIMP_CONSOLE = "gimp-console-3.0"
# Plug-ins GIMP needs for our tests: the Python-Fu batch interpreter. Limiting the plug-in path
# halves the first start-up (every plug-in is queried once per fresh config).
SYSTEM_PLUGINS = ("python-eval",)
SYSTEM_PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/gimp/3.0/plug-ins"
SELECTED_PLUGINS = "/usr/local/lib/gimp-test-plug-ins"


class ChrootUnavailable(RuntimeError):
    """GIMP cannot run here at all (not root, no debootstrap/network): the tests skip with this."""


@dataclass
class GimpRun:
    """What one gimp-console invocation did."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"gimp-console exited {self.returncode} after {self.seconds:.1f} s\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")


def _run(cmd: list[str], log: Optional[list[str]] = None, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if log is not None:
        log.append(f"$ {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def check_can_chroot() -> None:
    if os.name != "posix" or os.geteuid() != 0:
        raise ChrootUnavailable("the real-GIMP tests need root (chroot, mount); CI runs as root")


def ensure_tarball(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached trixie root with GIMP; built on first use under a lock (others wait)."""
    check_can_chroot()
    tarball = cache_dir / TARBALL_NAME
    if tarball.is_file():
        return tarball
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.is_file():
            build_tarball(tarball)
    return tarball


def _ensure_host_tools(log: list[str]) -> None:
    missing = [tool for tool in ("debootstrap", "zstd") if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ChrootUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    try:
        _run(["apt-get", "install", "-y", "debootstrap", "zstd"], log,
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except subprocess.CalledProcessError:
        try:
            _run(["apt-get", "update"], log)
            _run(["apt-get", "install", "-y", "debootstrap", "zstd"], log,
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except subprocess.CalledProcessError as error:
            raise ChrootUnavailable("cannot install debootstrap and zstd with apt-get:\n"
                                    + error.stderr[-2000:]) from None


def build_tarball(tarball: Path) -> None:
    """debootstrap trixie + PACKAGES, then pack it. Raises ChrootUnavailable on failure."""
    log: list[str] = []
    _ensure_host_tools(log)
    for stale in tarball.parent.glob(f"gimp-{SUITE}-build-*"):    # left by a killed build
        if stale.is_dir() and not _mounts_under(stale):
            subprocess.run(["rm", "-rf", "--one-file-system", str(stale)], capture_output=True)
    work = Path(tempfile.mkdtemp(prefix=f"gimp-{SUITE}-build-", dir=tarball.parent))
    root = work / "root"
    try:
        try:
            _run(["debootstrap", "--variant=minbase", SUITE, str(root)], log)
        except subprocess.CalledProcessError as error:
            raise ChrootUnavailable(f"debootstrap {SUITE} failed (network to the Debian mirror?):\n"
                                    + error.stderr[-2000:]) from None
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "LANG": "C.UTF-8", "HOME": "/root"}
        try:
            _run(["chroot", str(root), "apt-get", "update"], log, env=env)
            _run(["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends",
                  *PACKAGES], log, env=env)
            _run(["chroot", str(root), "apt-get", "clean"], log, env=env)
        except subprocess.CalledProcessError as error:
            raise ChrootUnavailable("installing GIMP in the trixie chroot failed:\n"
                                    + error.stderr[-2000:]) from None
        partial = tarball.with_suffix(".partial")
        with open(partial, "wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."],
                                   stdout=subprocess.PIPE)
            zstd = subprocess.run(["zstd", "-T0", "-3", "-q"], stdin=tar.stdout, stdout=out)
            tar.stdout.close()
            if tar.wait() != 0 or zstd.returncode != 0:
                partial.unlink(missing_ok=True)
                raise RuntimeError("packing the GIMP chroot failed")
        os.replace(partial, tarball)
    finally:
        # debootstrap mounts proc/sys in its target while it works: never delete through them.
        for target in sorted(_mounts_under(work), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        if not _mounts_under(work):
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], capture_output=True)


def _extract(tarball: Path, root: Path) -> None:
    unzstd = subprocess.Popen(["zstd", "-d", "-c", "-q", str(tarball)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xf", "-"], stdin=unzstd.stdout,
                   check=True)
    unzstd.stdout.close()
    if unzstd.wait() != 0:
        raise RuntimeError(f"unpacking {tarball} failed; delete it to rebuild")


def ensure_unpacked(tarball: Path) -> Path:
    """The tarball unpacked once next to it (the read-only lower layer of every session's
    overlay); re-unpacked when the tarball changes."""
    target = tarball.parent / tarball.name.replace(".tar.zst", "-root")
    marker = tarball.parent / tarball.name.replace(".tar.zst", "-root.stamp")
    stamp = f"{tarball.stat().st_size} {tarball.stat().st_mtime_ns}"
    if marker.is_file() and marker.read_text() == stamp and target.is_dir():
        return target
    with open(tarball.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == stamp and target.is_dir():
            return target
        if _mounts_under(target):
            raise RuntimeError(f"{target} is in use")
        marker.unlink(missing_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=tarball.parent))
        try:
            _extract(tarball, fresh)
            if target.exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(target)], check=True)
            os.replace(fresh, target)
        finally:
            if fresh.exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(fresh)])
        marker.write_text(stamp)
    return target


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix[:-1]:
                found.append(target)
    return found


class GimpChroot:
    """One unpacked GIMP root for a test session; use as a context manager."""

    def __init__(self, base: Optional[Path] = None, host_view: bool = True) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="stg-"))
        self.root = self.base / "root"
        self.shared = self.base / "shared"
        self.host_view = host_view
        self._mounted: list[Path] = []
        self._display: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------------ set-up and teardown
    def __enter__(self) -> "GimpChroot":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def inside(self, host_path: Path | str) -> Path:
        """Where an absolute chroot path lives on the host (e.g. the GIMP config dir)."""
        return self.root / str(host_path).lstrip("/")

    def start(self) -> None:
        tarball = ensure_tarball()
        self.root.mkdir(parents=True)
        self.shared.mkdir(mode=0o777)
        if not self._mount_overlay(tarball):
            _extract(tarball, self.root)
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        self._mount(["-t", "tmpfs", "tmpfs"], self.root / "dev/shm")
        self._mount(["--bind", str(self.shared)], self.inside(self.shared))
        if self.host_view:
            target = self.inside(HOST_VIEW)
            self._mount(["--rbind", "/"], target)
            subprocess.run(["mount", "--make-rslave", str(target)], check=True)
        config = self.inside(GIMP_CONFIG)
        (config / "plug-ins").mkdir(parents=True, exist_ok=True)
        # GIMP wants folders of plug-in folders: link the few system plug-ins we need into one.
        system = self.inside(SELECTED_PLUGINS)
        system.mkdir(parents=True, exist_ok=True)
        for name in SYSTEM_PLUGINS:
            (system / name).symlink_to(f"{SYSTEM_PLUGIN_DIR}/{name}")
        plugin_path = f"{GIMP_CONFIG}/plug-ins:{SELECTED_PLUGINS}"
        (config / "gimprc").write_text(f'(plug-in-path "{plugin_path}")\n')

    def _mount_overlay(self, tarball: Path) -> bool:
        """Copy-on-write view of the cached, unpacked root: instant to set up and to delete."""
        try:
            lower = ensure_unpacked(tarball)
        except (OSError, RuntimeError, subprocess.CalledProcessError):
            return False
        upper, work = self.base / "upper", self.base / "work"
        upper.mkdir()
        work.mkdir()
        proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                               f"lowerdir={lower},upperdir={upper},workdir={work}",
                               str(self.root)], capture_output=True, text=True)
        if proc.returncode != 0:
            return False
        self._mounted.append(self.root)
        return True

    def _mount(self, args: list[str], target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        self._mounted.append(target)

    def start_display(self) -> str:
        """An Xvfb inside the chroot (for dialogs); returns DISPLAY. close() stops it."""
        # X servers also listen on an abstract socket, shared by all chroots: pick a display
        # number per test process so parallel sessions never collide.
        display = f":{100 + os.getpid() % 800}"
        if self._display is None:
            socket = self.inside(f"/tmp/.X11-unix/X{display[1:]}")
            self._display = subprocess.Popen(
                ["chroot", str(self.root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
                 "Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while not socket.exists():
                if self._display.poll() is not None or time.monotonic() > deadline:
                    error = self._display.stderr.read().decode(errors="replace")[-2000:] \
                        if self._display.poll() is not None else "no socket after 30 s"
                    raise RuntimeError(f"Xvfb did not start: {error}")
                time.sleep(0.05)
        return display

    def close(self) -> None:
        """Unmount (deepest first), then delete; never delete while something is still mounted."""
        if self._display is not None:
            self._display.terminate()
            try:
                self._display.wait(10)
            except subprocess.TimeoutExpired:
                self._display.kill()
                self._display.wait(10)
            self._display = None
        for target in reversed(self._mounted):
            if subprocess.run(["umount", "-R", str(target)], capture_output=True).returncode:
                subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        self._mounted.clear()
        if not self.base.exists():
            return
        for _ in range(50):
            if not _mounts_under(self.base):
                break
            time.sleep(0.1)
        left = _mounts_under(self.base)
        if left:
            raise RuntimeError(f"still mounted, not deleting {self.base}: {left}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], capture_output=True)

    # ------------------------------------------------------------------------------ running
    def run_batch(self, code: str, env: Optional[dict[str, str]] = None,
                  timeout: float = 300) -> GimpRun:
        """Run Python-Fu `code` in gimp-console (one GIMP start for all of it)."""
        variables = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                     "GIMP3_DIRECTORY": GIMP_CONFIG}
        variables.update(env or {})
        cmd = ["chroot", str(self.root), "/usr/bin/env", "-i",
               *[f"{key}={value}" for key, value in variables.items()],
               "timeout", "-k", "10", str(int(timeout)), GIMP_CONSOLE, "-i", "-n",
               "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]
        started = time.monotonic()
        proc = subprocess.run(cmd, input=code, capture_output=True, text=True,
                              timeout=timeout + 30)
        return GimpRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a plain command inside the chroot (e.g. its python3)."""
        return subprocess.run(["chroot", str(self.root), "/usr/bin/env", "-i",
                               "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8",
                               *argv], capture_output=True, text=True, timeout=timeout)
