"""Hardening (issue 16): which files a client can make the daemon, the CLI and the batch runner
open, read or write. Real daemon processes, real sockets; hostile inputs leave marker files that
must never appear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.spec import BatchReport, BatchSpec
from backend.daemon.images import array_to_frame
from stclient.errors import StyleTransferError

from tests.helpers.batch_folders import make_plain_folder
from tests.helpers.daemon import start_daemon
from tests.helpers.hostile import eps_bytes, fake_ghostscript, path_with


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


# -------------------------------------------------------------- 1. the batch report's path

def batch_spec(inp: Path, out: Path, **fields) -> dict:
    spec = BatchSpec(input_dir=str(inp), output_dir=str(out), engine="cyclegan",
                     model="style_monet").to_json()
    spec.update(fields)
    return spec


@pytest.mark.parametrize("name", [".bashrc", "../.bashrc", "sub/r.json", "r.sh", ".r.json",
                                  "report", ".json", "/tmp/r.json", "a\\b.json", "r.json\n"])
def test_report_must_be_a_plain_json_name_in_the_output_folder(daemon, tmp_path, name):
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    bashrc = home / ".bashrc"
    bashrc.write_text("# the user's own\n")
    inp = tmp_path / "in"
    make_plain_folder(inp, 1, 16)
    with daemon.client() as client:
        with pytest.raises(StyleTransferError) as caught:
            client.batch(batch_spec(inp, home, report=name))
    assert caught.value.code == "bad_request", caught.value.message
    assert bashrc.read_text() == "# the user's own\n"
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", "sub"]   # nothing written


def test_report_replaces_only_an_earlier_report_and_is_inert_to_shells(daemon, tmp_path):
    marker = tmp_path / "SHELL_RAN"
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 1, 16)
    hostile = "$(touch SHELL_RAN) `touch SHELL_RAN`.png"     # bash runs in tmp_path
    (inp / hostile).write_bytes(b"not an image")           # its name lands in the report
    out.mkdir()
    (out / "settings.json").write_text('{"mine": true}\n')
    os.symlink(tmp_path / "elsewhere.json", out / "link.json")
    with daemon.client() as client:
        for taken in ("settings.json", "link.json"):
            with pytest.raises(StyleTransferError) as caught:
                client.batch(batch_spec(inp, out, report=taken))
            assert caught.value.code == "bad_request", caught.value.message
            assert "not an earlier batch report" in caught.value.message
        assert not (out / "img_0000.png").exists()        # refused before any work
        for _ in range(2):                                 # the second run replaces the first
            client.batch(batch_spec(inp, out, report="run.json", overwrite=True))
    assert (out / "settings.json").read_text() == '{"mine": true}\n'
    assert not (tmp_path / "elsewhere.json").exists()
    text = (out / "run.json").read_text()
    data = json.loads(text)                                # the text is still plain JSON
    assert {i["input"]: i["code"] for i in data["items"]}[hostile] == "bad_image"
    assert "$" not in text and "`" not in text
    subprocess.run(["bash", "-c", f". '{out / 'run.json'}'"], capture_output=True,
                   cwd=str(tmp_path), timeout=30)
    assert not marker.exists(), "the report's free text ran as shell code"


# ------------------------------------------------------- 8. style files the worker reads

def test_style_files_that_are_not_small_regular_files_never_stall_the_worker(daemon, tmp_path):
    fifo = tmp_path / "style.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.png"                 # 2 GiB, sparse: costs no disk
    with open(huge, "wb") as handle:
        handle.truncate(2 << 30)
    cases = {"/proc/kmsg": "bad_image", str(fifo): "bad_image", "/dev/zero": "bad_image",
             str(tmp_path): "bad_image", str(huge): "too_large",
             str(tmp_path / "missing.png"): "bad_request"}
    rss_before = daemon.rss()
    with daemon.client(timeout=30) as client:
        for path, code in cases.items():
            started = time.monotonic()
            with pytest.raises(StyleTransferError) as caught:
                client.stylize(array_to_frame(small_image(1)), "adain", "adain",
                               style_paths=[path])
            assert caught.value.code == code, (path, caught.value.message)
            assert time.monotonic() - started < 10, path
        frame, _ = client.stylize(array_to_frame(small_image(2)), "cyclegan", "style_monet")
        assert frame.width == 16                  # the worker serves on at once
        spec = batch_spec(tmp_path / "in_none", tmp_path / "o", engine="adain", model="adain",
                          styles=["/proc/kmsg"])
        (tmp_path / "in_none").mkdir()
        with pytest.raises(StyleTransferError) as caught:   # a batch's styles alike
            client.batch(spec)
        assert caught.value.code == "bad_image", caught.value.message
    assert daemon.rss() - rss_before < 256 << 20, "a refused file was read into memory"


def test_a_style_read_that_hangs_times_out_and_can_be_cancelled(monkeypatch):
    """The reader's own contract, with a read that blocks until released."""
    import threading
    from backend import imageio
    from backend.daemon.stylefiles import StyleFileReader
    release = threading.Event()

    def stuck(path, max_bytes):
        release.wait(30)
        return b"late"

    monkeypatch.setattr(imageio, "read_file_bytes", stuck)
    reader = StyleFileReader(timeout=0.5, max_stuck=2)
    started = time.monotonic()
    with pytest.raises(StyleTransferError) as caught:
        reader.read("/slow/style.png", lambda: False, lambda: 60.0)
    assert caught.value.code == "unreadable" and 0.4 < time.monotonic() - started < 3
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert reader.read("/slow/style.png", stop.is_set, lambda: 60.0) == b""   # cancelled
    assert time.monotonic() - started < 1
    with pytest.raises(StyleTransferError) as caught:        # both slots hang: refuse at once
        reader.read("/slow/style.png", lambda: False, lambda: 60.0)
    assert caught.value.code == "busy"
    release.set()
