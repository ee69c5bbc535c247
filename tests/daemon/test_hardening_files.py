"""Hardening (issue 16): which files a client can make the daemon, the CLI and the batch runner
open, read or write. Real daemon processes, real sockets; hostile inputs leave marker files that
must never appear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.spec import BatchReport, BatchSpec
from backend.daemon.images import array_to_frame
from stclient import paths
from stclient.errors import StyleTransferError

from tests.helpers.batch_folders import make_plain_folder
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon
from tests.helpers.hostile import eps_bytes, fake_ghostscript, path_with


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ghostscript(tmp_path_factory):
    """(PATH with a fake gs first, the marker it would create)."""
    base = tmp_path_factory.mktemp("gs")
    marker = base / "GHOSTSCRIPT_RAN"
    return path_with(fake_ghostscript(base / "bin", marker)), marker


@pytest.fixture(scope="module")
def daemon(models_dir, ghostscript):
    with start_daemon(models_dir, env={"PATH": ghostscript[0]}) as handle:
        yield handle


def small_image(seed: int, side: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


# ------------------------------------------------------------------- 4. image decoders

def test_eps_named_png_never_reaches_ghostscript(daemon, ghostscript, models_dir, tmp_path):
    path_env, marker = ghostscript
    disguised = tmp_path / "style.png"
    disguised.write_bytes(eps_bytes())
    with daemon.client() as client:                        # the daemon, as a style file
        with pytest.raises(StyleTransferError) as caught:
            client.stylize(array_to_frame(small_image(1)), "adain", "adain",
                           style_paths=[disguised])
    assert caught.value.code == "bad_image", caught.value.message
    inp = tmp_path / "in"                                  # the batch runner, as an input
    make_plain_folder(inp, 1, 16)
    (inp / "b_disguised.png").write_bytes(eps_bytes())
    spec = BatchSpec(input_dir=str(inp), output_dir=str(tmp_path / "out"), engine="cyclegan",
                     model="style_monet")
    with daemon.client() as client:
        report = BatchReport.from_json(client.batch(spec.to_json()))
    assert {i.input: i.code for i in report.failures} == {"b_disguised.png": "bad_image"}
    assert report.count("ok") == 1
    env = {**os.environ, "PATH": path_env, "STYLE_TRANSFER_MODELS_DIR": str(models_dir)}
    cli = subprocess.run(                                  # the CLI
        [sys.executable, "-m", "backend", "stylize", str(disguised), "-o",
         str(tmp_path / "o.png"), "--engine", "cyclegan", "--model", "style_monet",
         "--threads", "1"], cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
        timeout=120)
    assert cli.returncode != 0 and "not an image in a format" in cli.stderr, cli.stderr
    assert not marker.exists(), "Ghostscript was run on an untrusted file"
    with pytest.raises(StyleTransferError, match="not an image in a format"):
        imageio.decode_image_bytes(eps_bytes())


@pytest.mark.parametrize("fmt, extension", [("ICO", ".png"), ("PCX", ".png"), ("SGI", ".jpg"),
                                            ("IM", ".tif")])
def test_formats_outside_the_allow_list_are_refused(tmp_path, fmt, extension):
    from PIL import Image
    path = tmp_path / f"x{extension}"
    Image.fromarray(small_image(2)).save(path, fmt)
    with pytest.raises(StyleTransferError) as caught:
        imageio.read_image(path)
    assert caught.value.code == "bad_image"
