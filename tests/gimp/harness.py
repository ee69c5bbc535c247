"""Host side of the real-GIMP tests: cases in, pixels out.

    with GimpSession() as gimp:                      # chroot unpacked, plug-in installed
        case = gimp.case("rgb", image=..., procedure=..., args=...)
        results = gimp.run([case, ...], env={...})   # ONE gimp-console start for all of them
        layer = results["rgb"].new_layer()           # numpy array of the new layer

Everything that crosses the chroot boundary lives in `session.shared`, which has the same path
inside and outside the chroot (see chroot.py). The daemon runs on the host; the plug-in reaches
it over an ipc:// socket in that folder (no TCP token needed: the socket is only reachable
through the file system, exactly as for the default per-user endpoint).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from stclient.paths import RUNTIME_DIR_ENV

from .chroot import ChrootUnavailable, GimpChroot, GimpRun
from .install_plugin import install

DRIVER = Path(__file__).with_name("driver.py")
REQUIRE_ENV = "STYLE_TRANSFER_REQUIRE_GIMP"      # CI: a GIMP that cannot run is a failure
_DTYPES = {"u8": np.uint8, "u16": np.uint16, "float": np.float32}
_BABL_TYPES = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16",
               np.dtype(np.float32): "float"}


def babl_format(array: np.ndarray, gray: bool = False) -> str:
    channels = array.shape[2]
    alpha = channels in (2, 4)
    model = ("Y'" if gray or channels in (1, 2) else "R'G'B'") + ("A" if alpha else "")
    return f"{model} {_BABL_TYPES[array.dtype]}"


def read_raw(path: str, width: int, height: int, fmt: str) -> np.ndarray:
    model, kind = fmt.split(" ")
    channels = {"Y'": 1, "Y'A": 2, "R'G'B'": 3, "R'G'B'A": 4}[model]
    data = np.fromfile(path, dtype=_DTYPES[kind])
    return data.reshape(height, width, channels)


@dataclass
class CaseResult:
    """One case's outcome as the driver recorded it."""

    raw: dict[str, Any]
    run: GimpRun

    @property
    def status(self) -> str:
        return self.raw.get("status", "?")

    @property
    def message(self) -> str:
        return str(self.raw.get("message", ""))

    def explain(self) -> str:
        return f"case {self.raw.get('name')}: {json.dumps(self.raw, indent=1)[:3000]}\n" \
               f"{self.run.describe()[-6000:]}"

    @property
    def layers(self) -> list[dict[str, Any]]:
        return self.raw.get("layers", [])

    def pixels(self, layer: dict[str, Any]) -> np.ndarray:
        return read_raw(layer["raw"], layer["width"], layer["height"], layer["format"])

    def layer_named(self, name: str) -> dict[str, Any]:
        for layer in self.layers:
            if layer["name"] == name:
                return layer
        raise KeyError(f"no layer {name!r} in {[l['name'] for l in self.layers]}")

    def source_after(self, source: dict[str, Any]) -> np.ndarray:
        return read_raw(self.raw["source_raw"], source["width"], source["height"],
                        source["format"])

    def selection(self, width: int, height: int) -> np.ndarray:
        return np.fromfile(self.raw["selection_raw"], dtype=np.float32).reshape(height, width)


@dataclass
class ImageSpec:
    """A test image: layers given as numpy arrays (bottom first)."""

    width: int
    height: int
    base: str = "rgb"            # rgb | gray | indexed
    precision: str = "u8"        # u8 | u16 | float
    layers: list[tuple[str, np.ndarray, tuple[int, int], Optional[str]]] = \
        field(default_factory=list)

    def add(self, name: str, pixels: np.ndarray, offset: tuple[int, int] = (0, 0),
            group: Optional[str] = None) -> "ImageSpec":
        self.layers.append((name, pixels, offset, group))
        return self


class GimpSession:
    """A chroot with GIMP and our plug-in, for one test module (unpacked once, ~3 s)."""

    def __init__(self, project_root: Optional[Path] = None) -> None:
        self.gimp = GimpChroot()
        self.plugin_dir: Optional[Path] = None
        self.project_root = project_root        # another checkout's plug-in (default: this)
        self._counter = 0

    @property
    def shared(self) -> Path:
        return self.gimp.shared

    def __enter__(self) -> "GimpSession":
        try:
            self.gimp.__enter__()
            self.plugin_dir = install(self.gimp, **({"project_root": self.project_root}
                                                    if self.project_root else {}))
        except BaseException:
            self.gimp.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.gimp.close()

    # --------------------------------------------------------------------------- cases
    def _write_layers(self, spec: ImageSpec, tag: str) -> dict[str, Any]:
        layers = []
        for name, pixels, offset, group in spec.layers:
            self._counter += 1
            path = self.shared / "in" / f"{tag}-{self._counter}.raw"
            path.parent.mkdir(exist_ok=True)
            pixels = np.ascontiguousarray(pixels)
            path.write_bytes(pixels.tobytes())
            layers.append({"name": name, "width": pixels.shape[1], "height": pixels.shape[0],
                           "offset": list(offset), "alpha": pixels.shape[2] in (2, 4),
                           "group": group,
                           "raw": str(path),
                           "format": babl_format(pixels, spec.base == "gray")})
        return {"width": spec.width, "height": spec.height, "base": spec.base,
                "precision": spec.precision, "layers": layers}

    def case(self, name: str, procedure: str, image: Optional[ImageSpec] = None,
             drawable: Optional[str] = None, args: Optional[dict[str, Any]] = None,
             selection: Optional[dict[str, Any]] = None,
             extra_images: tuple[ImageSpec, ...] = (), dump: bool = True,
             run_mode: str = "noninteractive") -> dict[str, Any]:
        case: dict[str, Any] = {"name": name, "procedure": procedure, "args": dict(args or {}),
                                "selection": selection, "out_dir": str(self.shared / "out" / name),
                                "dump": dump, "run_mode": run_mode}
        if image is not None:
            case["image"] = self._write_layers(image, name)
            case["drawable"] = drawable or image.layers[-1][0]
        case["extra_images"] = [self._write_layers(extra, f"{name}-x{i}")
                                for i, extra in enumerate(extra_images)]
        return case

    def run(self, cases: list[dict[str, Any]], env: Optional[dict[str, str]] = None,
            timeout: float = 420, tag: str = "run") -> dict[str, CaseResult]:
        """All cases in ONE gimp-console run; raises AssertionError with GIMP's output on a
        crash or a case the driver could not record."""
        cases_path = self.shared / f"{tag}-cases.json"
        results_path = self.shared / f"{tag}-results.json"
        cases_path.write_text(json.dumps(cases))
        results_path.unlink(missing_ok=True)
        code = (f"CASES_PATH = {str(cases_path)!r}\nRESULTS_PATH = {str(results_path)!r}\n"
                f"exec(open({str(self.shared / 'driver.py')!r}).read())\n")
        (self.shared / "driver.py").write_text(DRIVER.read_text())
        # the plug-in's runtime dir is the shared one the tests' daemons use (as a user's
        # plug-in and daemon share theirs): its ipc socket there is private, no token needed
        env = {RUNTIME_DIR_ENV: str(self.shared / "run"), **(env or {})}
        run = self.gimp.run_batch(code, env=env, timeout=timeout)
        self.last_run = run
        if not results_path.is_file():
            raise AssertionError(f"GIMP recorded no results.\n{run.describe()}")
        recorded = {r["name"]: CaseResult(r, run) for r in json.loads(results_path.read_text())}
        missing = [c["name"] for c in cases if c["name"] not in recorded]
        if missing:
            raise AssertionError(f"GIMP stopped before the cases {missing}.\n{run.describe()}")
        return recorded


@contextmanager
def gimp_session() -> Iterator[GimpSession]:
    """A GimpSession for a test module, or a skip (a failure in CI) where GIMP cannot run."""
    from .chroot import check_can_chroot, ensure_tarball
    try:
        check_can_chroot()
        ensure_tarball()
    except ChrootUnavailable as error:
        skip_or_fail(str(error))
    with GimpSession() as session:
        yield session


def skip_or_fail(reason: str) -> None:
    """Skip the GIMP tests where GIMP cannot run at all; in CI ($STYLE_TRANSFER_REQUIRE_GIMP=1)
    that is a failure instead."""
    import pytest
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"the real-GIMP tests cannot run: {reason}")
    pytest.skip(f"the real-GIMP tests cannot run: {reason}")


__all__ = ["GimpSession", "ImageSpec", "CaseResult", "ChrootUnavailable", "gimp_session",
           "skip_or_fail",
           "read_raw", "babl_format"]
