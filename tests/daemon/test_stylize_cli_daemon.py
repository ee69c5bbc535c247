"""`python -m backend stylize` with a running daemon: it uses the daemon (warm models, the same
pixels as in-process), `--in-process` computes locally, and Ctrl-C cancels the daemon's job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.imageio import read_image, write_image

ROOT = Path(__file__).resolve().parents[2]


def picture(path: Path, side: int, dtype=np.uint8) -> Path:
    rng = np.random.default_rng(side)
    top = 65535 if dtype == np.uint16 else 255
    write_image(path, rng.integers(0, top + 1, (side, side + 8, 3)).astype(dtype))
    return path


def stylize(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "stylize", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def wait_until_running(client, process, wanted) -> None:
    """Until the daemon runs the job the CLI sent (`wanted(job)`), or fail."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = client.status().get("running")
        if running and wanted(running):
            return
        time.sleep(0.1)
    process.kill()
    pytest.fail("the job never ran in the daemon")


def seconds_until_idle(client, since: float) -> float:
    while client.status().get("running") is not None and time.monotonic() < since + 30:
        time.sleep(0.1)
    assert client.status().get("running") is None, "the daemon kept computing"
    return time.monotonic() - since


def test_uses_the_running_daemon_with_the_same_pixels(env, tmp_path, daemon):
    source = picture(tmp_path / "in.png", 40, np.uint16)
    style = picture(tmp_path / "style.png", 32)
    common = ["--engine", "adain", "--style", str(style), "--alpha", "0.7", "--json", "-q"]
    via_daemon = stylize(env, str(source), "-o", str(tmp_path / "d.png"), *common)
    local = stylize(env, str(source), "-o", str(tmp_path / "l.png"), *common, "--in-process")
    assert via_daemon.returncode == 0 and local.returncode == 0, via_daemon.stderr + local.stderr
    assert json.loads(via_daemon.stdout)["where"] == "daemon"
    assert json.loads(local.stdout)["where"] == "in-process"
    ours, theirs = read_image(tmp_path / "d.png").pixels, read_image(tmp_path / "l.png").pixels
    assert ours.dtype == np.uint16
    np.testing.assert_array_equal(ours, theirs)
    with daemon.client() as client:
        assert client.status()["jobs_done"] >= 1


def test_ctrl_c_cancels_the_daemons_job(env, tmp_path, daemon):
    source = picture(tmp_path / "big.png", 1024)
    process = subprocess.Popen([sys.executable, "-m", "backend", "stylize", str(source), "-o",
                                str(tmp_path / "never.png"), "--engine", "cyclegan"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    with daemon.client() as client:
        wait_until_running(client, process, lambda job: job["op"] == "stylize"
                           and job.get("running_s"))
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, err = process.communicate(timeout=60)
        freed = seconds_until_idle(client, interrupted)
    assert process.returncode == 130, err
    assert "cancelled" in err and "Traceback" not in err, err
    assert not (tmp_path / "never.png").exists()
    assert freed < 15, f"the daemon's job ran on for {freed:.1f} s"
    print(f"\nCtrl-C: the daemon's job stopped {freed:.2f} s later")


def test_ctrl_c_twice_stops_the_daemons_batch_inside_the_image(env, tmp_path, daemon):
    """Once: the batch ends after the image in hand. Twice: the daemon stops that image too."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(2):
        picture(folder / f"{index}.png", 1024 + 8 * index)
    process = subprocess.Popen([sys.executable, "-m", "backend", "batch", str(folder),
                                str(tmp_path / "out"), "--engine", "cyclegan"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    with daemon.client() as client:
        wait_until_running(client, process, lambda job: job["op"] == "batch"
                           and job.get("fraction", 0) > 0.05)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        process.communicate(timeout=60)
        freed = seconds_until_idle(client, interrupted)
    assert process.returncode == 130
    assert freed < 15, f"the daemon's batch ran on for {freed:.1f} s"
    assert not list((tmp_path / "out").glob("*.png")), "no image was finished"
    print(f"\nCtrl-C twice: the daemon's batch stopped {freed:.2f} s later")
