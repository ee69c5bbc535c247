"""backend/perf/shapes.py: the walk over the layers' geometry gives what a pass on meta tensors
gives (every leaf call, its shapes, what its blocks hold), on every network it describes, plain
and optimised; where it cannot describe one, the callers still get the meta pass's answer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backend.engines import progress
from backend.engines.base import _modules_of
from backend.networks import adain as adain_net
from backend.networks.checkpoints import build_network
from backend.perf import flops, optimize, shapes
from backend.perf.budget import estimate_activations
from stclient import registry


def meta_trace(network: nn.Module, input_shape: tuple[int, ...]) -> list[tuple]:
    """(module, input shape, output shape, held shapes) of every leaf call, from a meta pass
    (the hooks of perf.budget.estimate_activations, recording instead of summing)."""
    calls: list[tuple] = []
    held: list[tuple[int, ...]] = []
    handles = []
    for module in network.modules():
        leaf = not module._modules
        holds = not leaf and not isinstance(module, nn.Sequential) and module is not network

        def pre(m, args, holds=holds):
            if holds:
                held.append(tuple(args[0].shape))

        def post(m, args, out, holds=holds, leaf=leaf):
            if holds:
                held.pop()
            if leaf:
                calls.append((m, tuple(args[0].shape), tuple(out.shape), tuple(held)))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    shapes.meta_pass(network, input_shape, handles)
    return calls


def _walked(network: nn.Module, input_shape: tuple[int, ...]) -> list[tuple]:
    calls = shapes.walk(network, input_shape)
    assert calls is not None
    return [(c.module, c.input_shape, c.output_shape, c.held) for c in calls]


def _networks() -> list[tuple[str, nn.Module, tuple[int, int, int]]]:
    """(label, network, (channels, height, width) of an input) for the module networks."""
    found = []
    for arch in registry.card("cyclegan").roles[0].arch_names:
        found.append((f"cyclegan {arch}", build_network("cyclegan", arch), (3, 36, 44)))
    for arch in registry.card("pix2pix").roles[0].arch_names:
        side = build_network("pix2pix", arch).multiple
        found.append((f"pix2pix {arch}", build_network("pix2pix", arch), (3, side, side * 2)))
    found.append(("adain encoder", adain_net.VggEncoder()[:adain_net.RELU4_1 + 1], (3, 37, 30)))
    found.append(("adain full vgg", adain_net.VggEncoder(), (3, 33, 50)))
    found.append(("adain decoder", adain_net.AdaINDecoder(), (512, 5, 7)))
    return found


NETWORKS = _networks()
ENGINES = {"cyclegan": "cyclegan", "pix2pix": "pix2pix", "adain": "adain"}


@pytest.mark.parametrize("label,network,input", NETWORKS, ids=[n[0] for n in NETWORKS])
@pytest.mark.parametrize("optimised", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_the_walk_equals_the_meta_pass(label, network, input, optimised, batch):
    network = copy.deepcopy(network).eval()
    if optimised:
        network = optimize(network, label.split()[0], "cpu")
    shape = (batch, *input)
    assert shapes.covers(network)
    assert _walked(network, shape) == meta_trace(network, shape)


@pytest.mark.parametrize("label,network,input", NETWORKS[:1] + NETWORKS[-3:-2],
                         ids=[NETWORKS[0][0], NETWORKS[-3][0]])
def test_the_callers_answer_as_the_meta_pass_did(label, network, input, monkeypatch):
    shape = (1, *input)
    walked = (progress.output_elements(network, shape), estimate_activations(network, shape),
              flops.count_flops(network, shape))
    network.__dict__.pop(progress.COUNTS_ATTR, None)
    monkeypatch.setattr(shapes, "walk", lambda *args: None)      # the meta pass answers
    meta = (progress.output_elements(network, shape), estimate_activations(network, shape),
            flops.count_flops(network, shape))
    assert walked == meta
    assert walked[0] and walked[1].peak > 0 and walked[2] > 0


class _Unknown(nn.Module):
    """A block without `walk_shapes`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 2


def test_a_network_it_cannot_describe_goes_to_the_meta_pass():
    unknown = nn.Sequential(nn.Conv2d(3, 3, 1), _Unknown())
    assert not shapes.covers(unknown)
    assert shapes.walk(unknown, (1, 3, 10, 10)) is None
    odd_leaf = nn.Sequential(nn.Conv2d(3, 3, 1), nn.PixelShuffle(1))
    assert shapes.walk(odd_leaf, (1, 3, 10, 10)) is None
    counts = progress.output_elements(unknown, (1, 3, 10, 10))
    assert sorted(counts.values()) == [1 * 4 * 8 * 8, 1 * 3 * 10 * 10]


@pytest.mark.parametrize("layer", [
    nn.MaxPool2d(2, 2, ceil_mode=True), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=1.5), nn.Conv2d(3, 5, 4, 3, 2, 2),
    nn.ConvTranspose2d(3, 5, 4, 3, 1, 2), nn.ConvTranspose2d(3, 5, 3, 2, 1, 1, dilation=2),
    nn.ReflectionPad2d((1, 2, 3, 0)), nn.ZeroPad2d(2), nn.ConstantPad2d((0, 1, 1, 0), 0.5)])
@pytest.mark.parametrize("side", [1, 7, 16, 33])
def test_each_layer_rule_is_pytorchs(layer, side):
    shape = (1, 3, side, side + 3)
    try:
        expected = tuple(layer(torch.zeros(shape)).shape)
    except RuntimeError:
        return                       # PyTorch refuses this size; no rule is asked for it
    assert shapes.leaf_shape(layer, shape) == expected


def test_engines_whose_networks_it_describes_skip_the_meta_warm_up():
    from backend.engines import get_engine
    cyclegan = build_network("cyclegan", "resnet_9blocks")
    assert not get_engine("cyclegan").shape_passes(cyclegan)
    model = {"network": nn.Sequential(_Unknown())}
    assert get_engine("cyclegan").shape_passes(model)
    assert all(shapes.covers(m) for m in _modules_of(cyclegan))
