"""Colour Transfer and the photorealistic smoothing through a real daemon over a real socket and
through batches (daemon and CLI): the daemon's answers are the in-process Runtime's, the
colour-transfer engine shows no model and refuses one, a mask (GIMP's selection) confines it,
and folder jobs carry both. (The daemon, runtime and models_dir fixtures: conftest.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import PROJECT_ROOT, imageio
from backend.batch.spec import BatchReport, BatchSpec
from backend.daemon.images import array_to_frame, frame_to_array
from backend.engines.job import StylizeJob
from stclient.errors import StyleTransferError
from stclient.protocol import ImageFrame
from tests.helpers.examples import example

ENGINE = "colortransfer"


CONTENT = example("content/landscape.jpg", (96, 64))
STYLE = example("styles/mosaic.jpg", (64, 64))


def mean_distance(image: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(image.reshape(-1, 3).mean(0) - target.reshape(-1, 3).mean(0)).max())


def mask_frame(mask: np.ndarray) -> ImageFrame:
    return ImageFrame(mask.shape[1], mask.shape[0], 1, "float32",
                      np.ascontiguousarray(mask, np.float32).tobytes())


def test_colour_transfer_over_the_socket_is_the_runtimes(daemon, runtime):
    mask = np.zeros(CONTENT.shape[:2], np.float32)
    mask[:, 48:] = 1.0
    options = {"alpha": 0.9, "histogram_method": "pca"}
    with daemon.client() as client:
        assert ENGINE in client.models()["engines"]
        assert not [m for m in client.models()["models"] if m["engine"] == ENGINE]
        frame, data = client.stylize(array_to_frame(CONTENT), ENGINE, options=options,
                                     styles=[array_to_frame(STYLE)], mask=mask_frame(mask))
        assert data["model"] == ""
        with pytest.raises(StyleTransferError, match="uses no model"):
            client.stylize(array_to_frame(CONTENT), ENGINE, model="adain",
                           styles=[array_to_frame(STYLE)])
        with pytest.raises(StyleTransferError, match="at least one style image"):
            client.stylize(array_to_frame(CONTENT), ENGINE)
    got = frame_to_array(frame, "result")
    want = runtime.stylize(StylizeJob(engine=ENGINE, content=CONTENT, styles=[STYLE],
                                      mask=mask, options=options))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:, :48], CONTENT[:, :48])       # outside the mask
    assert mean_distance(got[:, 48:], STYLE) < mean_distance(CONTENT[:, 48:], STYLE) / 3


def test_photo_smoothing_over_the_socket_is_the_runtimes(daemon, runtime):
    options = {"photo_radius": 4, "photo_eps": 1e-3}
    with daemon.client() as client:
        texts: list[str] = []
        frame, _ = client.stylize(array_to_frame(CONTENT), "adain", options=options,
                                  styles=[array_to_frame(STYLE)],
                                  on_progress=lambda fraction, text: texts.append(text))
        plain, _ = client.stylize(array_to_frame(CONTENT), "adain",
                                  styles=[array_to_frame(STYLE)])
    assert "photorealistic smoothing" in texts
    got, off = frame_to_array(frame, "result"), frame_to_array(plain, "result")
    want = runtime.stylize(StylizeJob(engine="adain", content=CONTENT, styles=[STYLE],
                                      options=options))
    # two processes: a float reduction may round one level apart (see test_batch_daemon)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(got.astype(int) - off.astype(int)).mean() > 1


def folder(tmp_path: Path) -> tuple[Path, Path]:
    inp = tmp_path / "in"
    inp.mkdir()
    for index, name in enumerate(("city", "landscape", "still_life")):
        Image.fromarray(example(f"content/{name}.jpg", (48 + 8 * index, 40))).save(
            inp / f"{name}.png")
    style = tmp_path / "style.png"
    Image.fromarray(STYLE).save(style)
    return inp, style


def test_a_daemon_batch_transfers_colours_and_smooths(daemon, runtime, tmp_path):
    from backend.batch.runner import run_batch
    inp, style = folder(tmp_path)
    colour = BatchSpec(input_dir=str(inp), output_dir=str(tmp_path / "colour"), engine=ENGINE,
                       styles=[str(style)])
    smooth = BatchSpec(input_dir=str(inp), output_dir=str(tmp_path / "smooth"),
                       engine="cyclegan", model="style_monet", options={"photo_radius": 3})
    with daemon.client() as client:
        for spec in (colour, smooth):
            report = BatchReport.from_json(client.batch(spec.to_json()))
            assert report.exit_status() == 0 and report.count("ok") == 3, report.to_json()
    local = run_batch(BatchSpec(input_dir=str(inp), output_dir=str(tmp_path / "local"),
                                engine=ENGINE, styles=[str(style)]), runtime)
    assert local.count("ok") == 3
    for name in ("city.png", "landscape.png", "still_life.png"):
        original = imageio.read_image(inp / name).pixels
        ours = imageio.read_image(tmp_path / "colour" / name).pixels
        np.testing.assert_array_equal(ours, imageio.read_image(tmp_path / "local" / name).pixels)
        assert mean_distance(ours, STYLE) < mean_distance(original, STYLE) / 3
        smoothed = imageio.read_image(tmp_path / "smooth" / name).pixels
        plain = runtime.stylize(StylizeJob(engine="cyclegan", content=original,
                                           model="style_monet"))
        assert smoothed.shape == original.shape and np.abs(
            smoothed.astype(int) - plain.astype(int)).mean() > 1


def test_the_batch_command_runs_colour_transfer(models_dir, tmp_path):
    inp, style = folder(tmp_path)
    env = {**os.environ, "STYLE_TRANSFER_MODELS_DIR": models_dir,
           "STYLE_TRANSFER_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run([sys.executable, "-m", "backend", "batch", str(inp),
                           str(tmp_path / "out"), "--engine", ENGINE, "--style", str(style),
                           "--alpha", "0.5", "--in-process", "--quiet"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("city.png", "landscape.png", "still_life.png"):
        original = imageio.read_image(inp / name).pixels
        out = imageio.read_image(tmp_path / "out" / name).pixels
        assert mean_distance(out, STYLE) < mean_distance(original, STYLE) * 0.75
    refused = subprocess.run([sys.executable, "-m", "backend", "batch", str(inp),
                              str(tmp_path / "out2"), "--engine", ENGINE, "--style", str(style),
                              "--model", "adain", "--in-process", "--quiet"], cwd=PROJECT_ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "uses no model" in refused.stderr


def test_the_memory_check_counts_the_smoothing(models_dir):
    """The smoothing holds more whole-image tensors: an image that fits --max-job-memory
    without it is refused with it, before any work; so is one too large for colour transfer's
    float64 maths."""
    from tests.helpers.daemon import start_daemon
    content = array_to_frame(example("content/city.jpg", (400, 400)))
    with start_daemon(models_dir, extra_args=["--max-job-memory", "20M"]) as handle:
        with handle.client() as client:
            with pytest.raises(StyleTransferError) as caught:
                client.stylize(content, "cyclegan", "style_monet", {"photo_radius": 8})
            assert caught.value.code == "out_of_memory", caught.value.message
            frame, _ = client.stylize(content, "cyclegan", "style_monet")
            assert (frame.width, frame.height) == (400, 400)
            # colour transfer works on the whole image in float64: its card counts more
            with pytest.raises(StyleTransferError) as caught:
                client.stylize(content, ENGINE, styles=[array_to_frame(STYLE)])
            assert caught.value.code == "out_of_memory", caught.value.message
            small = array_to_frame(example("content/city.jpg", (160, 160)))
            frame, _ = client.stylize(small, ENGINE, styles=[array_to_frame(STYLE)])
            assert frame.width == 160
