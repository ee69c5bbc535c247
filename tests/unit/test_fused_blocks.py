"""backend/perf/fused_blocks.py: the few-channel pad/conv/norm/activation blocks found in a
Sequential, computed by the fused kernel with PyTorch's results (float32 rounding apart), the
convolution's hooks still firing, and every input the kernel cannot take run as before."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backend.networks.checkpoints import build_network
from backend.perf import fused_blocks
from backend.perf.fast import FastOptions, optimize, report_of
from tests.helpers.native import cpu_kernels


@pytest.fixture(scope="module", autouse=True)
def ops():
    return cpu_kernels()


def cyclegan_ends() -> nn.Sequential:
    """CycleGAN's first block, a wide layer, and its last block (norm + ReLU in front)."""
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, 16, 7), nn.InstanceNorm2d(16), nn.ReLU(True),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.InstanceNorm2d(16), nn.ReLU(True), nn.ReflectionPad2d(3), nn.Conv2d(16, 3, 7),
        nn.Tanh())


def adain_ends() -> nn.Sequential:
    """The AdaIN decoder's end (ReLU, pad, 64->3) and the encoder's start (pad, 3->64, ReLU)."""
    return nn.Sequential(
        nn.Conv2d(3, 3, 1), nn.ReflectionPad2d(1), nn.Conv2d(3, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(32, 3, 3))


def _randomised(network: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.3)
    return network.eval()


def _photo(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_finds_the_end_blocks_and_nothing_else():
    blocks = fused_blocks.find_blocks(list(cyclegan_ends()))
    assert [(b.start, b.stop) for b in blocks] == [(0, 4), (5, 10)]
    head, tail = blocks
    assert head.in_norm is None and not head.in_relu and head.out_norm is not None \
        and head.out_activation == "relu"
    assert tail.in_norm is not None and tail.in_relu and tail.out_norm is None \
        and tail.out_activation == "tanh"
    adain = fused_blocks.find_blocks(list(adain_ends()))
    assert [(b.start, b.stop, b.in_relu, b.out_activation) for b in adain] == [
        (1, 4, False, "relu"), (5, 8, True, "none")]
    # not a block: a wide conv, stride 2, a mismatched pad, an affine norm in front, zero pad
    for children in (
            [nn.ReflectionPad2d(1), nn.Conv2d(32, 32, 3)],
            [nn.ReflectionPad2d(3), nn.Conv2d(3, 16, 7, stride=2)],
            [nn.ReflectionPad2d(2), nn.Conv2d(3, 16, 7)],
            [nn.ReflectionPad2d(1), nn.Conv2d(3, 5, 3)],
            [nn.ZeroPad2d(1), nn.Conv2d(3, 16, 3)]):
        assert fused_blocks.find_blocks(children) == []
    affine = fused_blocks.find_blocks([nn.InstanceNorm2d(16, affine=True), nn.ReflectionPad2d(1),
                                       nn.Conv2d(16, 3, 3)])
    assert [(b.start, b.in_norm) for b in affine] == [(1, None)]   # the norm stays eager


@pytest.mark.parametrize("build", [cyclegan_ends, adain_ends])
@pytest.mark.parametrize("batch,side,channels_last", [(1, 23, False), (2, 40, True),
                                                      (1, 64, True)])
def test_fused_blocks_equal_the_modules(build, batch, side, channels_last):
    plain = _randomised(build(), seed=side)
    fast = copy.deepcopy(plain)
    assert fused_blocks.install(fast) == (2, 0)
    x = _photo(batch, side, seed=batch)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fast.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = plain(x), fast(x)
    forward = fast.__dict__["forward"]
    assert forward.calls == {"fused": 2, "eager": 0, "streamed": 0}
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_a_norm_in_front_needs_a_channels_last_input_else_the_modules_run():
    plain = _randomised(nn.Sequential(nn.InstanceNorm2d(16), nn.ReLU(), nn.ReflectionPad2d(1),
                                      nn.Conv2d(16, 3, 3)), seed=3)
    fast = copy.deepcopy(plain)
    assert fused_blocks.install(fast) == (1, 0)
    x = torch.randn(1, 16, 20, 20)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-4)
        assert fast.__dict__["forward"].calls == {"fused": 0, "eager": 0, "streamed": 0}
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(cl), plain(x), rtol=1e-4, atol=1e-4)
    assert fast.__dict__["forward"].calls["fused"] == 1


def test_the_convolution_hooks_fire_with_its_output_shape():
    fast = _randomised(cyclegan_ends(), seed=4)
    fused_blocks.install(fast)
    seen: list[tuple[str, tuple[int, ...]]] = []
    for index in (1, 8):
        fast[index].register_forward_pre_hook(
            lambda m, args, i=index: seen.append((f"pre {i}", tuple(args[0].shape))))
        fast[index].register_forward_hook(
            lambda m, args, out, i=index: seen.append((f"post {i}", tuple(out.shape))))
    with torch.inference_mode():
        fast(_photo(1, 32).contiguous(memory_format=torch.channels_last))
    assert seen == [("pre 1", (1, 3, 32, 32)), ("post 1", (1, 16, 32, 32)),
                    ("pre 8", (1, 16, 32, 32)), ("post 8", (1, 3, 32, 32))]


def test_autograd_meta_tensors_and_too_small_images_run_the_modules():
    plain = _randomised(cyclegan_ends(), seed=5)
    fast = copy.deepcopy(plain)
    fused_blocks.install(fast)
    x = _photo(1, 16).requires_grad_()
    fast(x).sum().backward()                 # the kernel has no backward: the modules run
    assert x.grad is not None
    assert fast(torch.empty(1, 3, 16, 16, device="meta")).shape == (1, 3, 16, 16)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="[Pp]adding size"):
        fast(_photo(1, 3))                   # ReflectionPad2d(3)'s own error
    assert fast.__dict__["forward"].calls["fused"] == 0


def test_cyclegan_after_optimize_uses_both_blocks_with_the_plain_pixels():
    torch.manual_seed(0)
    plain = build_network("cyclegan", "resnet_9blocks").eval()
    fast = optimize(copy.deepcopy(plain), "cyclegan", "cpu")
    assert report_of(fast).fused_blocks == 2
    off = optimize(copy.deepcopy(plain), "cyclegan", "cpu",
                   options=FastOptions(fused_blocks=False))
    assert report_of(off).fused_blocks == 0
    x = _photo(1, 48) * 2 - 1
    with torch.inference_mode():
        expected = plain(x)
        got = fast(x)
    assert fast.model.__dict__["forward"].calls["fused"] == 2
    assert float((got - expected).abs().max()) * 127.5 < 0.05        # 8-bit levels
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_a_network_that_runs_a_prefix_of_itself_gets_its_blocks_fused():
    """AdaIN's encoder runs its first modules only (`encode` up to relu4_1): its first block
    (pad, 3->64, ReLU) is fused there too, with the plain features."""
    from backend.networks import adain
    torch.manual_seed(1)
    plain = build_network("adain", "vgg_normalised")[:adain.RELU4_1 + 1].eval()
    fast = optimize(copy.deepcopy(plain), "adain", "cpu")
    assert report_of(fast).fused_blocks >= 1
    x = _photo(1, 40)
    with torch.inference_mode():
        expected = plain.encode(x, upto=adain.RELU4_1)
        got = fast.encode(x, upto=adain.RELU4_1)
        shallow = fast.encode(x, upto=1)              # stops inside the block: not fused
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    torch.testing.assert_close(shallow, plain.encode(x, upto=1), rtol=1e-5, atol=1e-5)
    assert fast.__dict__["forward"].calls["fused"] == 1
