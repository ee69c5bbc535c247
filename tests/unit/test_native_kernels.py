"""backend/perf/kernels: the Winograd F(4x4,3x3) convolution and the channels_last instance
normalisation equal PyTorch's operators (float32 rounding apart) on every geometry they accept,
and the modules that use them keep nn.Conv2d's behaviour and state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backend.perf import native
from backend.perf.fast import FastInstanceNorm2d, FastOptions, optimize
from backend.perf.tiling import run_layerwise
from backend.perf.winograd import (WinogradConv2d, fuse_instance_norms, transform_weight,
                                   use_winograd)
from tests.helpers.native import cpu_kernels


@pytest.fixture(scope="module")
def ops():
    return cpu_kernels()


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _reference(x, weight, bias, pad, reflect):
    if pad and reflect:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias)
    return F.conv2d(x, weight, bias, padding=pad)


@pytest.mark.parametrize("pad,reflect", [(1, True), (1, False), (0, False)])
@pytest.mark.parametrize("batch,c_in,c_out,height,width", [
    (1, 16, 16, 3, 3), (1, 16, 32, 3, 4), (2, 32, 16, 13, 17), (1, 48, 64, 37, 29),
    (3, 16, 16, 8, 8), (1, 64, 16, 5, 70),
])
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_winograd_conv_equals_conv2d(ops, pad, reflect, batch, c_in, c_out, height, width,
                                     chunk):
    gen = torch.Generator().manual_seed(batch * 1000 + c_in + height)
    x = torch.randn(batch, c_in, height, width, generator=gen) * 2 + 0.5
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (3 * c_in ** 0.5)
    bias = torch.randn(c_out, generator=gen)
    expected = _reference(x, weight, bias, pad, reflect)
    got = ops.winograd_conv3x3(_cl(x), transform_weight(weight), bias, pad, reflect, chunk)
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 5e-5 * scale
    no_bias = ops.winograd_conv3x3(_cl(x), transform_weight(weight), torch.empty(0), pad,
                                   reflect, chunk)
    torch.testing.assert_close(no_bias + bias.view(1, -1, 1, 1), got, rtol=1e-5, atol=1e-5)


def test_winograd_conv_on_a_2x2_image_with_padding(ops):
    x = torch.randn(1, 16, 2, 2)
    weight = torch.randn(16, 16, 3, 3)
    for reflect in (True, False):
        got = ops.winograd_conv3x3(_cl(x), transform_weight(weight), torch.empty(0), 1, reflect,
                                   64)
        torch.testing.assert_close(got, _reference(x, weight, None, 1, reflect),
                                   rtol=1e-4, atol=1e-4)


def test_winograd_kernel_rejects_what_it_cannot_do(ops):
    weight = transform_weight(torch.randn(16, 16, 3, 3))
    with pytest.raises(RuntimeError, match="channels_last"):
        ops.winograd_conv3x3(torch.randn(1, 16, 8, 8), weight, torch.empty(0), 1, True, 64)
    with pytest.raises(RuntimeError, match="multiples of 16"):
        ops.winograd_conv3x3(_cl(torch.randn(1, 8, 8, 8)), transform_weight(
            torch.randn(16, 8, 3, 3)), torch.empty(0), 1, True, 64)
    with pytest.raises(RuntimeError, match="u must be"):
        ops.winograd_conv3x3(_cl(torch.randn(1, 32, 8, 8)), weight, torch.empty(0), 1, True, 64)


def test_winograd_module_is_a_conv2d_with_the_same_state_and_pixels(ops):
    torch.manual_seed(3)
    conv = nn.Conv2d(32, 48, 3, padding=1)
    module = WinogradConv2d.from_module(conv)
    assert isinstance(module, nn.Conv2d)
    assert list(module.state_dict()) == list(conv.state_dict())
    x = torch.randn(2, 32, 21, 19)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), conv(x), rtol=1e-4, atol=1e-4)
    with torch.no_grad():                         # a changed weight is picked up
        conv.weight.mul_(-0.5)
        torch.testing.assert_close(module(x), conv(x), rtol=1e-4, atol=1e-4)
    # with autograd or in float64: PyTorch's own convolution (the kernel has no backward)
    xg = x.clone().requires_grad_(True)
    module(xg).sum().backward()
    conv_x = x.clone().requires_grad_(True)
    conv(conv_x).sum().backward()
    torch.testing.assert_close(xg.grad, conv_x.grad)
    with torch.no_grad():
        assert torch.equal(module.double()(x.double()), conv.double()(x.double()))


def test_winograd_module_without_the_kernel_is_plain_conv2d(monkeypatch):
    torch.manual_seed(4)
    conv = nn.Conv2d(32, 32, 3)
    sequence = nn.Sequential(nn.ReflectionPad2d(1), copy.deepcopy(conv))
    assert use_winograd(sequence) == 1
    monkeypatch.setattr(native, "kernel", lambda name, build="background": None)
    x = torch.randn(1, 32, 9, 11)
    with torch.no_grad():
        expected = conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        assert torch.equal(sequence(x), expected)   # the very same operator: bit-identical


@pytest.mark.parametrize("pad_module,mode", [(nn.ReflectionPad2d(1), "reflect"),
                                             (nn.ZeroPad2d(1), "zeros")])
def test_use_winograd_folds_the_pad_in_front(ops, pad_module, mode):
    torch.manual_seed(5)
    network = nn.Sequential(pad_module, nn.Conv2d(32, 48, 3), nn.ReLU(),
                            nn.Conv2d(48, 32, 3, padding=1), nn.Conv2d(32, 3, 3, padding=1),
                            nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1))
    reference = copy.deepcopy(network)
    # 32->3 has too few outputs, 3->16 too few inputs, and 16->32 is faster in oneDNN
    assert use_winograd(network) == 2
    assert isinstance(network[0], nn.Identity)
    assert network[1].padding == (1, 1) and network[1].padding_mode == mode
    assert [type(layer) for layer in network[4:]] == [nn.Conv2d] * 3
    assert list(network.state_dict()) == list(reference.state_dict())
    x = torch.randn(1, 32, 23, 18)
    with torch.inference_mode():
        torch.testing.assert_close(network(x), reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,channels,height,width,offset", [
    (1, 16, 7, 5, 0.0), (2, 64, 33, 31, 50.0), (1, 3, 1200, 3, -7.0), (1, 256, 16, 16, 1e3),
])
def test_instance_norm_cl_equals_instance_norm(ops, batch, channels, height, width, offset):
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(batch, channels, height, width, generator=gen) * 3 + offset
    expected = F.instance_norm(x.double()).float()
    got = ops.instance_norm_cl(_cl(x), 1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    module = FastInstanceNorm2d.from_module(nn.InstanceNorm2d(channels))
    with torch.inference_mode():
        torch.testing.assert_close(module(_cl(x)), expected, rtol=1e-4, atol=1e-4)


def test_valid_conv_is_the_convolution_without_its_padding(ops):
    """The layer-by-layer tiler hands over tiles that already carry their halo."""
    torch.manual_seed(6)
    conv = WinogradConv2d.from_module(nn.Conv2d(16, 32, 3), "reflect")
    tile = torch.randn(1, 16, 19, 25)
    with torch.inference_mode():
        torch.testing.assert_close(conv.valid_conv(tile), F.conv2d(tile, conv.weight, conv.bias),
                                   rtol=1e-4, atol=1e-4)


def test_fused_instance_norm_equals_conv_then_norm(ops):
    """CycleGAN's conv -> InstanceNorm pairs: the convolution normalises its own output in
    place; with the kernel, without it, and in the layer-by-layer tiler."""
    torch.manual_seed(7)
    reference = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(32, 32, 3),
                              nn.InstanceNorm2d(32), nn.ReLU())
    network = copy.deepcopy(reference)
    use_winograd(network)
    assert fuse_instance_norms(network) == 1
    assert isinstance(network[2], nn.Identity) and network[1].norm_eps == 1e-5
    x = torch.randn(1, 32, 40, 36) * 2 + 3
    with torch.inference_mode():
        expected = reference(x)
        torch.testing.assert_close(network(x), expected, rtol=1e-4, atol=1e-4)
        tiled = run_layerwise(network, x, budget=1 << 20, max_side=16)
        torch.testing.assert_close(tiled, expected, rtol=1e-4, atol=1e-4)


def test_fused_instance_norm_without_the_kernel(monkeypatch):
    torch.manual_seed(8)
    reference = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(32, 32, 3), nn.InstanceNorm2d(32))
    network = copy.deepcopy(reference)
    use_winograd(network)
    fuse_instance_norms(network)
    monkeypatch.setattr(native, "kernel", lambda name, build="background": None)
    x = torch.randn(2, 32, 12, 10)
    with torch.inference_mode():
        torch.testing.assert_close(network(x), reference(x), rtol=1e-5, atol=1e-5)


def test_inplace_instance_norm_overwrites_only_a_fresh_input(ops):
    torch.manual_seed(9)
    reference = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.InstanceNorm2d(16), nn.ReLU())
    network = optimize(copy.deepcopy(reference), "cyclegan", "cpu",
                       options=FastOptions(channels_last=True))
    assert network._perf_report.inplace_norms == 1 and network[1].inplace
    x = torch.randn(1, 8, 30, 30)
    before = x.clone()
    with torch.inference_mode():
        torch.testing.assert_close(network(x), reference(x), rtol=1e-4, atol=1e-4)
    assert torch.equal(x, before)                   # the caller's input is never touched
