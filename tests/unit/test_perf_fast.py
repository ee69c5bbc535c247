"""backend.perf.fast: the optimized networks give the plain networks' pixels (within 1/2 level
on 8-bit) and keep their state_dict; each rewritten layer equals the layer it replaces."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backend.perf import fast
from backend.perf.fast import FastInstanceNorm2d, SubpixelConvTranspose2d, optimize
from tests.helpers.native import cpu_kernels
from tests.helpers.perf import (adain_networks, cyclegan_network, levels, pix2pix_network,
                                smooth_image)

TOLERANCE_LEVELS = 0.5


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("channels_last,winograd", [(False, False), (True, False),
                                                     (None, None)])
def test_adain_optimized_matches_plain(tmp_path, channels_last, winograd):
    if winograd is None:
        cpu_kernels()
        channels_last = True
    encoder, decoder = adain_networks(tmp_path)
    x = smooth_image(64)
    options = fast.FastOptions(channels_last=None if winograd is None else channels_last,
                               winograd=winograd)
    with torch.inference_mode():
        plain = decoder(encoder(x))
        f_enc = optimize(copy.deepcopy(encoder), "adain", "cpu", options=options)
        f_dec = optimize(copy.deepcopy(decoder), "adain", "cpu", options=options)
        out = f_dec(f_enc.encode(x))
    assert levels(out, plain) <= TOLERANCE_LEVELS
    _same_state(encoder, f_enc)
    _same_state(decoder, f_dec)
    assert f_enc._perf_report.inplace_activations > 0
    assert f_enc._perf_report.channels_last is channels_last
    # 3->64 has too few input channels, 64->3 too few outputs: 14 of 16 (encoder 8 of 9)
    assert f_enc._perf_report.winograd_convs == (8 if winograd is None else 0)
    assert f_dec._perf_report.winograd_convs == (8 if winograd is None else 0)


@pytest.mark.parametrize("channels_last,winograd", [(False, False), (True, False),
                                                     (None, None)])
def test_cyclegan_optimized_matches_plain(tmp_path, channels_last, winograd):
    """The default on the CPU is the native path (Winograd + channels_last, oneDNN's
    transposed convolutions); without the kernel: sub-pixel transposed convolutions in NCHW."""
    if winograd is None:
        cpu_kernels()
    network = cyclegan_network(tmp_path)
    x = smooth_image(64) * 2 - 1
    with torch.inference_mode():
        plain = network(x)
        optimized = optimize(copy.deepcopy(network), "cyclegan", "cpu",
                             options=fast.FastOptions(channels_last=channels_last,
                                                      winograd=winograd))
        out = optimized(x)
    report = optimized._perf_report
    native_path = winograd is None
    assert report.winograd_convs == (18 if native_path else 0)
    assert report.channels_last is (native_path or bool(channels_last))
    assert report.subpixel_transposed == (0 if report.channels_last else 2)
    assert (report.fast_instance_norms > 0) == report.channels_last
    assert levels(out, plain, span=2.0) <= TOLERANCE_LEVELS
    _same_state(network, optimized)


@pytest.mark.parametrize("norm", ["image", "running"])
def test_pix2pix_optimized_matches_plain(tmp_path, norm):
    network = pix2pix_network(tmp_path)
    network.set_norm_mode(norm)
    x = smooth_image(256) * 2 - 1
    with torch.inference_mode():
        plain = network(x)
        optimized = optimize(copy.deepcopy(network), "pix2pix", "cpu")
        out = optimized(x)
    assert levels(out, plain, span=2.0) <= TOLERANCE_LEVELS
    assert float(plain.std()) > 0.01          # a real image, not a constant
    _same_state(network, optimized)


def test_plain_switch_leaves_the_module_untouched(tmp_path, monkeypatch):
    network = cyclegan_network(tmp_path, n_blocks=6)
    types = [type(m) for m in network.modules()]
    optimize(network, "cyclegan", "cpu", plain=True)
    assert [type(m) for m in network.modules()] == types
    monkeypatch.setenv(fast.PLAIN_ENV, "1")
    optimize(network, "cyclegan", "cpu")
    assert [type(m) for m in network.modules()] == types
    monkeypatch.delenv(fast.PLAIN_ENV)
    optimize(network, "cyclegan", "cpu")
    assert [type(m) for m in network.modules()] != types


@pytest.mark.parametrize("kernel,stride,padding,output_padding,size", [
    (3, 2, 1, 1, (13, 17)), (3, 2, 1, 0, (8, 8)), (4, 2, 1, 0, (9, 6)), (5, 3, 2, 1, (7, 5)),
    (2, 2, 0, 0, (6, 7)),
])
def test_subpixel_transposed_conv_equals_conv_transpose(kernel, stride, padding,
                                                       output_padding, size):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(6, 5, kernel, stride, padding, output_padding)
    sub = SubpixelConvTranspose2d.from_module(layer)
    x = torch.randn(2, 6, *size)
    with torch.no_grad():
        expected, got = layer(x), sub(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert list(sub.state_dict()) == list(layer.state_dict())
    with torch.no_grad():                       # a weight update is picked up
        layer.weight.mul_(2)
        torch.testing.assert_close(sub(x), layer(x), rtol=1e-5, atol=1e-5)


def test_fast_instance_norm_equals_instance_norm_in_both_layouts():
    torch.manual_seed(1)
    norm = nn.InstanceNorm2d(8)
    x = torch.randn(2, 8, 11, 9) * 3 + 1
    fast_norm = FastInstanceNorm2d.from_module(norm)
    torch.testing.assert_close(fast_norm(x), norm(x), rtol=1e-5, atol=1e-5)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast_norm(cl), norm(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("has_amx", [True, False])
def test_precision_fast_on_the_cpu(tmp_path, monkeypatch, has_amx):
    """With AMX: bf16 convolutions (oneDNN) under autocast, float32 out, AdaIN's encode wrapped
    too; without it "fast" is the float32 default (bf16 would only be slower here)."""
    monkeypatch.setattr(fast, "cpu_has_bf16", lambda: has_amx)
    network = cyclegan_network(tmp_path)
    encoder, decoder = adain_networks(tmp_path)
    x = smooth_image(64)
    options = fast.FastOptions(precision="fast")
    with torch.inference_mode():
        plain = network(x * 2 - 1)
        quick = optimize(copy.deepcopy(network), "cyclegan", "cpu", options=options)
        out = quick(x * 2 - 1)
        f_enc = optimize(copy.deepcopy(encoder), "adain", "cpu", options=options)
        features = f_enc.encode(x)
    assert out.dtype == features.dtype == torch.float32
    assert quick._perf_report.precision == ("bf16" if has_amx else "fp32")
    assert (quick._perf_report.winograd_convs == 0) is has_amx
    limit = 16.0 if has_amx else TOLERANCE_LEVELS      # bf16: 8 mantissa bits
    assert levels(out, plain, span=2.0) <= limit
    _same_state(network, quick)


def test_precision_setting_and_flag(monkeypatch):
    import argparse

    from backend.commands._runtime_args import add_precision_argument, apply_precision
    from stclient import settings
    parser = argparse.ArgumentParser()
    add_precision_argument(parser)
    monkeypatch.setattr(settings, "_overrides", {})
    apply_precision(parser.parse_args([]))
    assert settings.current().precision == "fp32"
    apply_precision(parser.parse_args(["--precision", "fast"]))
    assert settings.current().precision == "fast"
    assert settings.child_env({})[settings.ENV["precision"]] == "fast"
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "bf17"])
