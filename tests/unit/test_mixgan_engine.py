"""The MIXGAN engine through the Runtime: stylize any image, sample from the prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines.job import StylizeJob
from backend.networks.mixgan import load_model
from backend.runtime import Runtime
from stclient.errors import Cancelled, StyleTransferError
from tests.helpers.mixgan import make_mixgan_model, one_torch_thread

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()



@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixgan-models")
    make_mixgan_model(folder, "mix_conv", "conv", seed=1)
    make_mixgan_model(folder, "mix_paper", "paper", seed=2)
    return folder


@pytest.fixture(scope="module")
def runtime(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


def _image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def test_stylize_equals_the_networks_on_the_luminance(runtime, models_dir) -> None:
    content = _image(48, 64)
    out = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv"))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    network = load_model(models_dir / "mix_conv.pth")
    grey = (content.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], np.float32)
    with torch.no_grad():
        _, mixture = network(torch.from_numpy(grey * 2 - 1)[None, None])
    expected = ((mixture[0].permute(1, 2, 0).numpy() + 1) * 127.5)
    assert np.abs(out.astype(np.float32) - expected).max() <= 1.0


@pytest.mark.parametrize("shape", [(37, 50, 3), (20, 9, 4), (70, 33, 1), (5, 5, 2), (100, 3, 3)])
def test_conv_model_takes_any_size_and_keeps_channels_and_alpha(runtime, shape) -> None:
    content = _image(*shape)
    out = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv",
                                     options={"color_output": False}))
    assert out.shape == shape and out.dtype == np.uint8
    if shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], content[..., -1])
    again = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv",
                                       options={"color_output": False}))
    assert np.array_equal(out, again)


def test_grey_with_alpha_comes_back_in_colour_with_its_alpha(runtime) -> None:
    content = _image(24, 40, 2, seed=3)
    out = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv"))
    assert out.shape == (24, 40, 4) and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], content[..., 1])
    assert (out[..., 0] != out[..., 1]).any()


def test_paper_model_runs_at_64_and_scales_back(runtime) -> None:
    content = _image(90, 120).astype(np.float32) / 255.0
    out = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_paper"))
    assert out.shape == (90, 120, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0


def test_working_size_changes_the_scale_the_network_sees(runtime) -> None:
    content = _image(64, 96)
    full = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv"))
    small = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv",
                                       options={"working_size": 48}))
    assert small.shape == full.shape and not np.array_equal(small, full)


def test_mixgan_refuses_style_images_and_unknown_options(runtime) -> None:
    with pytest.raises(StyleTransferError) as error:
        runtime.stylize(StylizeJob(engine="mixgan", content=_image(32, 32), model="mix_conv",
                                   styles=[_image(32, 32)]))
    assert error.value.code == "bad_request"
    with pytest.raises(StyleTransferError) as error:
        runtime.stylize(StylizeJob(engine="mixgan", content=_image(32, 32), model="mix_conv",
                                   options={"alpha": 0.5}))
    assert error.value.code == "bad_request"


def test_cancel_stops_the_engine(runtime) -> None:
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3
    with pytest.raises(Cancelled):
        runtime.stylize(StylizeJob(engine="mixgan", content=_image(64, 64), model="mix_conv"),
                        cancelled=cancelled)


def test_samples_are_seeded_and_independent_of_count(runtime) -> None:
    four = runtime.sample("mix_conv", count=4, seed=11)
    two = runtime.sample("mix_conv", count=2, seed=11)
    other = runtime.sample("mix_conv", count=2, seed=12)
    assert len(four) == 4 and all(i.shape == (32, 32, 3) and i.dtype == np.uint8 for i in four)
    assert all(np.array_equal(a, b) for a, b in zip(four, two))
    assert not np.array_equal(two[0], other[0]) and not np.array_equal(four[0], four[1])
    big = runtime.sample("mix_conv", count=1, seed=11, options={"working_size": 80})
    assert big[0].shape == (80, 80, 3)
    paper = runtime.sample("mix_paper", count=3, seed=0, options={"working_size": 80})
    assert [p.shape for p in paper] == [(64, 64, 3)] * 3   # the paper model knows one size


def test_sample_refuses_bad_requests(runtime) -> None:
    with pytest.raises(StyleTransferError) as error:
        runtime.sample("mix_conv", count=0)
    assert error.value.code == "bad_request"
    with pytest.raises(StyleTransferError) as error:
        runtime.sample("mix_conv", count=1, seed=-5)
    assert error.value.code == "bad_request"
    with pytest.raises(StyleTransferError) as error:
        runtime.sample("no_such_model", count=1)
    assert error.value.code == "unknown_model"


def test_declared_architecture_must_match_the_file(tmp_path) -> None:
    import json
    make_mixgan_model(tmp_path, "liar", "conv")
    (tmp_path / "liar.json").write_text(json.dumps({"engine": "mixgan", "arch": "paper"}))
    with pytest.raises(StyleTransferError) as error:
        Runtime(device="cpu", models_dir=tmp_path, threads=1).sample("liar", count=1)
    assert error.value.code == "bad_checkpoint"


def test_a_foreign_file_is_a_bad_checkpoint(tmp_path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "junk.pth")
    (tmp_path / "junk.json").write_text('{"engine": "mixgan"}')
    with pytest.raises(StyleTransferError) as error:
        Runtime(device="cpu", models_dir=tmp_path, threads=1).stylize(
            StylizeJob(engine="mixgan", content=_image(32, 32), model="junk"))
    assert error.value.code == "bad_checkpoint"


def test_the_bundled_starter_model_keeps_the_glyph_and_adds_colour() -> None:
    from backend import PROJECT_ROOT
    from backend.data.glyphs import render_glyphs
    path = PROJECT_ROOT / "models" / "starter" / "mixgan_glyphs.pth"
    assert path.stat().st_size < 5_000_000
    assert torch.load(path, weights_only=True)["meta"]["arch"] == "conv"
    runtime = Runtime(device="cpu", models_dir=PROJECT_ROOT / "models", threads=1)
    glyphs, _ = render_glyphs(3, size=32, seed=4242)
    for glyph in glyphs:
        out = runtime.stylize(StylizeJob(engine="mixgan", content=glyph[..., None],
                                         options={"color_output": False}))
        assert out.shape == (32, 32, 1)                     # grey kept when asked for
    # grey in, colour out: MIXGAN's default, the same pixels as for the RGB copy of the glyph
    mixed = runtime.stylize(StylizeJob(engine="mixgan", content=glyphs[0][..., None],
                                       model="mixgan_glyphs"))
    rgb = np.repeat(glyphs[0][..., None], 3, axis=-1)
    assert np.array_equal(mixed, runtime.stylize(
        StylizeJob(engine="mixgan", content=rgb, model="mixgan_glyphs")))
    luma = mixed.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    correlation = np.corrcoef(luma.ravel(), glyphs[0].astype(np.float32).ravel())[0, 1]
    assert abs(correlation) > 0.5                          # the glyph's shape is still there
    spread = mixed.astype(np.float32).max(-1) - mixed.astype(np.float32).min(-1)
    assert spread.mean() > 40                              # and it is in colour
    samples = runtime.sample("mixgan_glyphs", count=2, seed=1)
    assert [s.shape for s in samples] == [(32, 32, 3)] * 2


def test_progress_moves_with_every_convolution_and_can_cancel_mid_pass(tmp_path) -> None:
    """E, Gc and Gm run as one tracked pass (backend/engines/progress.py): an update after each
    convolution of the committed starter model, weighted by cost, monotonic, to the end; a
    cancel asked for in the middle stops the pass there."""
    import shutil
    from pathlib import Path

    from backend.engines.progress import convolutions
    starter = Path(__file__).resolve().parents[2] / "models" / "starter"
    for path in starter.glob("mixgan_glyphs.*"):
        shutil.copy(path, tmp_path / path.name)
    rt = Runtime(device="cpu", models_dir=tmp_path, threads=1)
    convs = len(convolutions(load_model(tmp_path / "mixgan_glyphs.pth")))
    seen: list[float] = []
    rt.stylize(StylizeJob(engine="mixgan", content=_image(64, 96), model="mixgan_glyphs"),
               progress=lambda fraction, text: seen.append(fraction))
    inside = [f for f in seen if 0.05 < f < 0.98]
    assert len(inside) >= convs - 4 and seen == sorted(seen) and seen[-1] == 1.0
    steps = [b - a for a, b in zip(inside, inside[1:])]
    assert max(steps) > 3 * min(steps)            # by cost, not by count
    calls: list[float] = []
    with pytest.raises(Cancelled):
        rt.stylize(StylizeJob(engine="mixgan", content=_image(64, 96), model="mixgan_glyphs"),
                   progress=lambda fraction, text: calls.append(fraction),
                   cancelled=lambda: len(calls) > 8)
    assert 0.05 < calls[-1] < 0.9
