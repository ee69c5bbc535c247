"""Native CPU kernels: C++ sources in kernels/, compiled once per machine and cached.

One library, "cpu": the Winograd 3x3 convolution (winograd.cpp), a channels_last instance
normalisation (instance_norm.cpp) and the fused small-channel conv layers of the conditional
norm networks (fused_conv.cpp), bound to Python in module.cpp.

Why native code: on the CPU the fastest float32 direct convolution (oneDNN's) is a ceiling that
no rearrangement of PyTorch calls gets past; a Winograd convolution does (4x fewer products), but
its transforms must be fused per tile to pay, which needs a compiled loop (see
kernels/winograd.cpp); the instance normalisation keeps the Winograd layout (channels_last)
fast, where PyTorch's reductions are slow.

The build uses the same C++ compiler torch.compile uses (g++/c++, plus ninja and Python's headers)
and `-march=native`, so the library is tagged with a hash of the source, the flags, torch's and
Python's versions and the CPU model: a moved cache or a changed source is never loaded.

- `install.py` builds it (`python -m backend kernels build`).
- Anything that wants a kernel calls `kernel(name)`; if it is not built yet, a detached process
  builds it in the background (once; a failure is remembered per tag) and callers use PyTorch's
  own operators meanwhile: the speed-up arrives when the build is done, never a wait or an error.
- `$STYLE_TRANSFER_NATIVE=0` switches native kernels off (the plain PyTorch path everywhere).
- `$STYLE_TRANSFER_CACHE` moves the cache (default ~/.cache/style-transfer).

Builds go to a private temporary folder and the library is moved into place with a rename, so
a build that is killed half-way leaves nothing that could be loaded.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

from stclient import paths, settings

NATIVE_ENV = settings.ENV["native"]       # "0": never build or load native kernels
CACHE_ENV = settings.ENV["cache_dir"]     # cache folder (default ~/.cache/style-transfer)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
CPU_LIBRARY = "cpu"          # the one library: Winograd convolution + instance norm
# library name -> its C++ sources (compiled and linked into one Python extension module)
SOURCES = {CPU_LIBRARY: ("module.cpp", "winograd.cpp", "instance_norm.cpp", "fused_conv.cpp")}
HEADERS = ("kernels.h",)
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)
STALE_BUILD_S = 900          # a build lock older than this is from a process that died
RECHECK_S = 2.0              # while a background build runs, look for its result this often

log = logging.getLogger(__name__)


def enabled() -> bool:
    return settings.current().native


def cache_dir() -> Path:
    value = settings.current().cache_dir
    base = Path(value).expanduser() if value else Path.home() / ".cache" / "style-transfer"
    return base / "kernels"


def _cpu_model() -> str:
    """The CPU's model and instruction-set flags (a library built with -march=native for one
    CPU can crash on another with the same model name but fewer instructions, e.g. in a VM)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and key not in found:
                    found[key] = line.strip()
    except OSError:
        pass
    return "\n".join(found.values()) or (platform.processor() or platform.machine())


def tag(name: str) -> str:
    """What the compiled library depends on, hashed."""
    import torch
    digest = hashlib.sha256()
    code = b"".join((KERNEL_DIR / file).read_bytes() for file in SOURCES[name] + HEADERS)
    for part in (code, " ".join(CFLAGS + LDFLAGS).encode(),
                 torch.__version__.encode(), sys.version.encode(), _cpu_model().encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class KernelFiles:
    module: str          # the Python extension module's name (unique per tag)
    library: Path        # the built .so, once it exists
    lock: Path           # exists while a build runs (holds the builder's pid)
    failure: Path        # exists after a failed build (holds the compiler's message)

    @classmethod
    def of(cls, name: str) -> "KernelFiles":
        stem = f"st_{name}_{tag(name)}"
        folder = cache_dir()
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        return cls(stem, folder / f"{stem}{suffix}", folder / f"{stem}.building",
                   folder / f"{stem}.failed")


def compiler() -> Optional[str]:
    """The C++ compiler a build would use (None: cannot build here)."""
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def missing_build_tools() -> list[str]:
    missing = []
    if compiler() is None:
        missing.append("a C++ compiler (Debian/Ubuntu: apt install g++)")
    include = sysconfig.get_paths().get("include")
    if not include or not Path(include, "Python.h").exists():
        missing.append("Python's headers (Debian/Ubuntu: apt install python3-dev)")
    if shutil.which("ninja", path=_build_path()) is None:
        missing.append("ninja (pip install ninja)")
    return missing


def _build_path() -> str:
    """PATH with the running interpreter's bin folder first (a venv's pip-installed ninja)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _import(module_name: str, library: Path) -> ModuleType:
    if module_name in sys.modules:
        return sys.modules[module_name]
    import torch  # noqa: F401  (the extension links against torch's libraries)
    spec = importlib.util.spec_from_file_location(module_name, library)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {library}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def build(name: str) -> Path:
    """Compile kernel `name` now (blocking, ~20-60 s) and return the library's path. Raises
    RuntimeError with the compiler's message when it fails (and records the failure)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime"
    from torch.utils import cpp_extension
    files = KernelFiles.of(name)
    files.library.parent.mkdir(parents=True, exist_ok=True)
    missing = missing_build_tools()
    if missing:
        reason = "cannot build native kernels: missing " + ", ".join(missing)
        _write(files.failure, reason)
        raise RuntimeError(reason)
    scratch = Path(tempfile.mkdtemp(prefix=f"{files.module}-", dir=files.library.parent))
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = _build_path()
    try:
        cpp_extension.load(name=files.module,
                           sources=[str(KERNEL_DIR / file) for file in SOURCES[name]],
                           extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
                           build_directory=str(scratch), verbose=False)
        built = next(scratch.glob(f"{files.module}*.so"))
        staged = files.library.with_name(files.library.name + ".tmp")
        shutil.copyfile(built, staged)
        os.replace(staged, files.library)
        files.failure.unlink(missing_ok=True)
        return files.library
    except Exception as error:
        # the compiler's last lines say what went wrong; its whole output can be megabytes
        reason = f"building the {name} kernel failed: {type(error).__name__}: " \
            + _tail(str(error), 3000)
        _write(files.failure, reason)
        raise RuntimeError(reason) from error
    finally:
        os.environ["PATH"] = old_path
        shutil.rmtree(scratch, ignore_errors=True)


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + f".{os.getpid()}.tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def take_build_lock(files: KernelFiles) -> bool:
    """Create the build lock (holding this pid) unless it exists: one build at a time."""
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(files.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
    os.close(fd)
    return True


def _build_running(files: KernelFiles) -> bool:
    try:
        pid = int(files.lock.read_text().split()[0])
        age = time.time() - files.lock.stat().st_mtime
    except (OSError, ValueError, IndexError):
        return False
    return age < STALE_BUILD_S and paths.pid_alive(pid)


def start_background_build(name: str) -> bool:
    """Start a detached `python -m backend kernels build NAME` unless one runs or the last
    one failed; True when a build is (now) running."""
    files = KernelFiles.of(name)
    if files.library.exists() or files.failure.exists():
        return False
    if _build_running(files):
        return True
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    files.lock.unlink(missing_ok=True)                      # stale
    project_root = Path(__file__).resolve().parents[2]
    log_path = files.lock.with_suffix(".log")
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "kernels", "build", name, "--lock"],
            cwd=project_root, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    log.info("building the native %s kernel in the background (pid %d, log %s)",
             name, process.pid, log_path)
    return True


class KernelSlot:
    """One kernel's state in this process: loaded module, or why not (yet)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.module: Optional[ModuleType] = None
        self.state = "not loaded"
        self._next_check = 0.0
        self._lock = threading.Lock()

    def get(self, build: str = "background") -> Optional[ModuleType]:
        """build: "background" (start a detached build if needed), "now" (build and wait) or
        "never" (only load an existing library)."""
        if self.module is not None:
            return self.module
        if not enabled():
            self.state = f"disabled (${NATIVE_ENV}=0)"
            return None
        now = time.monotonic()
        if build != "now" and now < self._next_check:
            return None
        with self._lock:
            if self.module is not None:
                return self.module
            self._next_check = now + RECHECK_S
            try:
                files = KernelFiles.of(self.name)
                if not files.library.exists() and build == "now":
                    build_fn(self.name)
                if files.library.exists():
                    self.module = _import(files.module, files.library)
                    self.state = f"ready ({files.library})"
                    return self.module
                if files.failure.exists():
                    self.state = "unavailable: " + files.failure.read_text(errors="replace")[:300]
                elif build == "background" and start_background_build(self.name):
                    self.state = "building in the background"
                else:
                    self.state = "not built"
            except Exception as error:  # noqa: BLE001 - a kernel is an optional speed-up
                self.state = f"unavailable: {type(error).__name__}: {error}"[:400]
                log.warning("native %s kernel: %s", self.name, self.state)
            return None


build_fn = build            # tests replace it to count builds
_SLOTS: dict[str, KernelSlot] = {}


def kernel(name: str, build: str = "background") -> Optional[ModuleType]:
    """The loaded kernel module, or None (not built yet, disabled, or no compiler)."""
    slot = _SLOTS.setdefault(name, KernelSlot(name))
    return slot.get(build)


def state(name: str) -> str:
    slot = _SLOTS.get(name)
    if slot is None:
        return "not loaded"
    return slot.state


def describe(device_type: str = "cpu") -> str:
    """For status displays: "ready" when the CPU library is in use, else why not."""
    if device_type != "cpu":
        return f"not used on {device_type}"
    if kernel(CPU_LIBRARY, build="never") is not None:
        return "ready"
    return state(CPU_LIBRARY)


def cpu_ops_for(x) -> Optional[ModuleType]:
    """The CPU library if its kernels may run on tensor `x` (float32 on the CPU, outside autograd
    and outside a torch.compile trace) and it is loaded; None means: use PyTorch's operator."""
    import torch
    if x.dtype != torch.float32 or x.device.type != "cpu" or torch.compiler.is_compiling() \
            or (torch.is_grad_enabled() and x.requires_grad):
        return None
    return kernel(CPU_LIBRARY)
