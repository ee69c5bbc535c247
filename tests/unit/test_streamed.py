"""Streamed resampling layers (backend/perf/streamed.py): the same output as the layer, the
input's memory given back while it runs, and nothing touched that anyone else still holds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backend.networks.checkpoints import build_network
from backend.perf import optimize, streamed
from backend.perf.fast import FastOptions


@pytest.fixture
def small_streams(monkeypatch):
    """Stream layers of test size, in strips of a few rows."""
    monkeypatch.setattr(streamed, "MIN_STREAM_BYTES", 1 << 10)
    monkeypatch.setattr(streamed, "STRIP_BYTES", 1 << 14)


def _cl(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last)


def _layer(module: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return module.eval().to(memory_format=torch.channels_last)


LAYERS = [
    ("conv k3 s2 p1 (CycleGAN)", lambda: nn.Conv2d(16, 32, 3, 2, 1)),
    ("conv k4 s2 p1 (pix2pix)", lambda: nn.Conv2d(16, 16, 4, 2, 1, bias=False)),
    ("conv k3 s2 p0", lambda: nn.Conv2d(8, 16, 3, 2, 0)),
    ("conv k5 s3 p2", lambda: nn.Conv2d(8, 16, 5, 3, 2)),
    ("convT k3 s2 p1 op1 (CycleGAN)", lambda: nn.ConvTranspose2d(32, 16, 3, 2, 1, 1)),
    ("convT k4 s2 p1 (pix2pix)", lambda: nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False)),
    ("convT k3 s2 p1 op0", lambda: nn.ConvTranspose2d(16, 16, 3, 2, 1)),
]


@pytest.mark.parametrize("name,build", LAYERS, ids=[name for name, _ in LAYERS])
@pytest.mark.parametrize("batch,height,width", [(1, 37, 29), (2, 64, 48), (1, 5, 70)])
def test_a_streamed_layer_equals_the_layer(small_streams, name, build, batch, height, width):
    layer = _layer(build(), seed=height)
    x = _cl(torch.randn(batch, layer.in_channels, height, width))
    with torch.inference_mode():
        expected = layer(x)
        box = [x.clone(memory_format=torch.channels_last)]
        assert streamed.worth(layer, box[0])
        got = streamed.run(layer, box)
    assert box == []
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    # the same sums; oneDNN may pick another algorithm for a band than for the whole image
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_strips_cover_every_output_row_once_from_the_rows_it_reads():
    for _, build in LAYERS:
        layer = build()
        axis = streamed._axis(layer)
        for height in (1, 2, 7, 40):
            if axis.out_length(height) <= 0:
                continue
            strips = streamed.plan(axis, height, rows=3)
            assert strips is not None
            covered = [row for first, stop, _, _ in strips for row in range(first, stop)]
            assert covered == list(range(axis.out_length(height)))
            starts = [a for _, _, a, _ in strips]
            assert starts == sorted(starts)          # released rows are never read again


def test_layers_that_cannot_stream_are_left_alone():
    assert not streamed.applies(nn.Conv2d(8, 8, 3, 1, 1))               # stride 1
    assert not streamed.applies(nn.Conv2d(8, 8, 3, 2, 1, groups=2))
    assert not streamed.applies(nn.Conv2d(8, 8, 3, 2, 1, padding_mode="reflect"))
    assert not streamed.applies(nn.ConvTranspose2d(8, 8, 3, 2, 0, output_padding=1))
    assert not streamed.applies(nn.ConvTranspose2d(8, 8, 2, 3))          # stride > kernel
    assert streamed.applies(nn.ConvTranspose2d(8, 8, 3, 2, 1, 1))


def test_an_input_someone_else_holds_is_computed_whole_and_left_intact(small_streams):
    layer = _layer(nn.Conv2d(16, 32, 3, 2, 1), seed=1)
    x = _cl(torch.randn(1, 16, 64, 64))
    kept = x.clone()
    released: list[int] = []
    original = streamed.release

    def spy(tensor, start, stop):
        released.append(stop - start)
        return original(tensor, start, stop)

    streamed.release = spy
    try:
        with torch.inference_mode():
            y_held = streamed.run(layer, [x])           # `x` still names it here
            other = _cl(torch.randn(1, 16, 64, 64))
            other_kept = other.clone()
            view = other[:, :, 10:]                     # a view shares its storage
            box = [other]
            del other
            y_view = streamed.run(layer, box)
    finally:
        streamed.release = original
    assert released == []
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
    torch.testing.assert_close(view, other_kept[:, :, 10:], rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(y_held, layer(kept), rtol=0, atol=0)
        torch.testing.assert_close(y_view, layer(other_kept), rtol=0, atol=0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not streamed._madvise(), reason="no madvise on this platform")
def test_the_input_is_given_back_while_the_output_grows(monkeypatch):
    """At the layer's end (its forward hook), with the 128 MiB input still referenced by the
    call, the process holds about the output only: the input's pages went back."""
    monkeypatch.setattr(streamed, "MIN_STREAM_BYTES", 64 << 20)
    layer = _layer(nn.Conv2d(64, 128, 3, 2, 1), seed=2)
    at_end: list[int] = []
    layer.register_forward_hook(lambda m, args, out: at_end.append(_rss_bytes()))
    x_bytes = 1 * 64 * 512 * 1024 * 4                   # 128 MiB
    with torch.inference_mode():
        before = _rss_bytes()
        x = _cl(torch.ones(1, 64, 512, 1024))
        box = [x]
        del x
        y = streamed.run(layer, box)
    y_bytes = y.numel() * 4                              # 64 MiB
    assert len(at_end) == 1
    assert at_end[0] - before < y_bytes + x_bytes // 4, (at_end[0] - before) / 2**20
    with torch.inference_mode():
        expected = layer(_cl(torch.ones(1, 64, 512, 1024)))
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_hooks_fire_once_with_the_whole_output(small_streams):
    layer = _layer(nn.ConvTranspose2d(16, 8, 3, 2, 1, 1), seed=3)
    seen: list[tuple[str, tuple[int, ...]]] = []
    layer.register_forward_pre_hook(lambda m, args: seen.append(("pre", tuple(args[0].shape))))
    layer.register_forward_hook(lambda m, args, out: seen.append(("post", tuple(out.shape))))
    with torch.inference_mode():
        streamed.run(layer, [_cl(torch.randn(1, 16, 30, 20))])
    assert seen == [("pre", (1, 16, 30, 20)), ("post", (1, 8, 60, 40))]


def test_cyclegan_streams_its_resampling_layers_with_the_same_pixels(small_streams):
    torch.manual_seed(0)
    network = build_network("cyclegan", "resnet_9blocks").eval()
    fast = optimize(copy.deepcopy(network), "cyclegan", "cpu")
    whole = optimize(copy.deepcopy(network), "cyclegan", "cpu",
                     options=FastOptions(streamed=False))
    assert fast._perf_report.streamed_layers == 4
    assert whole._perf_report.streamed_layers == 0
    x = torch.rand(1, 3, 96, 72) * 2 - 1
    with torch.inference_mode():
        got, expected = fast(x), whole(x)
    # float32 rounding of another summation order, through ten instance norms: < 0.02 levels
    torch.testing.assert_close(got, expected, rtol=0, atol=1.5e-4)
    assert fast.model.forward.calls["streamed"] == 4


def test_autograd_runs_the_layers_as_modules(small_streams):
    layer = _layer(nn.Conv2d(8, 8, 3, 2, 1), seed=4)
    x = _cl(torch.randn(1, 8, 32, 32)).requires_grad_()
    assert not streamed.worth(layer, x)
    layer(x).sum().backward()
    assert x.grad is not None


def test_under_no_grad_the_output_is_an_ordinary_tensor(small_streams):
    """Outside inference mode (no_grad) the next layer may work on the output in place."""
    layer = _layer(nn.ConvTranspose2d(16, 8, 3, 2, 1, 1), seed=5)
    x = _cl(torch.randn(1, 16, 30, 20))
    with torch.no_grad():
        expected = layer(x)
        got = streamed.run(layer, [x.clone(memory_format=torch.channels_last)])
        assert not got.is_inference()
        got.relu_()
    torch.testing.assert_close(got, expected.relu(), rtol=1e-5, atol=1e-5)
