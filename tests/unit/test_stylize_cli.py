"""`python -m backend stylize`: real processes on tiny real files, with random-weight models
installed as the model store lays them out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.commands.stylize import output_paths
from backend.engines.job import StylizeJob
from backend.imageio import read_image, write_image
from backend.runtime import Runtime
from stclient.errors import StyleTransferError
from tests.helpers import checkpoints as helpers

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return helpers.make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def env(models_dir, monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", str(models_dir))
    environment = dict(os.environ)
    environment["STYLE_TRANSFER_MODELS_DIR"] = str(models_dir)
    return environment


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "stylize", *args, "--threads", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def picture(path: Path, height: int, width: int, channels: int = 3, dtype=np.uint8) -> Path:
    top = 65535 if dtype == np.uint16 else 255
    base = RNG.integers(0, top + 1, size=(height // 4 + 1, width // 4 + 1, channels))
    pixels = np.kron(base, np.ones((4, 4, 1)))[:height, :width].astype(dtype)
    write_image(path, pixels)
    return path


def test_adain_file_to_file_keeps_size_and_alpha(env, tmp_path):
    content = picture(tmp_path / "in.png", 37, 45, 4)
    style = picture(tmp_path / "style.jpg", 40, 40)
    out = tmp_path / "out.png"
    result = cli(env, str(content), "-o", str(out), "--engine", "adain", "--style", str(style),
                 "--alpha", "0.8")
    assert result.returncode == 0, result.stderr
    written, source = read_image(out).pixels, read_image(content).pixels
    assert written.shape == (37, 45, 4)
    np.testing.assert_array_equal(written[..., 3], source[..., 3])
    assert "%" in result.stderr                      # a progress display on stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files


def test_several_inputs_into_a_new_folder(env, tmp_path):
    a = picture(tmp_path / "a.png", 20, 24)
    b = picture(tmp_path / "b.jpg", 17, 13)
    out_dir = tmp_path / "results"
    result = cli(env, str(a), str(b), "-o", str(out_dir), "--engine", "cyclegan",
                 "--model", "style_monet")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.jpg"]
    assert read_image(out_dir / "b.jpg").pixels.shape == (17, 13, 3)
    assert "2 of 2" in result.stderr


def test_flags_reach_the_engine_exactly(env, tmp_path, models_dir):
    """--checkpoint, --norm and --seed give the same pixels as the Runtime called directly."""
    content = picture(tmp_path / "labels.png", 30, 34)
    generator = helpers.make_pix2pix_file(tmp_path / "g.pth", "unet_128", seed=4)
    out = tmp_path / "photo.tif"
    result = cli(env, str(content), "-o", str(out), "--engine", "pix2pix", "--checkpoint",
                 generator, "--norm", "running", "--seed", "3", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""                        # --quiet
    expected = Runtime(device="cpu", threads=1).stylize(StylizeJob(
        engine="pix2pix", content=read_image(content).pixels,
        options={"norm": "running", "seed": 3}, checkpoints={"generator": generator}))
    np.testing.assert_array_equal(read_image(out).pixels, expected)


def test_usage_errors_exit_2_with_a_message(env, tmp_path):
    content = picture(tmp_path / "in.png", 16, 16)
    result = cli(env, str(content), "-o", str(tmp_path / "o.png"), "--engine", "adain",
                 "--style", str(content), "--norm", "running")
    assert result.returncode == 2 and "--norm is an option of pix2pix" in result.stderr
    result = cli(env, str(content), str(content), "-o", str(tmp_path / "o.png"), "--engine",
                 "cyclegan")
    assert result.returncode == 2 and "must be a folder" in result.stderr
    assert not (tmp_path / "o.png").exists()


def test_in_process_multi_style_mask_and_formats(env, tmp_path, capsys):
    content = picture(tmp_path / "c.png", 24, 32, 1, np.uint16)      # 16-bit grey
    s1, s2 = picture(tmp_path / "s1.png", 20, 20), picture(tmp_path / "s2.png", 28, 16)
    mask = np.zeros((24, 32), np.uint8)
    mask[:, :16] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code = main(["stylize", str(content), "-o", str(tmp_path / "out"), "--format", "tif",
                 "--engine", "adain", "--style", str(s1), "--style", str(s2),
                 "--mask", str(tmp_path / "mask.png"), "--threads", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    written = read_image(tmp_path / "out" / "c.tif").pixels
    assert written.shape == (24, 32, 1) and written.dtype == np.uint16
    code = main(["stylize", str(content), "-o", str(tmp_path / "w.webp"), "--engine", "adain",
                 "--style", str(s1), "--style", str(s2), "--style-weights", "0.7,0.3",
                 "--preserve-color", "--threads", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert read_image(tmp_path / "w.webp").pixels.shape == (24, 32, 3)   # WebP has no grey


def test_a_bad_input_does_not_stop_the_others(env, tmp_path, capsys):
    good = picture(tmp_path / "good.png", 16, 16)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code = main(["stylize", str(bad), str(good), "-o", str(tmp_path / "out"), "--engine",
                 "cyclegan", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "bad_image" in err and "bad.png" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_bad_checkpoint_and_missing_model(env, tmp_path, capsys):
    content = picture(tmp_path / "in.png", 16, 16)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x00" * 100)
    code = main(["stylize", str(content), "-o", str(tmp_path / "o.png"), "--engine", "cyclegan",
                 "--checkpoint", str(broken), "--threads", "1"])
    assert code == 1 and "bad_checkpoint" in capsys.readouterr().err
    code = main(["stylize", str(content), "-o", str(tmp_path / "o.png"), "--engine", "cyclegan",
                 "--model", "horse2zebra", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "model_missing" in err and "install" in err
    assert not (tmp_path / "o.png").exists()


def test_output_path_rules(tmp_path):
    (tmp_path / "existing").mkdir()
    assert output_paths(["x/a.jpg"], str(tmp_path / "r.png"), None) == [tmp_path / "r.png"]
    assert output_paths(["x/a.jpg"], str(tmp_path / "existing"), None) == [
        tmp_path / "existing" / "a.jpg"]
    assert output_paths(["x/a.jpg"], str(tmp_path / "new"), None) == [tmp_path / "new" / "a.jpg"]
    assert output_paths(["a.bmp", "b.jpg"], str(tmp_path / "d"), "webp") == [
        tmp_path / "d" / "a.webp", tmp_path / "d" / "b.webp"]
    assert output_paths(["a.bmp"], str(tmp_path / "d"), None) == [tmp_path / "d" / "a.png"]
    with pytest.raises(StyleTransferError, match="both be written"):
        output_paths(["x/a.png", "y/a.png"], str(tmp_path / "d"), None)
    with pytest.raises(StyleTransferError, match="input itself"):
        output_paths([str(tmp_path / "a.png")], str(tmp_path / "a.png"), None)


def test_help_lists_the_option_flags(env):
    result = subprocess.run([sys.executable, "-m", "backend", "stylize", "--help"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--alpha", "--style-weights", "--preserve-color", "--color-method",
                 "--mask", "--norm", "--seed", "--working-size", "--checkpoint", "--device"):
        assert flag in result.stdout, flag


def test_optimize_says_its_estimate_and_can_stop_there(env, tmp_path):
    """--estimate measures this computer once and prints the estimate, computing nothing; a
    later process finds the measured profile in the cache and says the same estimate before it
    runs."""
    import json
    content, style = picture(tmp_path / "in.png", 40, 48), picture(tmp_path / "s.png", 32, 32)
    out = tmp_path / "out.png"
    args = [str(content), "-o", str(out), "--engine", "optimize", "--style", str(style),
            "--size", "48", "--scales", "1", "--iterations", "3"]
    only = cli(env, *args, "--estimate", "--json")
    assert only.returncode == 0, only.stderr
    item = json.loads(only.stdout)
    assert item["status"] == "estimated" and item["estimate"]["seconds"] > 0
    assert item["estimate"]["text"].startswith(("about ", "under a second "))
    assert item["estimate"]["text"].endswith("(48 px, 1 scale, 3 iterations)")
    assert not out.exists()
    plain = cli(env, *args, "--estimate")
    assert plain.stdout == f"{content}: estimated time: {item['estimate']['text']}\n"
    run = cli(env, *args)
    assert run.returncode == 0, run.stderr
    assert f"{content}: estimated time: {item['estimate']['text']}" in run.stderr
    assert read_image(out).pixels.shape == (40, 48, 3)
