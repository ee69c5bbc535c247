"""The optimisation engine through a real daemon socket: the run-time estimate (asked before,
said first in the job's progress, close to the run it predicts), intermediate images (the
expected count, real images that approach the result, none for a client that does not ask, at
most one on its way to a client that does not take them), the CLI printing the estimate and
keeping the last intermediate after Ctrl-C, and batch over a folder.

Sizes are tiny (32-64 px, a random full-size VGG in the released layout, one thread) so the
module stays around a minute or two on the shared 2-core machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from backend.daemon.images import array_to_frame, frame_to_array
from backend.imageio import read_image, write_image
from stclient.protocol import HeartbeatRequest, StylizeRequest, decode_reply
from tests.unit.test_cin_engine import photo

ROOT = Path(__file__).resolve().parents[2]
# the estimate against the run, as compute_s / estimated seconds: measured 0.8-1.3 on the
# shared 2-core machine at load 3-7 (other helpers' tests running); the bounds leave a factor of
# two either way for a load that changes between the measurement and the run. A wrong scaling
# rule (per iteration instead of per pixel, a scale or the set-up left out) is off by 4x or more.
RATIO_BOUNDS = (0.5, 2.0)


def float_photo(side: int, seed: int) -> np.ndarray:
    """float32 pixels: the small changes of a few iterations are not rounded away."""
    return (photo(side, side, seed=seed).astype(np.float32) / 255.0)


def test_the_estimate_comes_first_and_predicts_the_run(daemon):
    options = {"size": 64, "scales": 1, "iterations": 8, "update_every": 0}
    with daemon.client(timeout=300) as client:
        asked: list[str] = []
        estimate = client.estimate("optimize", 64, 64, options=options,
                                   on_progress=lambda fraction, text: asked.append(text))
        assert any("measuring" in text for text in asked), asked
        assert estimate.seconds > 0
        assert estimate.text.startswith(("about ", "under a second "))
        assert estimate.text.endswith("(64 px, 1 scale, 8 iterations)")
        started = time.monotonic()
        again = client.estimate("optimize", 64, 64, options=options)
        assert time.monotonic() - started < 3.0          # kept: no second measurement
        assert again == estimate
        bigger = client.estimate("optimize", 64, 64, options={**options, "iterations": 16})
        assert bigger.seconds > 1.5 * estimate.seconds

        texts: list[str] = []
        _, data = client.stylize(array_to_frame(float_photo(64, 1)), "optimize",
                                 options=options, styles=[array_to_frame(photo(64, 64, 2))],
                                 on_progress=lambda fraction, text: texts.append(text))
    said = [text for text in texts if text.startswith("estimated time: ")]
    assert said == [f"estimated time: {estimate.text}"], texts
    assert texts.index(said[0]) < next(i for i, t in enumerate(texts)
                                       if t.startswith("iteration 1 of 8"))
    ratio = data["compute_s"] / estimate.seconds
    print(f"\nestimate {estimate.seconds:.2f} s, run {data['compute_s']:.2f} s, "
          f"ratio {ratio:.2f}, load {os.getloadavg()[0]:.1f}")
    assert RATIO_BOUNDS[0] < ratio < RATIO_BOUNDS[1], (estimate, data["compute_s"])


def test_an_engine_without_estimates_is_refused(daemon):
    with daemon.client() as client:
        with pytest.raises(Exception, match="gives no run-time estimate"):
            client.estimate("adain", 64, 64)


def test_intermediate_images_arrive_and_approach_the_result(daemon):
    content = float_photo(48, 3)
    options = {"size": 48, "scales": 1, "iterations": 9, "update_every": 3}
    frames: list[tuple[np.ndarray, float, str]] = []
    with daemon.client(timeout=300) as client:
        result, _ = client.stylize(
            array_to_frame(content), "optimize", options=options,
            styles=[array_to_frame(photo(48, 48, 4))],
            on_intermediate=lambda image, fraction, text: frames.append(
                (np.array(frame_to_array(image)), fraction, text)))
    final = np.array(frame_to_array(result))
    assert [text for _, _, text in frames] == ["iteration 3 of 9", "iteration 6 of 9"]
    fractions = [fraction for _, fraction, _ in frames]
    assert fractions == sorted(fractions) and 0 < fractions[0] < fractions[1] < 1
    images = [image for image, _, _ in frames]
    for image in images:
        assert image.shape == content.shape and image.dtype == content.dtype
    # they are the run's own images: each differs from the content and the one before, and
    # each is closer to the final result than the content (and the one before) was
    distance = [float(np.abs(image - final).mean()) for image in [content, *images]]
    assert not np.array_equal(images[0], content)
    assert not np.array_equal(images[0], images[1])
    assert distance[0] > distance[1] > distance[2] > 0, distance


def raw_stylize(endpoint: str, intermediates: bool, options: dict) -> list[str]:
    """Send one stylize request on a bare DEALER socket that never asks for a next
    intermediate; the reply types it receives (heartbeats left out)."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        request = StylizeRequest(engine="optimize", content=array_to_frame(float_photo(32, 5)),
                                 styles=[array_to_frame(photo(32, 32, 6))], options=options,
                                 intermediates=intermediates)
        socket.send_multipart(request.to_frames())
        kinds: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if socket.poll(500):
                reply = decode_reply(socket.recv_multipart())
                if reply.TYPE != "heartbeat":
                    kinds.append(reply.TYPE)
                if reply.TYPE in ("result", "error"):
                    return kinds
            socket.send_multipart(HeartbeatRequest().to_frames())
        pytest.fail(f"no result within 240 s; got {kinds}")
    finally:
        socket.close()


def test_intermediates_only_when_asked_and_one_at_a_time(daemon):
    options = {"size": 32, "scales": 1, "iterations": 9, "update_every": 2}   # makes four
    unasked = raw_stylize(daemon.endpoint, False, options)
    assert unasked.count("intermediate") == 0 and unasked[-1] == "result", unasked
    # asked, but the client never gives the credit for a next one: the first only
    never_taken = raw_stylize(daemon.endpoint, True, options)
    assert never_taken.count("intermediate") == 1 and never_taken[-1] == "result", never_taken


def picture(path: Path, array: np.ndarray) -> Path:
    write_image(path, array)
    return path


def run_cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)


def test_cli_estimate_only_prints_it_and_writes_nothing(env, tmp_path):
    source = picture(tmp_path / "in.png", photo(64, 64, 7))
    style = picture(tmp_path / "style.png", photo(64, 64, 8))
    out = tmp_path / "out.png"
    done = run_cli(env, "stylize", str(source), "-o", str(out), "--engine", "optimize",
                   "--style", str(style), "--size", "64", "--scales", "1", "--iterations", "8",
                   "--estimate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith((f"{source}: estimated time: about ",
                                   f"{source}: estimated time: under a second ")), done.stdout
    assert "(64 px, 1 scale, 8 iterations)" in done.stdout
    assert not out.exists()
    refused = run_cli(env, "stylize", str(source), "-o", str(out), "--engine", "adain",
                      "--style", str(style), "--estimate")
    assert refused.returncode == 2 and "gives no run-time estimate" in refused.stderr


def test_cli_says_the_estimate_and_ctrl_c_keeps_the_last_intermediate(env, tmp_path, daemon):
    content = photo(48, 48, 9)
    source = picture(tmp_path / "in.png", content)
    style = picture(tmp_path / "style.png", photo(48, 48, 10))
    out = tmp_path / "out.png"
    process = subprocess.Popen(
        [sys.executable, "-m", "backend", "stylize", str(source), "-o", str(out), "--engine",
         "optimize", "--style", str(style), "--size", "48", "--scales", "1",
         "--iterations", "400", "--update-every", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not out.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.exists(), process.communicate(timeout=30)
    first = out.stat().st_mtime_ns
    while out.stat().st_mtime_ns == first and time.monotonic() < deadline:
        time.sleep(0.1)                          # a second one replaced it (atomically)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "estimated time: about " in err and "(48 px, 1 scale, 400 iterations)" in err, err
    assert f"{out} keeps the result so far (iteration " in err, err
    kept = read_image(out).pixels
    assert kept.shape == content.shape
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]   # no temp file left
    with daemon.client() as client:
        deadline = time.monotonic() + 30
        while client.status().get("running") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.status().get("running") is None


def test_batch_runs_a_folder_through_the_daemon(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "a.png", photo(40, 32, 11))
    picture(folder / "b.png", photo(32, 36, 12))
    style = picture(tmp_path / "style.png", photo(32, 32, 13))
    done = run_cli(env, "batch", str(folder), str(tmp_path / "out"), "--engine", "optimize",
                   "--style", str(style), "--size", "32", "--scales", "1", "--iterations", "3",
                   "-q")
    assert done.returncode == 0, done.stderr
    for name, source in (("a.png", (40, 32)), ("b.png", (32, 36))):
        written = read_image(tmp_path / "out" / name).pixels
        assert written.shape[:2] == source
        assert not np.array_equal(written, read_image(folder / name).pixels)
