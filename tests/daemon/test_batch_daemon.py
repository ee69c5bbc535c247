"""Batches through a real daemon over a real ipc socket: same files as in-process, progress,
cancel (stops after the image in hand and still returns the report), the CLI's default daemon
mode, and GIMP filters running between a batch's images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.runner import run_batch
from backend.batch.spec import BatchReport, BatchSpec, parse_progress_text
from backend.daemon.images import array_to_frame
from stclient.errors import BAD_REQUEST, StyleTransferError

from tests.helpers.batch_folders import (image_files, make_bad_files, make_mixed_folder,
                                         make_plain_folder, wait_for_outputs)


def spec_for(inp: Path, out: Path, **fields) -> BatchSpec:
    return BatchSpec(input_dir=str(inp), output_dir=str(out), engine="cyclegan",
                     model="style_monet", **fields)


def test_daemon_batch_writes_what_in_process_writes(daemon, models_dir, tmp_path):
    from backend.runtime import Runtime
    inp = tmp_path / "in"
    make_mixed_folder(inp, side=24)
    texts: list[str] = []
    with daemon.client() as client:
        data = client.batch(spec_for(inp, tmp_path / "via_daemon", recursive=True).to_json(),
                            on_progress=lambda fraction, text: texts.append(text))
    report = BatchReport.from_json(data)
    assert report.exit_status() == 0 and report.count("ok") == 8
    local = run_batch(spec_for(inp, tmp_path / "local", recursive=True),
                      Runtime(device="cpu", models_dir=models_dir))   # threads as the daemon
    assert local.count("ok") == 8
    names = image_files(tmp_path / "local")
    assert image_files(tmp_path / "via_daemon") == names
    for name in names:
        # Two processes: oneDNN may order a float reduction differently (alignment, threads), so
        # a value sitting on a rounding boundary can land one level apart; nothing more.
        ours = imageio.read_image(tmp_path / "via_daemon" / name).pixels
        theirs = imageio.read_image(tmp_path / "local" / name).pixels
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        top = float(np.iinfo(ours.dtype).max)
        difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) / top
        assert difference.max() <= 1 / 255 + 1e-9 and difference.mean() < 1e-4, name
    counts = [parse_progress_text(t) for t in texts]
    assert (8, 8, "done") in counts                    # progress relayed to the client


def test_daemon_batch_reports_bad_files(daemon, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    expected = make_bad_files(inp)
    with daemon.client() as client:
        report = BatchReport.from_json(client.batch(spec_for(inp, out, recursive=True).to_json()))
    assert {i.input: i.code for i in report.failures} == expected
    assert image_files(out) == ["good.png"]


def test_daemon_refuses_output_inside_input(daemon, tmp_path):
    inp = tmp_path / "in"
    make_plain_folder(inp, 1, 24)
    with daemon.client() as client:
        with pytest.raises(StyleTransferError) as caught:
            client.batch(spec_for(inp, inp / "out", recursive=True).to_json())
    assert caught.value.code == BAD_REQUEST and "inside INPUT_DIR" in caught.value.message
    with daemon.client() as client:                    # relative paths never reach the disk
        with pytest.raises(StyleTransferError, match="absolute"):
            client.batch({**spec_for(inp, tmp_path / "o").to_json(), "input_dir": "in"})
    assert image_files(inp) == ["img_0000.png"]


def test_cancel_through_the_daemon_stops_after_the_image_in_hand(daemon, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = make_plain_folder(inp, 30, 48)
    cancel = threading.Event()

    def progress(fraction: float, text: str) -> None:
        parsed = parse_progress_text(text)
        if parsed is not None and parsed[0] >= 2:
            cancel.set()

    with daemon.client() as client:
        data = client.batch(spec_for(inp, out).to_json(), on_progress=progress,
                            cancel_event=cancel)
    report = BatchReport.from_json(data)
    done = [i.input for i in report.items if i.status == "ok"]
    assert report.cancelled and 2 <= len(done) < len(names)
    assert [i.status for i in report.items] == ["ok"] * len(done) + ["cancelled"] * (
        len(names) - len(done))
    assert image_files(out) == done
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temp files left
    with daemon.client() as client:                    # the daemon serves on
        assert client.status()


def test_interactive_stylize_runs_between_batch_images(daemon, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 40, 48)
    started = threading.Event()
    cancel = threading.Event()
    finished: dict[str, float] = {}

    def run() -> None:
        def progress(fraction: float, text: str) -> None:
            parsed = parse_progress_text(text)
            if parsed is not None and parsed[0] >= 1:
                started.set()
        with daemon.client() as client:
            data = client.batch(spec_for(inp, out).to_json(), on_progress=progress,
                                cancel_event=cancel)
        finished["batch"] = time.monotonic()
        finished["ok"] = BatchReport.from_json(data).count("ok")

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(120)
        content = array_to_frame(np.full((24, 24, 3), 128, np.uint8))
        with daemon.client() as client:
            image, _ = client.stylize(content, "cyclegan", model="style_monet")
        finished["stylize"] = time.monotonic()
        assert (image.width, image.height) == (24, 24)
        assert "batch" not in finished                 # it did not wait for the whole batch
    finally:
        cancel.set()
        thread.join(120)
    assert finished["stylize"] < finished["batch"] and finished["ok"] < 40


def test_cli_uses_the_daemon_by_default(daemon, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    expected = make_bad_files(inp)
    env = dict(os.environ, STYLE_TRANSFER_RUNTIME_DIR=str(daemon.runtime_dir))
    # no --endpoint: the default endpoint in this runtime dir is the test daemon's socket
    command = [sys.executable, "-m", "backend", "batch", str(inp), str(out), "--engine",
               "cyclegan", "--model", "style_monet", "--report", str(tmp_path / "r.json")]
    result = subprocess.run(command, cwd=str(PROJECT_ROOT), env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {i["input"]: i["code"] for i in report["items"] if i["status"] == "failed"} == {
        rel: code for rel, code in expected.items() if "/" not in rel}   # not recursive
    assert image_files(out) == ["good.png"]
    usage = subprocess.run([*command[:4], str(inp), str(inp), *command[6:],
                            "--endpoint", daemon.endpoint],
                           cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
                           timeout=300)
    assert usage.returncode == 2 and "same folder" in usage.stderr


def test_ctrl_c_in_the_cli_cancels_the_daemon_batch_and_keeps_the_report(daemon, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = make_plain_folder(inp, 30, 48)
    env = dict(os.environ, STYLE_TRANSFER_RUNTIME_DIR=str(daemon.runtime_dir))
    process = subprocess.Popen(
        [sys.executable, "-m", "backend", "batch", str(inp), str(out), "--engine", "cyclegan",
         "--model", "style_monet", "--endpoint", daemon.endpoint, "--report",
         str(tmp_path / "r.json")], cwd=str(PROJECT_ROOT), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    wait_for_outputs(process, out)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    report = json.loads((tmp_path / "r.json").read_text())
    done = sorted(i["input"] for i in report["items"] if i["status"] == "ok")
    assert report["cancelled"] and 2 <= len(done) < len(names)
    assert image_files(out) == done
    with daemon.client() as client:                    # the daemon is idle again
        assert client.status()["running"] is None
