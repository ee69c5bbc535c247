"""Opt-in torch.compile ($STYLE_TRANSFER_COMPILE=1): the same pixels at every size from one
compilation, and a clean fallback to the eager networks when compiling is impossible."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch._dynamo.exc import BackendCompilerFailed

from backend.perf import fast
from backend.perf.fast import FastOptions, is_compiled, optimize, report_of
from tests.helpers.perf import cyclegan_network, smooth_image


def _inductor_works() -> bool:
    """Inductor needs a C++ toolchain (and Python headers) on the CPU: try a one-op function."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return False
    try:
        return bool(torch.compile(lambda t: t * 2 + 1)(torch.ones(3)).eq(3).all())
    except Exception:  # noqa: BLE001 - any toolchain failure means: not available here
        return False


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return cyclegan_network(tmp_path_factory.mktemp("compile"), n_blocks=6)


def test_compiled_network_gives_the_eager_pixels_at_several_sizes(network):
    if not _inductor_works():
        pytest.skip("torch.compile cannot build CPU code here (no C++ toolchain)")
    compiled = optimize(copy.deepcopy(network), "cyclegan", "cpu",
                        options=FastOptions(compile=True))
    assert report_of(compiled).compiled == 1 and is_compiled(compiled)
    with torch.inference_mode():
        for height, width in ((40, 40), (48, 64), (40, 40)):
            x = smooth_image(height, seed=height, width=width) * 2 - 1
            expected = network(x)
            got = compiled(x)
            assert got.shape == expected.shape
            assert float((got - expected).abs().max()) * 127.5 < 0.05    # 8-bit levels
    assert compiled._perf_compiled[0].failed is None, compiled._perf_compiled[0].failed
    assert is_compiled(compiled)


def test_a_compiler_failure_falls_back_to_the_eager_network(network, monkeypatch, caplog):
    def broken_compile(function, **kwargs):
        def run(*args, **kw):           # what Dynamo raises when Inductor's C++ build fails
            raise BackendCompilerFailed(
                "inductor", RuntimeError("C++ compile error (no compiler)"), None)
        return run

    monkeypatch.setattr(fast.torch, "compile", broken_compile)
    monkeypatch.setenv(fast.COMPILE_ENV, "1")
    wrapped = optimize(copy.deepcopy(network), "cyclegan", "cpu")   # the variable turns it on
    assert report_of(wrapped).compiled == 1
    x = smooth_image(32, seed=1) * 2 - 1
    with torch.inference_mode():
        got, expected = wrapped(x), network(x)
    # the fallback is the eager optimized network: the same pixels up to float rounding (its
    # 3x3 convolutions are Winograd's when the native kernels are built)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert "C++ compile error" in wrapped._perf_compiled[0].failed
    assert not is_compiled(wrapped)
    assert any("torch.compile failed" in record.message for record in caplog.records)


@pytest.mark.parametrize("error", [RuntimeError("DefaultCPUAllocator: can't allocate memory"),
                                   ValueError("input has 4 channels, expected 3")])
def test_other_errors_inside_the_compiled_call_are_not_hidden(network, monkeypatch, error):
    def failing_compile(function, **kwargs):
        def run(*args, **kw):
            raise error
        return run

    monkeypatch.setattr(fast.torch, "compile", failing_compile)
    wrapped = optimize(copy.deepcopy(network), "cyclegan", "cpu",
                       options=FastOptions(compile=True))
    with pytest.raises(type(error), match=str(error)[:12]):
        with torch.inference_mode():
            wrapped(smooth_image(32) * 2 - 1)
    assert is_compiled(wrapped)          # not a compiler failure: it stays compiled


def test_runtime_and_command_line_switch_compiling_on(tmp_path, monkeypatch):
    """--compile (stylize, batch --in-process, serve) and Runtime(compile=True) wrap every
    loaded network; compiling itself waits for the first image, so loading stays cheap."""
    from backend.cli import build_parser
    from backend.commands.serve import _forwarded_flags
    from backend.runtime import Runtime
    from tests.helpers.checkpoints import make_models_dir

    monkeypatch.delenv(fast.COMPILE_ENV, raising=False)
    models = make_models_dir(tmp_path / "models")
    compiled = Runtime(device="cpu", models_dir=models, threads=1, compile=True)
    network = compiled.load_model("cyclegan").model
    assert report_of(network).compiled == 1 and is_compiled(network)
    assert compiled.status()["compile"] is True
    eager = Runtime(device="cpu", models_dir=models, threads=1)
    assert report_of(eager.load_model("cyclegan").model).compiled == 0
    assert eager.status()["compile"] is False

    parser = build_parser()
    args = parser.parse_args(["stylize", "a.png", "-o", "b.png", "--engine", "cyclegan",
                              "--compile"])
    assert args.compile is True
    assert parser.parse_args(["stylize", "a.png", "-o", "b.png", "--engine", "cyclegan"]
                             ).compile is None          # then $STYLE_TRANSFER_COMPILE decides
    serve = parser.parse_args(["serve", "--compile"])
    assert "--compile" in _forwarded_flags(serve)       # the detached daemon gets it too
    assert "--compile" not in _forwarded_flags(parser.parse_args(["serve"]))
