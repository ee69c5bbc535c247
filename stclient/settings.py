"""The toolkit's runtime configuration: one typed object instead of environment variables read
all over the code. Standard library only (the plug-in reads it too).

`current()` is what every module asks: the environment (STYLE_TRANSFER_*), under what this
process set with `override(...)` (CLI flags such as `serve --models-dir`; tests). Child processes
(a detached daemon, a kernel build) get the same configuration through `child_env()`. Read it
when needed, not at import time: tests and flags change it while the process runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    # client side: where the daemon's files are and how to reach it
    runtime_dir: Optional[str] = None       # socket, state file, token, logs
    endpoint: Optional[str] = None          # a daemon to talk to instead of the default
    token: Optional[str] = None             # TCP token of that daemon
    # models
    models_dir: Optional[str] = None        # installed weights (default: the project's models/)
    manifest: Optional[str] = None          # the model manifest (default: models/manifest.json)
    # speed and memory
    cache_dir: Optional[str] = None         # native kernel builds (~/.cache/style-transfer)
    native: bool = True                     # build and load the native CPU kernels
    plain: bool = False                     # run networks exactly as loaded (the baseline)
    # fp32 (default: float32, the fidelity tests' tolerances) | fast (bf16 convolutions on
    # CPUs with AMX/AVX512-BF16, bf16 autocast on CUDA; statistics, AdaIN/CIN arithmetic and
    # accumulation in float32) | bf16 | fp16 (CUDA autocast)
    precision: str = "fp32"
    compile: bool = False                   # torch.compile the forward passes
    memory_budget: Optional[str] = None     # activation budget, e.g. "2GiB"
    spill_dir: Optional[str] = None         # disk pages for whole-layer tensors beyond RAM
    # plug-in
    timing: bool = False                    # print a timing line per GIMP filter run
    test_dialog_response: str = ""          # automated UI tests: "ok" / "cancel" dialogs
    test_screenshots: str = ""              # automated UI tests: save dialog screenshots here


ENV: dict[str, str] = {
    "runtime_dir": "STYLE_TRANSFER_RUNTIME_DIR",
    "endpoint": "STYLE_TRANSFER_ENDPOINT",
    "token": "STYLE_TRANSFER_TOKEN",
    "models_dir": "STYLE_TRANSFER_MODELS_DIR",
    "manifest": "STYLE_TRANSFER_MANIFEST",
    "cache_dir": "STYLE_TRANSFER_CACHE",
    "native": "STYLE_TRANSFER_NATIVE",
    "plain": "STYLE_TRANSFER_PLAIN",
    "precision": "STYLE_TRANSFER_PRECISION",
    "compile": "STYLE_TRANSFER_COMPILE",
    "memory_budget": "STYLE_TRANSFER_MEMORY_BUDGET",
    "spill_dir": "STYLE_TRANSFER_SPILL_DIR",
    "timing": "STYLE_TRANSFER_TIMING",
    "test_dialog_response": "STYLE_TRANSFER_TEST_DIALOG_RESPONSE",
    "test_screenshots": "STYLE_TRANSFER_TEST_SCREENSHOTS",
}

_overrides: dict[str, Any] = {}


def from_env(environ: Mapping[str, str]) -> Settings:
    """Settings as the environment gives them (empty values count as unset)."""
    defaults = Settings()
    values: dict[str, Any] = {}
    for item in fields(Settings):
        raw = (environ.get(ENV[item.name]) or "").strip()
        if not raw:
            continue
        default = getattr(defaults, item.name)
        if isinstance(default, bool):
            values[item.name] = raw.lower() not in _FALSE if default else raw.lower() in _TRUE
        else:
            values[item.name] = raw
    return Settings(**values)


def current() -> Settings:
    """This process's settings: the environment, then `override`s."""
    return replace(from_env(os.environ), **_overrides)


def override(**values: Any) -> None:
    """Set values for this process and the processes it starts (CLI flags, tests)."""
    unknown = set(values) - {item.name for item in fields(Settings)}
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    _overrides.update(values)


def child_env(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """An environment for a child process that gives it these settings."""
    env = dict(os.environ if base is None else base)
    for name, value in _overrides.items():
        if value is None:
            env.pop(ENV[name], None)
        elif isinstance(value, bool):
            env[ENV[name]] = "1" if value else "0"
        else:
            env[ENV[name]] = str(value)
    return env
