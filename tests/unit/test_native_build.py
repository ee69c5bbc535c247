"""backend/perf/native.py: the native library is built once per machine into the cache, in the
background when something needs it, atomically (nothing half-built is ever loaded), and a
machine that cannot build gets PyTorch's operators with the reason on record, not an error."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch

from backend.cli import main as cli_main
from backend.perf import native
from backend.perf.fast import optimize
from tests.helpers.perf import cyclegan_network


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "kernels"


def test_background_build_lands_atomically_and_is_picked_up(cache):
    if native.missing_build_tools():
        pytest.skip("no C++ toolchain: " + ", ".join(native.missing_build_tools()))
    slot = native.KernelSlot("cpu")
    assert slot.get("background") is None
    assert slot.state == "building in the background"
    files = native.KernelFiles.of("cpu")
    assert files.lock.parent == cache
    assert native.start_background_build("cpu")       # a second call starts no second build
    deadline = time.monotonic() + 300
    module = None
    while module is None and time.monotonic() < deadline:
        time.sleep(1.0)
        module = slot.get("background")
    assert module is not None, (slot.state, files.lock.with_suffix(".log").read_text())
    assert slot.state.startswith("ready")
    assert files.library.exists()
    for _ in range(50):               # the builder removes its lock as it exits
        if not files.lock.exists():
            break
        time.sleep(0.1)
    assert not files.lock.exists()
    leftovers = [p.name for p in cache.iterdir()
                 if p != files.library and not p.name.endswith(".log")]
    assert leftovers == []            # no scratch folder, no staged .tmp file


def test_a_machine_that_cannot_build_falls_back_with_the_reason(cache, monkeypatch, tmp_path,
                                                                capsys):
    monkeypatch.setattr(native, "missing_build_tools",
                        lambda: ["a C++ compiler (Debian/Ubuntu: apt install g++)"])
    with pytest.raises(RuntimeError, match="missing a C\\+\\+ compiler"):
        native.build("cpu")
    files = native.KernelFiles.of("cpu")
    assert files.failure.exists() and not files.library.exists()
    slot = native.KernelSlot("cpu")
    assert slot.get("background") is None
    assert slot.state.startswith("unavailable: cannot build native kernels")
    assert not native.start_background_build("cpu")   # a failed build is not retried in a loop
    assert not files.lock.exists()
    assert cli_main(["kernels", "check"]) == 1
    out = capsys.readouterr().out
    assert "not built" in out and "apt install g++" in out


def test_optimize_without_the_library_uses_pytorch_until_it_exists(cache, monkeypatch,
                                                                   tmp_path):
    monkeypatch.setattr(native, "start_background_build", lambda name: True)
    monkeypatch.setattr(native, "_SLOTS", {})
    network = cyclegan_network(tmp_path, n_blocks=6)
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.inference_mode():
        expected = network(x)
        optimized = optimize(copy.deepcopy(network), "cyclegan", "cpu")
        assert optimized._perf_report.winograd_convs == 12
        assert native.state("cpu") == "building in the background"
        torch.testing.assert_close(optimized(x), expected, rtol=1e-4, atol=1e-4)


def test_native_kernels_can_be_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    monkeypatch.setattr(native, "_SLOTS", {})
    assert native.kernel("cpu") is None
    assert native.state("cpu").startswith("disabled")
    network = optimize(cyclegan_network(tmp_path, n_blocks=6), "cyclegan", "cpu")
    assert network._perf_report.winograd_convs == 0
    assert not network._perf_report.channels_last


def test_the_cpu_identity_includes_its_instruction_sets():
    identity = native._cpu_model()
    if "flags" in Path("/proc/cpuinfo").read_text(errors="replace"):
        assert "flags" in identity and "sse2" in identity


def test_the_tag_follows_source_flags_and_cpu(monkeypatch):
    first = native.tag("cpu")
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS + ("-DEXTRA",))
    assert native.tag("cpu") != first
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS[:-1])
    monkeypatch.setattr(native, "_cpu_model", lambda: "model name : another CPU")
    assert native.tag("cpu") != first
