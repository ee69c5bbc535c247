"""The Colour Transfer engine (stclient/cards/colortransfer.py, backend/engines/colortransfer.py)
through the Runtime and the CLI: the result has the style's colour mean and covariance (in lαβ),
only the mask's region changes with a mask, the options reach backend/optim/color.py, the
engine uses no model (a model or checkpoint is refused, nothing is loaded or cached), and the
`colortransfer` command is the same engine (bit-identical to `stylize --engine colortransfer`)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from backend import PROJECT_ROOT
from backend.engines.job import StylizeJob
from backend.optim import color
from backend.runtime import Runtime
from stclient import registry
from stclient.errors import StyleTransferError
from tests.helpers.examples import example

ENGINE = "colortransfer"


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return Runtime(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"), threads=1)



def lab_stats(pixels: np.ndarray, mask: np.ndarray | None = None):
    tensor = torch.from_numpy(pixels.astype(np.float64) / (255.0 if pixels.dtype == np.uint8
                                                            else 1.0)).permute(2, 0, 1)[None]
    weights = None if mask is None else torch.from_numpy(mask.astype(np.float64))[None, None]
    return color.pixel_stats(color.rgb_to_lab(tensor), weights)


def test_the_result_has_the_styles_colour_mean_and_covariance(rt):
    # float32 pixels in a middle range, so that neither clipping nor 8 bits hide the maths
    content = (0.25 + 0.5 * example("content/city.jpg", (96, 64)) / 255.0).astype(np.float32)
    style = (0.2 + 0.6 * example("styles/mosaic.jpg", (80, 80)) / 255.0).astype(np.float32)
    out = rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[style]))
    assert out.shape == content.shape and out.dtype == np.float32
    o_mean, o_cov = lab_stats(out)
    s_mean, s_cov = lab_stats(style)
    c_mean, _ = lab_stats(content)
    assert (c_mean - s_mean).abs().max() > 0.05                 # there was something to move
    assert torch.allclose(o_mean, s_mean, atol=2e-3)
    assert torch.allclose(o_cov, s_cov, rtol=0.05, atol=2e-4)


def test_options_reach_the_colour_maths(rt):
    content = example("content/landscape.jpg", (72, 48))
    style = example("styles/swirls.jpg", (64, 64))
    options = {"histogram_method": "pca", "color_space": "rgb", "alpha": 0.6}
    out = rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[style], options=options))
    nchw = [torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]
            for a in (content, style)]
    direct = color.color_transfer(*nchw, method="pca", space="rgb", strength=0.6)
    want = np.round(direct[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(out.astype(int) - content.astype(int)).mean() > 3


def test_keep_luminance_changes_only_the_colours(rt):
    content = example("content/still_life.jpg", (72, 48)).astype(np.float32) / 255
    style = example("styles/mosaic.jpg", (64, 64)).astype(np.float32) / 255
    plain = rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[style]))
    kept = rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[style],
                                 options={"keep_luminance": True}))
    y = [color.luminance(torch.from_numpy(a).permute(2, 0, 1)[None]) for a in
         (content, plain, kept)]
    assert (y[2] - y[0]).abs().mean() < 0.01 < (y[1] - y[0]).abs().mean()
    assert np.abs(kept - content).mean() > 0.02                 # the colours did change


def test_a_mask_confines_the_transfer_to_its_region(rt):
    content = (0.2 + 0.6 * example("content/city.jpg", (80, 60)) / 255.0).astype(np.float32)
    style = (0.2 + 0.6 * example("styles/swirls.jpg", (64, 64)) / 255.0).astype(np.float32)
    mask = np.zeros((60, 80), np.float32)
    mask[10:50, 20:60] = 1.0
    out = rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[style], mask=mask))
    outside = mask == 0
    assert np.abs(out[outside] - content[outside]).max() < 1e-5
    o_mean, o_cov = lab_stats(out, mask)
    s_mean, s_cov = lab_stats(style)
    assert torch.allclose(o_mean, s_mean, atol=2e-3)
    assert torch.allclose(o_cov, s_cov, rtol=0.05, atol=2e-4)


def test_it_uses_no_model(rt):
    content = example("content/city.jpg", (32, 24))
    loads = rt.stats["model_loads"]
    rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[content[::-1]]))
    assert rt.stats["model_loads"] == loads and rt.status()["models"] == []
    with pytest.raises(StyleTransferError, match="uses no model; leave out --model"):
        rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[content], model="adain"))
    with pytest.raises(StyleTransferError, match="leave out --checkpoint"):
        rt.stylize(StylizeJob(engine=ENGINE, content=content, styles=[content],
                              checkpoints={"vgg": "/x.pth"}))
    with pytest.raises(StyleTransferError, match="at least one style image"):
        rt.stylize(StylizeJob(engine=ENGINE, content=content))
    assert not registry.card(ENGINE).takes_model


def backend(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_command_and_stylize_are_one_engine(tmp_path):
    Image.fromarray(example("content/landscape.jpg", (60, 40))).save(tmp_path / "in.png")
    Image.fromarray(example("styles/mosaic.jpg", (50, 50))).save(tmp_path / "style.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[:, :30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ["--style", str(tmp_path / "style.png"), "--mask", str(tmp_path / "mask.png")]
    old = backend("colortransfer", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.png"),
                  *common, "--strength", "0.7", "--method", "cholesky")
    assert old.returncode == 0, old.stderr
    new = backend("stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "b.png"), *common,
                  "--engine", ENGINE, "--alpha", "0.7", "--histogram-method", "cholesky",
                  "--in-process", "--quiet")
    assert new.returncode == 0, new.stderr
    a, b = (np.asarray(Image.open(tmp_path / name)) for name in ("a.png", "b.png"))
    np.testing.assert_array_equal(a, b)
    original = np.asarray(Image.open(tmp_path / "in.png"))
    np.testing.assert_array_equal(a[:, 30:], original[:, 30:])     # outside the mask
    assert np.abs(a[:, :30].astype(int) - original[:, :30]).mean() > 3
    listed = backend("models", "--engine", ENGINE)
    assert listed.returncode == 0 and "uses no model" in listed.stdout, listed.stderr
    refused = backend("stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "c.png"),
                      "--engine", ENGINE, "--style", str(tmp_path / "style.png"),
                      "--model", "adain", "--in-process")
    assert refused.returncode != 0 and "uses no model" in refused.stderr
    assert not (tmp_path / "c.png").exists()
