"""The run-time estimate (backend/optim/estimate.py): its arithmetic, and a measured profile at
two small sizes predicting a run at a larger size within a factor of 3 (the spread a loaded
shared machine leaves; a wrong scaling rule is off by the pixel ratio, 4x or more)."""

from __future__ import annotations

import time

import pytest
import torch

from backend.optim.estimate import SpeedProfile, estimate_seconds, fit_profile, measure_speed
from backend.optim.gatys import run_gatys
from backend.optim.options import OptimizeOptions
from tests.helpers.optim import pattern, small_vgg


def test_estimate_adds_iterations_and_setup_over_scales():
    profile = SpeedProfile(per_iteration=0.5, per_pixel_iteration=1e-4, setup_per_pixel=1e-3,
                           sides=(16, 32))
    options = OptimizeOptions(size=100, scales=2, iterations=10, coarse_iterations=4)
    # scales 50x50 then 100x100 (a square content)
    expected = 4 * (0.5 + 1e-4 * 2500) + 1e-3 * 2500 + 10 * (0.5 + 1e-4 * 10000) + 1e-3 * 10000
    assert estimate_seconds(profile, (100, 100), options) == pytest.approx(expected)
    assert estimate_seconds(profile, (100, 100), options, styles=3) == \
        pytest.approx(expected + 1e-3 * 12500)


def test_fit_recovers_a_line_and_falls_back_to_proportional_on_noise():
    exact = fit_profile((10, 20), (0.5 + 1e-3 * 100, 0.5 + 1e-3 * 400), 2e-4)
    assert exact.per_iteration == pytest.approx(0.5)
    assert exact.per_pixel_iteration == pytest.approx(1e-3)
    assert exact.setup_per_pixel == 2e-4
    for noisy in [(0.9, 0.8), (0.0, 1.0)]:          # slope <= 0; slope > t2 / N2
        profile = fit_profile((10, 20), noisy, 0.0)
        assert profile.per_iteration == 0.0
        assert profile.per_pixel_iteration == pytest.approx(noisy[1] / 400)


@pytest.mark.parametrize("optimizer,photo", [("lbfgs", False), ("adam", True)])
def test_measured_profile_predicts_a_larger_run(optimizer, photo):
    torch.set_num_threads(1)
    encoder = small_vgg()
    options = OptimizeOptions(optimizer=optimizer, photo=photo, learning_rate=2e-3)
    profile = measure_speed(encoder, options, sides=(32, 64), iterations=6)
    assert profile.per_pixel_iteration > 0 and profile.sides == (32, 64)
    target = options.replace(size=96, iterations=12)
    predicted = estimate_seconds(profile, (96, 96), target)
    measured = min(timed_run(encoder, target) for _ in range(2))   # the quieter of two
    assert measured / 3 < predicted < measured * 3, (predicted, measured)


def timed_run(encoder, options: OptimizeOptions) -> float:
    start = time.perf_counter()
    run_gatys(pattern("photo", 96), [pattern("stripes", 96)], options, encoder)
    return time.perf_counter() - start


def test_profile_store_keeps_corrects_and_forgets(tmp_path, monkeypatch):
    import json

    from backend.optim import estimate
    path = tmp_path / "speed.json"
    store = estimate.ProfileStore(path)
    profile = SpeedProfile(0.1, 1e-5, 1e-4, (48, 96))
    assert store.get("a") is None
    store.put("a", profile)
    assert estimate.ProfileStore(path).get("a") == (profile, 1.0)     # another process reads it
    store.record("a", predicted=10.0, actual=40.0)                   # halfway (geometric): 2x
    assert estimate.ProfileStore(path).get("a")[1] == pytest.approx(2.0)
    for _ in range(10):
        store.record("a", predicted=1.0, actual=100.0)
    assert store.get("a")[1] == estimate.CORRECTION_RANGE[1]          # bounded
    later = time.time() + estimate.MAX_AGE_S + 1
    monkeypatch.setattr(estimate.time, "time", lambda: later)
    assert estimate.ProfileStore(path).get("a") is None               # too old: measure again
    store.put("b", profile)
    assert list(json.loads(path.read_text())) == ["b"]                 # and dropped on a write
