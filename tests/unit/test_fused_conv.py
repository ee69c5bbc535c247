"""backend/perf/kernels/fused_conv.cpp and backend/perf/fused.py: a fused layer equals PyTorch's
upsample + reflect pad + conv + instance norm / bias + activation on every geometry the networks
use, in both layouts; the fused forward is used only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.networks.cin import CINTransformer
from backend.networks.conv_steps import ConvStep, ResidualSteps
from backend.perf import fused, optimize
from tests.helpers.native import cpu_kernels

EMPTY = torch.empty(0)


@pytest.fixture(scope="module")
def ops():
    return cpu_kernels()


def _reference(x, scale, shift, relu, residual, weight, stride, upsample, gamma, beta, bias,
               eps=1e-5):
    value = x
    if scale is not None:
        value = value * scale[:, :, None, None] + shift[:, :, None, None]
    if relu:
        value = value.clamp_min(0)
    if residual is not None:
        value = value + residual
    if upsample == 2:
        value = F.interpolate(value, scale_factor=2, mode="nearest")
    pad = weight.shape[-1] // 2
    y = F.conv2d(F.pad(value, (pad, pad, pad, pad), mode="reflect"), weight, stride=stride)
    if gamma is not None:
        var, mean = torch.var_mean(y, dim=(2, 3), keepdim=True, correction=0)
        return (y - mean) * torch.rsqrt(var + eps) * gamma[:, :, None, None] \
            + beta[:, :, None, None]
    return y if bias is None else y + bias[None, :, None, None]


# (batch, C, K, kernel, H, W, stride, upsample, channels_last input, norm, input affine,
#  residual): the layers of multistyle26 and Magenta's transformer, and wider ones
GEOMETRIES = [
    (1, 3, 32, 9, 37, 45, 1, 1, False, True, False, False),
    (2, 32, 32, 3, 20, 33, 2, 1, True, True, True, False),
    (1, 32, 32, 3, 16, 16, 1, 1, True, True, True, True),
    (1, 32, 8, 3, 17, 19, 1, 2, True, True, True, False),
    (1, 8, 4, 3, 30, 31, 1, 2, False, True, True, False),
    (1, 4, 3, 9, 50, 61, 1, 1, False, True, True, False),
    (1, 3, 8, 9, 21, 40, 1, 1, False, False, False, False),
    (1, 8, 16, 3, 21, 40, 2, 1, False, False, True, False),
    (1, 16, 32, 3, 11, 20, 2, 1, True, False, True, False),
    (1, 32, 16, 3, 9, 10, 1, 2, True, True, True, False),
    (1, 64, 128, 3, 9, 10, 1, 1, True, True, True, True),
    (1, 32, 48, 3, 5, 3, 1, 1, True, True, True, False),
    (1, 16, 8, 3, 2, 2, 1, 1, False, True, True, False),
    # the vectorised row preparations: blocks of 16 pixels and their tails, residuals, batches
    (2, 16, 8, 3, 9, 37, 1, 1, True, True, True, True),
    (1, 32, 4, 3, 7, 33, 1, 2, True, True, True, True),
    (2, 8, 3, 9, 12, 35, 1, 2, False, True, True, True),
    (1, 8, 16, 3, 13, 50, 2, 1, False, False, True, True),
    (1, 16, 32, 3, 6, 20, 1, 2, False, True, True, True),
    (1, 24, 16, 3, 5, 18, 1, 1, False, True, True, False),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_fused_layer_equals_pytorch(ops, geometry):
    n, c, k, kernel, h, w, stride, up, channels_last, norm, affine, with_residual = geometry
    gen = torch.Generator().manual_seed(c * 100 + k + h)
    x = torch.randn(n, c, h, w, generator=gen) * 3 + 1
    residual = torch.randn(n, c, h, w, generator=gen) if with_residual else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        residual = residual.contiguous(memory_format=torch.channels_last) \
            if residual is not None else None
    scale = torch.rand(n, c, generator=gen) + 0.5 if affine else None
    shift = torch.randn(n, c, generator=gen) if affine else None
    weight = torch.randn(k, c, kernel, kernel, generator=gen) / (c * kernel * kernel) ** 0.5
    gamma = torch.rand(n, k, generator=gen) + 0.5 if norm else None
    beta = torch.randn(n, k, generator=gen) if norm else None
    bias = None if norm else torch.randn(k, generator=gen)
    expected = _reference(x, scale, shift, affine, residual, weight, stride, up, gamma, beta,
                          bias)
    raw, out_scale, out_shift = ops.fused_conv(
        x, *(t if t is not None else EMPTY for t in (scale, shift)), affine,
        residual if residual is not None else EMPTY, weight, stride, up,
        *(t if t is not None else EMPTY for t in (gamma, beta, bias)), 1e-5, EMPTY)
    assert raw.shape == expected.shape
    # by-channel layers (K % 16 == 0) write channels_last, by-pixel ones NCHW
    assert raw.is_contiguous() == (k % 16 != 0)
    got = raw * out_scale[:, :, None, None] + out_shift[:, :, None, None]
    assert float((got - expected).abs().max()) <= 2e-5 * max(1.0, float(expected.abs().max()))
    for act, fn in ((0, lambda v: v), (1, torch.relu), (2, torch.sigmoid)):
        applied = ops.fused_apply(raw, out_scale, out_shift, act, EMPTY, EMPTY)
        torch.testing.assert_close(applied, fn(got), rtol=1e-5, atol=1e-5)


def test_statistics_do_not_cancel_on_a_large_offset(ops):
    """A channel whose mean is 1e4 times its spread is normalised as well as a centred one."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 64, 64, generator=gen) * 0.01 + 100.0
    weight = torch.randn(16, 3, 3, 3, generator=gen) / 5
    gamma, beta = torch.ones(1, 16), torch.zeros(1, 16)
    expected = _reference(x.double(), None, None, False, None, weight.double(), 1, 1,
                          gamma.double(), beta.double(), None)
    raw, scale, shift = ops.fused_conv(x, EMPTY, EMPTY, False, EMPTY, weight, 1, 1, gamma,
                                       beta, EMPTY, 1e-5, EMPTY)
    got = raw.double() * scale.double()[:, :, None, None] + shift.double()[:, :, None, None]
    assert float((got - expected).abs().max()) < 0.05


def test_output_buffers_are_used_and_checked(ops):
    x = torch.randn(1, 8, 12, 12)
    weight = torch.randn(16, 8, 3, 3)
    buffer = torch.empty(1, 16, 12, 12, memory_format=torch.channels_last)
    raw = ops.fused_conv(x, EMPTY, EMPTY, False, EMPTY, weight, 1, 1, EMPTY, EMPTY, EMPTY,
                         1e-5, buffer)[0]
    assert raw.data_ptr() == buffer.data_ptr()
    with pytest.raises(RuntimeError, match="buffer"):
        ops.fused_conv(x, EMPTY, EMPTY, False, EMPTY, weight, 1, 1, EMPTY, EMPTY, EMPTY, 1e-5,
                       torch.empty(1, 16, 12, 12))          # NCHW where channels_last is made


def _small_cin() -> CINTransformer:
    torch.manual_seed(0)
    net = CINTransformer(5, (32, 32, 32), 2, (8, 4)).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".w"):
                p.normal_(0, (2.0 / p[0].numel()) ** 0.5)
            else:
                p.uniform_(0.5, 1.5) if name.endswith("gamma") else p.normal_(0, 0.3)
    return net


def test_optimized_cin_runs_fused_and_matches_the_plain_network():
    cpu_kernels()
    plain = _small_cin()
    fast = optimize(_small_cin(), "cin", "cpu")
    assert fast._perf_report.fused_steps == 1
    x = torch.rand(2, 3, 44, 52)
    style = torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0, 1.2, 0, 0.3]])
    with torch.inference_mode():
        expected, got = plain(x, style), fast(x, style)
    assert fast.forward.calls == {"fused": 1, "eager": 0}
    assert float((got - expected).abs().max()) <= 1e-4
    with torch.inference_mode():                 # pooled intermediates: the same bits again
        again = [fast(x, style) for _ in range(2)]
    assert fast.forward.pool.held > 0
    assert all(torch.equal(result, got) for result in again)
    assert again[0].data_ptr() != again[1].data_ptr()       # results are never pooled
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_fused_forward_leaves_other_calls_to_the_network():
    """Autograd and per-pixel maps run the plain forward."""
    cpu_kernels()
    fast = optimize(_small_cin(), "cin", "cpu")
    style = torch.tensor([1.0, 0, 0, 0, 0])
    x = torch.rand(1, 3, 32, 32)
    fast(x, style).sum().backward()                       # grad enabled: eager, with grads
    assert fast.contract[0].w.grad is not None
    with torch.inference_mode():
        fast(x, torch.rand(1, 5, 32, 32))                  # weight map
    assert fast.forward.calls["fused"] == 0
    assert fast.forward.calls["eager"] == 2


def test_supports_checks_every_layer():
    weight = torch.zeros(32, 3, 9, 9)
    assert fused.supports([ConvStep(weight)], (1, 3, 16, 16))
    assert not fused.supports([ConvStep(weight)], (1, 4, 16, 16))          # channels
    assert not fused.supports([ConvStep(weight)], (1, 3, 4, 16))           # pad 4 >= 4 px
    assert not fused.supports([ConvStep(torch.zeros(5, 3, 3, 3))], (1, 3, 8, 8))
    assert not fused.supports([ConvStep(torch.zeros(8, 3, 3, 3), stride=2)], (1, 3, 8, 8))
    block = ResidualSteps((ConvStep(torch.zeros(32, 32, 3, 3)),))
    assert fused.supports([ConvStep(weight), block], (1, 3, 16, 16))


def test_optimized_magenta_transformer_runs_fused_and_matches_the_plain_one():
    """Magenta's transformer (per-image embeddings, or K styles mixed per image) through the
    fused kernel; a per-pixel map and the bound-styles form keep the plain forward."""
    from backend.networks.magenta import MagentaTransformer
    cpu_kernels()
    torch.manual_seed(0)
    plain = MagentaTransformer().eval()
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.normal_(0, (2.0 / p[0].numel()) ** 0.5 if p.dim() == 4 else 0.1)
    fast = MagentaTransformer().eval()
    fast.load_state_dict(plain.state_dict())
    optimize(fast, "magenta", "cpu")
    x = torch.rand(2, 3, 44, 52)
    embeddings = torch.randn(2, 100)
    mixed = torch.tensor([[0.3, 0.7], [1.0, 0.0]])
    with torch.inference_mode():
        for args in ((embeddings,), (embeddings, mixed)):
            assert float((fast(x, *args) - plain(x, *args)).abs().max()) <= 1e-4
        assert fast.forward.calls["fused"] == 2
        fast(x, embeddings, torch.rand(2, 2, 44, 52))
    assert fast.forward.calls["fused"] == 2


def test_a_tracked_fused_pass_reports_every_step_by_its_measured_cost():
    """The fused pass calls no convolution module, so its runner reports the steps itself
    (backend/engines/progress.py): one update per step, the first pass weighted by the cost
    model, the next by what the first measured per step, kept on each step's weight apart from
    the module-hook rates."""
    from backend.engines import progress
    cpu_kernels()
    net = optimize(_small_cin(), "cin", "cpu")
    style = torch.tensor([0.0, 1.0, 0, 0, 0])
    x = torch.rand(1, 3, 96, 80)
    steps = net.conv_steps(style)
    planned = progress.step_elements(steps, tuple(x.shape))
    assert len(planned) == 3 + 2 * 2 + 3

    class Context:
        def __init__(self) -> None:
            self.fractions: list[float] = []

        def step(self, fraction: float, text: str) -> None:
            self.fractions.append(fraction)

    def tracked_pass() -> list[float]:
        ctx = Context()
        with torch.inference_mode(), progress.tracked(net.chain(), ctx, 0.0, 1.0, "cin",
                                                      tuple(x.shape), fused_on=net):
            net(x, style)
        return ctx.fractions

    calls = net.forward.calls["fused"]
    first = tracked_pass()
    assert net.forward.calls["fused"] == calls + 1
    assert len(first) == len(planned) and first[-1] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(first, first[1:]))
    for step, elements in planned:
        seconds, counted = getattr(step.weight, progress.FUSED_RATE_ATTR)
        assert counted == elements and seconds > 0
        assert getattr(step.weight, progress.RATE_ATTR, None) is None     # no hook fired
    rates = [progress.step_rate(step) for step, _ in planned]
    second = tracked_pass()
    increments = [b - a for a, b in zip([0.0] + second, second)]
    total = sum(r * n for r, (_, n) in zip(rates, planned))
    expected = [r * n / total for r, (_, n) in zip(rates, planned)]
    assert increments == pytest.approx(expected, rel=1e-6)
    assert net.forward.observers == []
