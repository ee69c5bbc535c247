"""backend.perf wired into the Runtime: the fast path and the memory guard are on by default,
STYLE_TRANSFER_PLAIN=1 / fast=False turn the fast path off, and a small activation budget gives
tiled results equal to the untiled ones."""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.engines.job import StylizeJob
from backend.perf import guard_of
from backend.perf.budget import estimate_activations
from backend.runtime import Runtime
from tests.helpers.checkpoints import make_adain_files, make_cyclegan_file
from tests.helpers.native import cpu_kernels
from tests.helpers.perf import adain_networks, smooth_image


def _pixels(size: int, seed: int, width: int | None = None) -> np.ndarray:
    image = smooth_image(size, seed, width)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return (image * 255).round().astype(np.uint8)


def _psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _cyclegan_job(tmp_path, pixels) -> StylizeJob:
    path = make_cyclegan_file(tmp_path / "gen.pth", n_blocks=6)
    return StylizeJob("cyclegan", pixels, checkpoints={"generator": path})


def test_fast_runtime_matches_plain_runtime(tmp_path, monkeypatch):
    cpu_kernels()
    job = _cyclegan_job(tmp_path, _pixels(72, seed=1, width=64))
    fast = Runtime(device="cpu")
    plain = Runtime(device="cpu", fast=False)
    assert fast.fast and not plain.fast
    a, b = fast.stylize(job), plain.stylize(job)
    assert a.shape == b.shape == (72, 64, 3)
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1
    model = next(iter(fast._models.values())).model
    assert model._perf_report.winograd_convs == 12          # 6 residual blocks, 2 convs each
    assert model._perf_report.channels_last
    plain_report = next(iter(plain._models.values())).model._perf_report
    assert plain_report.plain and not plain_report.winograd_convs
    monkeypatch.setenv("STYLE_TRANSFER_PLAIN", "1")
    assert not Runtime(device="cpu").fast


def test_runtime_tiles_cyclegan_under_a_small_budget(tmp_path):
    job = _cyclegan_job(tmp_path, _pixels(64, seed=2))
    untiled = Runtime(device="cpu").stylize(job)
    small = Runtime(device="cpu", activation_budget="2M")
    tiled = small.stylize(job)
    keeper = guard_of(next(iter(small._models.values())).model)
    assert keeper.stats.mode == "layerwise" and keeper.stats.tiles >= 4
    assert _psnr8(tiled, untiled) >= 40


def test_runtime_tiles_adain_content_with_whole_image_statistics(tmp_path):
    vgg, decoder = make_adain_files(tmp_path)
    content, style = _pixels(160, seed=3, width=144), _pixels(64, seed=4)
    job = StylizeJob("adain", content, styles=[style], checkpoints={"vgg": vgg,
                                                                     "decoder": decoder})
    untiled = Runtime(device="cpu").stylize(job)
    encoder, _ = adain_networks(tmp_path / "nets")
    need = estimate_activations(encoder, (1, 3, 160, 144)).with_workspace(torch.device("cpu"))
    small = Runtime(device="cpu", activation_budget=need * 8 // 10)
    tiled = small.stylize(job)
    model = next(iter(small._models.values())).model
    assert guard_of(model.encoder).calls["tiled"] >= 1
    assert _psnr8(tiled, untiled) >= 40
    # the style cache: a second call with the same style and another alpha does not re-encode
    encodes = small.stats["style_encodes"]
    small.stylize(StylizeJob("adain", content[:96, :96].copy(), styles=[style],
                             options={"alpha": 0.5}, checkpoints={"vgg": vgg,
                                                                   "decoder": decoder}))
    assert small.stats["style_encodes"] == encodes and small.stats["style_cache_hits"] >= 1
