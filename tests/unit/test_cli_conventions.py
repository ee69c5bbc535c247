"""Command-line conventions, as real processes: -o rules with `-` for stdin/stdout, errors that
`-q` does not hide and that come before any model is loaded, unwritable outputs found before the
compute, `--json`, precision notes, `status`/`stop` without a daemon, pipes closed early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.commands.stylize import output_paths
from backend.imageio import decode_image_bytes, read_image, write_image
from stclient.errors import StyleTransferError
from tests.helpers import checkpoints as helpers

ROOT = Path(__file__).resolve().parents[2]
FAST = 3.0       # seconds: no torch import, no model load (a cold Python start is ~0.3 s)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return helpers.make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def env(models_dir, tmp_path):
    environment = dict(os.environ)
    environment["STYLE_TRANSFER_MODELS_DIR"] = str(models_dir)
    environment["STYLE_TRANSFER_RUNTIME_DIR"] = str(tmp_path / "run")   # no daemon there
    return environment


def backend(env, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, timeout=300)


def timed(env, *args: str, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = backend(env, *args, **kwargs)
    return result, time.monotonic() - started


def picture(path: Path, height: int = 24, width: int = 32, dtype=np.uint8) -> Path:
    rng = np.random.default_rng(5)
    top = 65535 if dtype == np.uint16 else 255
    write_image(path, rng.integers(0, top + 1, (height, width, 3)).astype(dtype))
    return path


# ------------------------------------------------------------------------------ -o rules

def test_output_rules(tmp_path):
    (tmp_path / "existing.png").mkdir()
    assert output_paths(["a.jpg"], "-", None) == [Path("-")]
    assert output_paths(["-"], str(tmp_path / "out"), None) == [tmp_path / "out" / "stdin.png"]
    assert output_paths(["a.jpg"], str(tmp_path / "r.tiff"), None) == [tmp_path / "r.tiff"]
    assert output_paths(["a.jpg"], str(tmp_path / "dir.v2") + "/", None) == [
        tmp_path / "dir.v2" / "a.jpg"]                        # a trailing slash: a folder
    assert output_paths(["a.jpg"], str(tmp_path / "existing.png"), None) == [
        tmp_path / "existing.png" / "a.jpg"]                  # an existing folder stays one
    for name in ("out.pgn", "out.xyz", "out.bmp"):
        with pytest.raises(StyleTransferError, match=r"\.png \.jpg \.jpeg \.webp \.tif \.tiff"):
            output_paths(["a.jpg"], str(tmp_path / name), None)
    with pytest.raises(StyleTransferError, match="one image to stdout"):
        output_paths(["a.jpg", "b.jpg"], "-", None)


def test_stdin_to_stdout_keeps_16_bits(env, tmp_path):
    source = picture(tmp_path / "deep.png", dtype=np.uint16)
    result = backend(env, "stylize", "-", "-o", "-", "--engine", "cyclegan", "-q",
                     stdin=source.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    image = decode_image_bytes(result.stdout)
    assert image.format == "PNG" and image.pixels.dtype == np.uint16
    assert image.pixels.shape == (24, 32, 3)


def test_16_bit_png_file_stays_16_bit_and_jpeg_says_it_rounds(env, tmp_path):
    source = picture(tmp_path / "deep.png", dtype=np.uint16)
    result = backend(env, "stylize", str(source), "-o", str(tmp_path / "out.png"), "--engine",
                     "cyclegan", "-q")
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    assert read_image(tmp_path / "out.png").pixels.dtype == np.uint16
    result = backend(env, "stylize", str(source), "-o", str(tmp_path / "out.jpg"), "--engine",
                     "cyclegan", "-q", "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert b"JPG stores 8 bits per channel" in result.stderr
    line = json.loads(result.stdout)
    assert line["status"] == "ok" and "8 bits" in line["notes"][0]


# ----------------------------------------------------------------- errors: once, early, loud

def test_quiet_hides_progress_not_errors_and_input_problems_come_first(env, tmp_path):
    style = picture(tmp_path / "style.png")
    cases = [
        (["stylize", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"), "--engine",
          "cyclegan", "-q"], 1, "missing.png does not exist"),
        (["stylize", str(style), "-o", str(tmp_path / "o.png"), "--engine", "adain", "-q"], 2,
         "needs at least one style image"),
        (["stylize", str(style), "-o", str(tmp_path / "o.png"), "--engine", "adain", "--style",
          str(tmp_path / "nostyle.png"), "-q"], 2, "nostyle.png does not exist"),
        (["stylize", str(style), "-o", str(tmp_path / "o.png"), "--engine", "adain", "--model",
          "style_monet", "--style", str(style), "-q"], 2,
         "is a cyclegan model, not adain; use --engine cyclegan"),
        (["stylize", str(style), "-o", str(style / "o.png"), "--engine", "cyclegan", "-q"], 1,
         "it is a file, not a folder"),
        (["stylize", str(style), "-o", str(tmp_path / "o.pgn"), "--engine", "cyclegan", "-q"], 2,
         ".pgn is not an image format"),
    ]
    for argv, code, text in cases:
        result, seconds = timed(env, *argv)
        err = result.stderr.decode()
        assert result.returncode == code and text in err, (argv, result.returncode, err)
        assert seconds < FAST, f"{argv}: {seconds:.1f} s (a model was loaded first?)"
        assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_found_before_the_compute(env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result, seconds = timed(env, "stylize", str(picture(tmp_path / "a.png")), "-o",
                            str(locked / "o.png"), "--engine", "cyclegan", "-q")
    assert result.returncode == 1 and b"Cannot write to" in result.stderr
    assert seconds < FAST


def test_unwritable_batch_output_is_found_before_the_compute(env, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    picture(inputs / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result, seconds = timed(env, "batch", str(inputs), str(blocker / "out"), "--engine",
                            "cyclegan", "--in-process", "-q")
    assert result.returncode == 2, result.stderr.decode()
    assert b"OUTPUT_DIR" in result.stderr and b"not a folder" in result.stderr
    assert seconds < FAST


def test_json_lists_every_image(env, tmp_path):
    good = picture(tmp_path / "good.png")
    result = backend(env, "stylize", str(good), str(tmp_path / "gone.png"), "-o",
                     str(tmp_path / "out"), "--engine", "cyclegan", "--json", "-q")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(line["input"], line["status"]) for line in lines] == [
        (str(good), "ok"), (str(tmp_path / "gone.png"), "failed")]
    assert lines[0]["where"] == "in-process" and lines[0]["width"] == 32
    assert lines[1]["code"] == "bad_image" and "does not exist" in lines[1]["message"]
    assert b"gone.png" in result.stderr            # the error is on stderr as well


# ------------------------------------------------------------------------ daemon, pipes

def test_status_and_stop_without_a_daemon_answer_at_once(env, tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    import socket
    stale = socket.socket(socket.AF_UNIX)        # a socket file left by a killed daemon
    stale.bind(str(run / "daemon.sock"))
    stale.close()
    for command, code in (("status", 1), ("stop", 0)):
        result, seconds = timed(env, command)
        text = (result.stdout + result.stderr).decode()
        assert result.returncode == code and "No daemon is running" in text, text
        assert seconds < 1.5, f"{command}: {seconds:.2f} s"
        if command == "status":
            assert "python -m backend serve" in text


def test_a_closed_pipe_ends_quietly(env):
    process = subprocess.Popen([sys.executable, "-m", "backend", "models"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()                        # `| head` that has already exited
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_kernels_build_without_a_compiler_says_what_to_install(tmp_path):
    environment = {"HOME": str(tmp_path), "PATH": str(tmp_path),     # no c++, g++, ninja
                   "STYLE_TRANSFER_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "backend", "kernels", "build"], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "apt install g++" in result.stderr and "Traceback" not in result.stderr
