"""Tiled execution under a memory budget gives the untiled image (PSNR >= 40 dB), with the
normalisation statistics of the whole image; an out-of-memory error falls back to tiles."""

from __future__ import annotations

import copy

import pytest
import torch

from backend.networks import adain as net
from backend.perf import MemoryBudget, guard, guard_of, optimize
from backend.perf.budget import estimate_activations, is_out_of_memory, parse_bytes
from backend.perf.tiling import chain_geometry, plan_chain
from tests.helpers.native import cpu_kernels
from tests.helpers.perf import (adain_networks, cyclegan_network, pix2pix_network, psnr,
                                smooth_image)

MIN_PSNR = 40.0


def _budget_for_tiles(network: torch.nn.Module, shape: tuple[int, ...], parts: int) -> MemoryBudget:
    """A budget `parts` times smaller than what the untiled call needs."""
    need = estimate_activations(network, shape).with_workspace(torch.device("cpu"))
    return MemoryBudget(torch.device("cpu"), need // parts)


def _adain(encoder, decoder, content, style_stats, via_guard: bool):
    features = encoder.run_guarded(content) if via_guard else encoder(content)
    target = net.adain(features, *style_stats)
    return decoder.run_guarded(target) if via_guard else decoder(target)


def _chain_budget(network: torch.nn.Module, shape: tuple[int, ...]) -> MemoryBudget:
    """The largest budget that splits this image into at least 4 tiles (few tiles: fast test)."""
    need = estimate_activations(network, shape).with_workspace(torch.device("cpu"))
    for tenths in range(9, 0, -1):
        budget = need * tenths // 10
        if plan_chain(list(network), shape, budget, torch.device("cpu")).tiles >= 4:
            return MemoryBudget(torch.device("cpu"), budget)
    raise AssertionError("no budget gives 4 tiles")


def test_adain_tiled_matches_untiled_with_whole_image_statistics(tmp_path):
    encoder, decoder = adain_networks(tmp_path)
    content, style = smooth_image(160, seed=1, width=144), smooth_image(64, seed=2)
    with torch.inference_mode():
        style_stats = net.mean_std(encoder(style))
        expected = _adain(encoder, decoder, content, style_stats, via_guard=False)
        t_enc = guard(copy.deepcopy(encoder), "adain", "cpu",
                      _chain_budget(encoder, tuple(content.shape)))
        t_dec = guard(copy.deepcopy(decoder), "adain", "cpu",
                      _chain_budget(decoder, (1, 512, 20, 18)))
        got = _adain(t_enc, t_dec, content, style_stats, via_guard=True)
        enc_stats, dec_stats = copy.copy(guard_of(t_enc).stats), guard_of(t_dec).stats
        # encode() (used for style images) goes through the guard too; a small one fits
        t_enc.encode(style)
    assert enc_stats.mode == "chain" and enc_stats.tiles >= 4 and enc_stats.reason == "budget"
    assert dec_stats.mode == "chain" and dec_stats.tiles >= 4
    assert guard_of(t_enc).stats.mode == "untiled" and guard_of(t_enc).calls["untiled"] == 1
    assert got.shape == expected.shape == (1, 3, 160, 144)
    assert psnr(got, expected) >= MIN_PSNR
    # the check can fail: AdaIN with per-tile content statistics is visibly different
    with torch.inference_mode():
        halves = [decoder(net.adain(encoder(part), *style_stats))
                  for part in (content[..., :80, :], content[..., 80:, :])]
    assert psnr(got, expected) > psnr(torch.cat(halves, 2), expected) + 20


def test_chain_geometry_of_the_adain_networks(tmp_path):
    encoder, decoder = adain_networks(tmp_path)
    enc = chain_geometry(list(encoder))
    dec = chain_geometry(list(decoder))
    assert enc.scale == pytest.approx(1 / 8) and enc.align == 8 and enc.radius >= 37
    assert dec.scale == 8 and dec.align == 1 and dec.radius >= 4


@pytest.mark.parametrize("fast", [False, True])
def test_cyclegan_layerwise_matches_untiled(tmp_path, fast):
    network = cyclegan_network(tmp_path)
    x = smooth_image(80, seed=3) * 2 - 1
    with torch.inference_mode():
        expected = network(x)
        tiled = copy.deepcopy(network)
        if fast:
            optimize(tiled, "cyclegan", "cpu")
        guard(tiled, "cyclegan", "cpu", _budget_for_tiles(network, tuple(x.shape), 8))
        got = tiled(x)
    stats = guard_of(tiled).stats
    assert stats.mode == "layerwise" and stats.tiles >= 4
    assert psnr(got, expected, span=2.0) >= MIN_PSNR


def test_pix2pix_image_statistics_layerwise_matches_untiled(tmp_path):
    network = pix2pix_network(tmp_path)
    network.set_norm_mode("image")
    x = smooth_image(256, seed=4) * 2 - 1
    with torch.inference_mode():
        expected = network(x)
        tiled = guard(copy.deepcopy(network), "pix2pix", "cpu",
                      _budget_for_tiles(network, tuple(x.shape), 8))
        got = tiled(x)
        running = copy.deepcopy(network)
        running.set_norm_mode("running")
        other = running(x)
    stats = guard_of(tiled).stats
    assert stats.mode == "layerwise" and stats.tiles >= 4
    assert psnr(got, expected, span=2.0) >= MIN_PSNR
    assert psnr(other, expected, span=2.0) < MIN_PSNR      # the statistics matter: can fail


def test_simulated_cuda_oom_falls_back_to_tiles(tmp_path):
    network = cyclegan_network(tmp_path, n_blocks=6)
    x = smooth_image(64, seed=5) * 2 - 1
    with torch.inference_mode():
        expected = network(x)
    calls = {"n": 0}
    real_forward = network.forward

    def exploding_forward(inp):
        calls["n"] += 1
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    network.forward = exploding_forward
    guard(network, "cyclegan", "cpu", MemoryBudget(torch.device("cpu"), parse_bytes("64G")))
    with torch.inference_mode():
        got = network(x)
    keeper = guard_of(network)
    assert calls["n"] == 1
    assert keeper.calls["oom_fallbacks"] == 1 and keeper.stats.reason == "out_of_memory"
    assert keeper.stats.mode == "layerwise"
    assert psnr(got, expected, span=2.0) >= MIN_PSNR
    del real_forward


def test_simulated_oom_inside_a_chain_layer_falls_back(tmp_path):
    _, decoder = adain_networks(tmp_path)
    features = torch.rand(1, 512, 12, 10)
    with torch.inference_mode():
        expected = decoder(features)
    layer = decoder[4]
    original = layer.forward
    state = {"raised": False}

    def once(inp):
        if not state["raised"] and inp.device.type != "meta":
            state["raised"] = True
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                               "allocate 123456789 bytes.")
        return original(inp)

    layer.forward = once
    guard(decoder, "adain", "cpu", MemoryBudget(torch.device("cpu"), parse_bytes("64G")))
    with torch.inference_mode():
        got = decoder.run_guarded(features)
    assert state["raised"] and guard_of(decoder).calls["oom_fallbacks"] == 1
    assert psnr(got, expected) >= MIN_PSNR


def test_other_errors_are_not_swallowed(tmp_path):
    network = cyclegan_network(tmp_path, n_blocks=6)

    def broken(inp):
        raise ValueError("a bug, not a memory problem")

    network.forward = broken
    guard(network, "cyclegan", "cpu", MemoryBudget(torch.device("cpu"), parse_bytes("64G")))
    with pytest.raises(ValueError):
        network(torch.zeros(1, 3, 32, 32))
    assert not is_out_of_memory(ValueError("out of memory"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))


def test_estimates_grow_with_pixels_and_budget_parsing(tmp_path):
    network = cyclegan_network(tmp_path, n_blocks=6)
    small = estimate_activations(network, (1, 3, 64, 64)).peak
    large = estimate_activations(network, (1, 3, 128, 128)).peak
    assert large == pytest.approx(4 * small, rel=0.05)
    assert parse_bytes("1.5G") == int(1.5 * 2**30) and parse_bytes("800M") == 800 * 2**20
    with pytest.raises(ValueError):
        parse_bytes("lots")


@pytest.mark.parametrize("fast", [False, True])
def test_layers_beyond_the_host_budget_go_to_disk_pages_with_identical_results(
        tmp_path, monkeypatch, fast):
    """fast: the optimized network runs in channels_last, and so do its whole-layer tensors,
    in RAM and on disk pages (no transposing copies per tile)."""
    from backend.perf.hostmem import is_channels_last
    from backend.perf.tiling import TileStats, run_layerwise
    spill = tmp_path / "spill"
    monkeypatch.setenv("STYLE_TRANSFER_SPILL_DIR", str(spill))
    network = cyclegan_network(tmp_path)
    if fast:
        cpu_kernels()
        optimize(network, "cyclegan", "cpu")
    x = smooth_image(64, seed=5) * 2 - 1
    budget = 64 * 2**20
    with torch.inference_mode():
        ram_stats = TileStats()
        in_ram = run_layerwise(network, x, budget, ram_stats, max_side=24)
        disk_stats = TileStats()
        on_disk = run_layerwise(network, x, budget, disk_stats, max_side=24,
                                host_budget=64 * 64 * 64 * 4)   # one 64-channel layer
        expected = network(x)
    assert ram_stats.spilled == 0 and ram_stats.host_peak > 0
    assert disk_stats.spilled > 0 and disk_stats.host_peak <= 64 * 64 * 64 * 4
    assert torch.equal(on_disk, in_ram)
    assert psnr(on_disk, expected, span=2.0) >= MIN_PSNR
    assert list(spill.iterdir()) == []                # spill files are unlinked at once
    assert is_channels_last(in_ram) is fast


def test_no_room_for_a_spilled_layer_is_a_clear_memory_error(tmp_path, monkeypatch):
    from backend.perf import hostmem
    from backend.perf.tiling import run_layerwise
    monkeypatch.setenv("STYLE_TRANSFER_SPILL_DIR", str(tmp_path / "spill"))
    monkeypatch.setattr(hostmem, "_free_bytes", lambda directory: 1024)  # a full disk
    network = cyclegan_network(tmp_path)
    with pytest.raises(MemoryError, match="image too large.*STYLE_TRANSFER_SPILL_DIR"):
        with torch.inference_mode():
            run_layerwise(network, smooth_image(64) * 2 - 1, 64 * 2**20, max_side=24,
                          host_budget=1)
    assert list((tmp_path / "spill").iterdir()) == []
