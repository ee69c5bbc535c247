"""Adding an engine is one card, one engine module and one network module: a throwaway engine
added that way to a copy of the project (tests/helpers/throwaway_engine.py), with no other edit,
shows up in --help, `models --engine`, `stylize`, the daemon and the batch runner. (The real-GIMP
suite checks the same copy's procedure list.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.daemon.images import array_to_frame, frame_to_array
from tests.helpers import throwaway_engine as throwaway
from tests.helpers.daemon import start_daemon


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return throwaway.make_project(tmp_path_factory.mktemp("throwaway") / "project")


def backend(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(project / "models"))
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def picture(path: Path, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_the_new_engine_is_in_the_help_and_the_model_list(project):
    helped = backend(project, "stylize", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "invert" in helped.stdout and "--strength" in helped.stdout
    listed = backend(project, "models", "--engine", "invert", "--json")
    assert listed.returncode == 0, listed.stderr
    models = json.loads(listed.stdout)["models"]
    assert [(m["name"], m["engine"], m["installed"]) for m in models] == \
        [(throwaway.MODEL, "invert", True)]


def test_stylize_runs_it(project, tmp_path):
    pixels = picture(tmp_path / "in.png")
    result = backend(project, "stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
                     "--engine", "invert", "--strength", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert np.abs(out.astype(int) - (255 - pixels.astype(int))).max() <= 1
    refused = backend(project, "stylize", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png"),
                      "--engine", "invert", "--style", str(tmp_path / "in.png"))
    assert refused.returncode != 0 and "takes no style image" in refused.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_daemon_serves_it(project):
    handle = start_daemon(project / "models", project_root=project)
    try:
        with handle.client() as client:
            assert "invert" in client.models()["engines"]
            pixels = np.random.default_rng(3).integers(0, 256, (8, 10, 3), dtype=np.uint8)
            frame, _ = client.stylize(array_to_frame(pixels), engine="invert",
                                      options={"strength": 0.5})
            expected = 0.5 * (255 - pixels.astype(float)) + 0.5 * pixels
            assert np.abs(frame_to_array(frame, "result").astype(float) - expected).max() <= 1
    finally:
        handle.stop()


def test_batch_runs_it(project, tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    first = picture(tmp_path / "in" / "a.png", 1)
    second = picture(tmp_path / "in" / "sub" / "b.png", 2)
    result = backend(project, "batch", str(tmp_path / "in"), str(tmp_path / "out"),
                     "--engine", "invert", "--recursive", "--in-process", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, pixels in (("a.png", first), ("sub/b.png", second)):
        out = np.asarray(Image.open(tmp_path / "out" / name))
        assert np.abs(out.astype(int) - (255 - pixels.astype(int))).max() <= 1
