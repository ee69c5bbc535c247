"""The optimisation engines (optimize, photo) through the Runtime: they run on the adain model's
VGG (the same files, no new download), report iteration and loss, stop when cancelled, and take
masks; backend/optim's own tests cover the maths."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.job import StylizeJob
from backend.runtime import Runtime
from stclient.errors import Cancelled
from tests.helpers.checkpoints import make_models_dir
from tests.unit.test_cin_engine import photo

QUICK = {"size": 32, "iterations": 4, "scales": 1, "coarse_iterations": 0}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return Runtime(device="cpu", models_dir=make_models_dir(tmp_path_factory.mktemp("opt")),
                   threads=2)


def test_optimisation_runs_on_the_adain_models_vgg_and_reports_the_loss(rt):
    seen: list[tuple[float, str]] = []
    content, style = photo(32, 40, seed=1), photo(36, 36, seed=2)
    out = rt.stylize(StylizeJob(engine="optimize", content=content, styles=[style],
                                options=QUICK), progress=lambda f, t: seen.append((f, t)))
    assert out.shape == content.shape and not np.array_equal(out, content)
    steps = [text for _, text in seen if text.startswith("iteration ")]
    assert steps[0].startswith("iteration 1 of 4, loss ") and len(steps) == 4
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancelled_at_an_iteration(rt):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 6

    with pytest.raises(Cancelled):
        rt.stylize(StylizeJob(engine="optimize", content=photo(32, 32), styles=[photo(32, 32, 3)],
                              options={**QUICK, "iterations": 50}), cancelled=cancelled)


def test_masks_and_the_photo_engine(rt):
    content, a, b = photo(32, 32, seed=4), photo(32, 32, seed=5), photo(32, 32, seed=6)
    mask = np.zeros((32, 32), np.float32)
    mask[:, :16] = 1
    two = rt.stylize(StylizeJob(engine="optimize", content=content, styles=[a, b], mask=mask,
                                options=QUICK))
    assert two.shape == content.shape
    # the photo card is the same engine with the matting-Laplacian regulariser on by default
    from stclient.registry import resolve_options
    assert resolve_options("photo", {})["photo"] is True
    assert resolve_options("optimize", {})["photo"] is False
    seen: list[str] = []
    photo_out = rt.stylize(StylizeJob(engine="photo", content=content, styles=[a],
                                      options=QUICK), progress=lambda f, t: seen.append(t))
    assert photo_out.shape == content.shape
    assert sum(text.startswith("iteration ") for text in seen) == 4


def test_style_images_are_required(rt):
    with pytest.raises(Exception, match="at least one style image"):
        rt.stylize(StylizeJob(engine="optimize", content=photo(16, 16), options=QUICK))


def test_colortransfer_command_gives_the_styles_colours(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from backend import PROJECT_ROOT

    content, style = photo(40, 48, seed=7), (photo(40, 40, seed=8) // 4 + [150, 20, 60])
    Image.fromarray(content).save(tmp_path / "in.png")
    Image.fromarray(style.astype(np.uint8)).save(tmp_path / "style.png")
    result = subprocess.run([sys.executable, "-m", "backend", "colortransfer",
                             str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                             "--style", str(tmp_path / "style.png")], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "out.png")).astype(float)
    style_mean = style.reshape(-1, 3).mean(0)
    assert np.abs(out.reshape(-1, 3).mean(0) - style_mean).max() < \
        np.abs(content.reshape(-1, 3).mean(0) - style_mean).max() / 4
