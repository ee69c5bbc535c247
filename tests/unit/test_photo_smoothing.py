"""Photorealistic smoothing (stclient.options.photo_smoothing, backend/engines/smoothing.py):
the Runtime runs the guided filter after the network for every card with `photo_radius`. With
the option on, the result's edges follow the content's (on an example photo); it is the shared
guided filter of the engine's own result, with progress and cancellation; off (0, the default)
is bit-identical to the engine's result; cards without the option refuse it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from backend import PROJECT_ROOT
from backend.engines import get_engine
from backend.engines.base import EngineContext
from backend.engines.job import StylizeJob
from backend.optim.guided_filter import guided_filter
from backend.pixels import from_float_rgb, to_float_rgb
from backend.runtime import Runtime
from stclient import registry
from stclient.errors import Cancelled, StyleTransferError
from stclient.options import PHOTO_RADIUS
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.examples import example


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def rt(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=2)



CONTENT = example("content/city.jpg", (128, 96))
STYLE = example("styles/mosaic.jpg", (96, 96))


def edge_agreement(image: np.ndarray, content: np.ndarray) -> float:
    """Correlation of the gradient magnitudes of the two images' luminance."""
    def magnitude(pixels: np.ndarray) -> np.ndarray:
        grey = pixels.astype(np.float64).mean(axis=2)
        gy, gx = np.gradient(grey)
        return np.hypot(gx, gy).ravel()
    return float(np.corrcoef(magnitude(image), magnitude(content))[0, 1])


def job(engine: str, **options) -> StylizeJob:
    styles = [STYLE] if registry.card(engine).styles.takes_images else []
    return StylizeJob(engine=engine, content=CONTENT, styles=styles, options=options)


def smoothing_cards() -> list[str]:
    return [name for name, card in registry.cards().items() if card.option(PHOTO_RADIUS)]


def test_the_feed_forward_cards_have_it_and_others_refuse_it(rt):
    cards = smoothing_cards()
    assert len(cards) >= 2
    for name in cards:
        card = registry.card(name)
        assert {"photo-radius", "photo-eps"} <= set(card.gimp_arguments)
        assert card.option(PHOTO_RADIUS).default == 0
    without = [name for name in registry.engine_names() if name not in cards]
    with pytest.raises(StyleTransferError, match="Unknown option"):
        registry.resolve_options(without[0], {PHOTO_RADIUS: 4})


@pytest.mark.parametrize("engine", ["adain", "cyclegan"])
def test_on_the_edges_follow_the_content_off_is_the_engines_result(rt, engine):
    off = rt.stylize(job(engine))
    assert np.array_equal(off, rt.stylize(job(engine, photo_radius=0)))
    # the engine's own result, as the Runtime had it before this option existed
    loaded = rt.load_model(engine)
    rgb, alpha = to_float_rgb(CONTENT)
    options = registry.resolve_options(engine, {})
    ctx = EngineContext(device=rt.device, progress=lambda f, t: None, cancelled=lambda: False,
                        style_cache=rt.style_cache, model_key=loaded.key, stats=rt.stats,
                        budget=rt.activation_budget)
    with torch.inference_mode():
        raw = get_engine(engine).stylize(loaded.model, rgb, job(engine), options, ctx)
    assert np.array_equal(off, from_float_rgb(raw, CONTENT, alpha))

    on = rt.stylize(job(engine, photo_radius=4, photo_eps=1e-3))
    before, after = edge_agreement(off, CONTENT), edge_agreement(on, CONTENT)
    assert after > before + 0.1, (before, after)
    # it is the shared filter of the engine's result with the content as the guide
    guide = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    want = guided_filter(guide, torch.from_numpy(raw).permute(2, 0, 1)[None], 4, 1e-3)
    want = from_float_rgb(want.clamp(0, 1)[0].permute(1, 2, 0).numpy(), CONTENT, alpha)
    assert np.abs(on.astype(int) - want.astype(int)).max() <= 1
    # and the result stays the style's: not the content back
    assert np.abs(on.astype(int) - CONTENT.astype(int)).mean() > 5


def test_a_larger_eps_smooths_more(rt):
    sharp = rt.stylize(job("adain", photo_radius=4, photo_eps=1e-4))
    smooth = rt.stylize(job("adain", photo_radius=4, photo_eps=1e-1))
    def roughness(image):
        return float(np.abs(np.diff(image.astype(float), axis=1)).mean())
    assert roughness(smooth) < roughness(sharp)


def test_progress_names_the_step_and_cancel_stops_it(rt):
    seen: list[tuple[float, str]] = []
    rt.stylize(job("adain", photo_radius=3), progress=lambda f, t: seen.append((f, t)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    smoothing = [f for f, t in seen if t == "photorealistic smoothing"]
    assert smoothing and 0.0 < smoothing[0] < 0.99
    state = {"smoothing": False}

    def progress(fraction: float, text: str) -> None:
        state["smoothing"] = state["smoothing"] or text == "photorealistic smoothing"

    with pytest.raises(Cancelled):
        rt.stylize(job("adain", photo_radius=3), progress=progress,
                   cancelled=lambda: state["smoothing"])


def test_the_cli_flag(models_dir, tmp_path):
    Image.fromarray(CONTENT).save(tmp_path / "in.png")
    Image.fromarray(STYLE).save(tmp_path / "style.png")
    env_run = dict(cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                   env={**__import__("os").environ, "STYLE_TRANSFER_MODELS_DIR": models_dir})
    common = [sys.executable, "-m", "backend", "stylize", str(tmp_path / "in.png"),
              "--in-process", "--quiet", "--threads", "2"]
    done = subprocess.run([*common, "-o", str(tmp_path / "on.png"), "--engine", "cyclegan",
                           "--photo-radius", "4", "--photo-eps", "0.001"], **env_run)
    assert done.returncode == 0, done.stderr
    off = subprocess.run([*common, "-o", str(tmp_path / "off.png"), "--engine", "cyclegan"],
                         **env_run)
    assert off.returncode == 0, off.stderr
    on, plain = (np.asarray(Image.open(tmp_path / n)) for n in ("on.png", "off.png"))
    assert edge_agreement(on, CONTENT) > edge_agreement(plain, CONTENT) + 0.1
    refused = subprocess.run([*common, "-o", str(tmp_path / "x.png"), "--engine", "pix2pix",
                              "--photo-radius", "4"], **env_run)
    assert refused.returncode != 0 and "--photo-radius is an option of" in refused.stderr


def test_large_radii_use_the_fast_filter(rt):
    """From radius 8 on, the step is He & Sun's subsampled filter (s = r / 4)."""
    from backend.engines import smoothing
    assert [smoothing.subsampling(r) for r in (1, 4, 7, 8, 16, 33)] == [1, 1, 1, 2, 4, 8]
    off = rt.stylize(job("cyclegan"))
    on = rt.stylize(job("cyclegan", photo_radius=8))
    rgb = torch.from_numpy(CONTENT.astype(np.float32) / 255).permute(2, 0, 1)[None]
    src = torch.from_numpy(off.astype(np.float32) / 255).permute(2, 0, 1)[None]
    want = guided_filter(rgb, src, 8, 1e-2, subsample=2).clamp(0, 1)
    want = np.round(want[0].permute(1, 2, 0).numpy() * 255)
    # the Runtime filters the network's float result, this the 8-bit one: a level or two
    assert np.abs(on.astype(float) - want).mean() < 1.0
    assert edge_agreement(on, CONTENT) > edge_agreement(off, CONTENT) + 0.1
