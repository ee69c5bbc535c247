"""The native CPU kernel library for tests: built (or loaded) once per test run.

Where a C++ toolchain exists the kernels must work, so a failed build fails the test; only a
machine without a compiler or Python's headers skips."""

from __future__ import annotations

import pytest

from backend.perf import native


def cpu_kernels():
    ops = native.kernel("cpu", build="now")
    if ops is not None:
        return ops
    missing = native.missing_build_tools()
    if missing:
        pytest.skip("cannot build native kernels here: missing " + ", ".join(missing))
    pytest.fail("the native kernels did not build: " + native.state("cpu"))
