"""Jobs through a real daemon over a real ipc socket: exact results, progress, cancel, vanished
clients, validation errors, the models and status ops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from backend import PROJECT_ROOT
from backend.daemon.images import array_to_frame, frame_to_array
from backend.engines.job import StylizeJob
from stclient.errors import Cancelled, StyleTransferError
from stclient import registry
from stclient.registry import resolve_options

from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon

MAX_PIXELS = 1_000_000
CLIENT_TIMEOUT = 3.0
# A "long" job: AdaIN on a 320² content with a small style. The content's encoder and decoder run
# layer by layer (cancel is polled and progress reported after every convolution, at most ~0.1 s
# apart on an idle 2-core machine, ~0.6 s under heavy load): 1 s (idle) to 10 s (loaded) on CPU.
LONG_SIDE = 320
STYLE_SIDE = 48


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def daemon(models_dir):
    # one test queues 40 jobs from one connection: more than the default per-client cap
    with start_daemon(models_dir, extra_args=["--max-pixels", str(MAX_PIXELS),
                                              "--client-timeout", str(CLIENT_TIMEOUT),
                                              "--max-queue-per-client", "64",
                                              "--max-queue", "64"]) as handle:
        yield handle


@pytest.fixture(scope="module")
def runtime(models_dir):
    from backend.runtime import Runtime
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


def random_image(seed: int, height: int, width: int, channels: int = 3, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random((height, width, channels), dtype=np.float32)
    top = np.iinfo(dtype).max
    return rng.integers(0, top + 1, (height, width, channels), dtype=dtype)


def in_process(runtime, engine, content, model, options=None, styles=(), mask=None):
    job = StylizeJob(engine=engine, content=content, model=model, styles=list(styles),
                     mask=mask, options=resolve_options(engine, options or {}))
    return runtime.stylize(job)


def long_job_args(seed: int, side: int = LONG_SIDE):
    content = array_to_frame(random_image(seed, side, side))
    style = array_to_frame(random_image(seed + 1, STYLE_SIDE, STYLE_SIDE))
    return dict(content=content, engine="adain", model="adain", styles=[style])


# ------------------------------------------------------------------------------ exact results

@pytest.mark.parametrize("engine, model, shape, dtype, options", [
    ("cyclegan", "style_monet", (40, 48, 3), np.uint8, {}),
    ("pix2pix", "pix2pix_facades_label2photo", (36, 30, 4), np.uint16, {}),
    ("cyclegan", "style_monet", (33, 20, 1), np.float32, {"working_size": 24}),
])
def test_round_trip_equals_in_process_result_bit_for_bit(daemon, runtime, engine, model,
                                                         shape, dtype, options):
    content = random_image(1, *shape, dtype=dtype)
    with daemon.client() as client:
        frame, data = client.stylize(array_to_frame(content), engine, model, options)
    result = frame_to_array(frame)
    expected = in_process(runtime, engine, content, model, options)
    assert result.dtype == expected.dtype and result.shape == expected.shape == content.shape
    assert np.array_equal(result, expected)
    assert data["model"] == model and data["engine"] == engine


def test_adain_with_style_pixels_file_and_mask_equals_in_process(daemon, runtime, tmp_path):
    from backend import imageio
    content = random_image(2, 48, 40)
    style_a = random_image(3, 32, 36)
    style_b = random_image(4, 40, 30)
    style_file = tmp_path / "style_b.png"
    imageio.write_image(style_file, style_b)
    mask = np.zeros((48, 40, 1), np.uint8)
    mask[:, :20] = 255
    options = {"alpha": 0.7, "style_weights": [1.0, 1.0]}
    with daemon.client() as client:
        frame, _ = client.stylize(array_to_frame(content), "adain", "adain", options,
                                  styles=[array_to_frame(style_a)], style_paths=[style_file],
                                  mask=array_to_frame(mask))
    loaded_b = imageio.read_image(style_file).pixels
    expected = in_process(runtime, "adain", content, "adain", options, [style_a, loaded_b],
                          mask[:, :, 0].astype(np.float32) / 255.0)
    assert np.array_equal(frame_to_array(frame), expected)


# ------------------------------------------------------------------- progress, cancel, liveness

def test_progress_arrives_while_a_long_job_runs(daemon):
    seen: list[tuple[float, float, str]] = []
    with daemon.client() as client:
        client.stylize(**long_job_args(10),
                       on_progress=lambda f, t: seen.append((time.monotonic(), f, t)))
        finished = time.monotonic()
    assert len(seen) >= 3, seen
    assert finished - seen[0][0] > 0.2, "progress only came at the very end"
    fractions = [f for _, f, _ in seen]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert len({t for _, _, t in seen}) >= 2


@pytest.mark.parametrize("how", ["event", "by_id_from_another_client"])
def test_cancel_stops_a_running_job_within_a_second(daemon, how):
    started = threading.Event()
    cancel = threading.Event()
    outcome: dict = {}

    def computing(text: str) -> None:
        if text == "encoding content":     # past model loading: the layer-by-layer part
            started.set()

    def run():
        with daemon.client() as client:
            try:
                client.stylize(**long_job_args(20 + len(how)), request_id=f"long-{how}",
                               on_progress=lambda f, t: computing(t),
                               cancel_event=cancel if how == "event" else None)
                outcome["result"] = "finished"
            except StyleTransferError as error:
                outcome["error"] = error
            outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(60)
    asked = time.monotonic()
    if how == "event":
        cancel.set()
    else:
        with daemon.client() as other:
            assert other.cancel(f"long-{how}") == {"cancelled": 1}
    thread.join(30)
    assert isinstance(outcome.get("error"), Cancelled), outcome
    assert outcome["at"] - asked < 1.0
    with daemon.client() as client:
        assert client.status()["running"] is None


CLIENT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import backend, numpy as np
    from backend.daemon.images import array_to_frame
    from stclient.client import Client
    rng = np.random.default_rng(99)
    img = lambda side: array_to_frame(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    client = Client({endpoint!r}, autostart=False, runtime_dir={runtime_dir!r})
    client.stylize(img({side}), "adain", "adain", styles=[img({style_side})],
                   on_progress=lambda f, t: t == "encoding content" and print("progress",
                                                                             flush=True))
    print("finished", flush=True)
""")


def test_a_client_that_is_killed_mid_job_frees_the_worker(daemon):
    script = CLIENT_SCRIPT.format(root=str(PROJECT_ROOT), endpoint=daemon.endpoint,
                                  runtime_dir=str(daemon.runtime_dir), side=LONG_SIDE,
                                  style_side=STYLE_SIDE)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "progress", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)      # what GIMP does to a plug-in on Cancel
        killed = time.monotonic()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    with daemon.client() as client:
        while client.status()["running"] is not None:
            assert time.monotonic() - killed < 2.0, "the worker still runs the dead client's job"
            time.sleep(0.05)
        freed = time.monotonic()
        frame, _ = client.stylize(array_to_frame(random_image(5, 16, 16)), "cyclegan",
                                  "style_monet")
    assert frame.width == 16
    assert freed - killed < 2.0
    assert "went away" in daemon.log()


def test_a_silent_client_loses_its_jobs_after_the_client_timeout(daemon):
    """A client that stays connected but stops sending heartbeats (hung) is treated as gone: its
    running job is cancelled and its queued jobs are dropped. It sends more work than fits in
    the timeout, so the test does not depend on the machine's speed."""
    import zmq
    from stclient.protocol import StylizeRequest
    # 40 jobs of >= 0.3 s each even on an idle machine with the fast paths: far more than the
    # 3 s timeout, so the daemon must drop them rather than finish them.
    requests = [StylizeRequest(**long_job_args(40 + i)) for i in range(40)]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    ids = {request.id for request in requests}
    try:
        sent = time.monotonic()
        for request in requests:
            sock.send_multipart(request.to_frames())
        with daemon.client() as client:
            seen = False       # the status request may overtake the jobs (another connection)
            while True:
                status = client.status()
                busy = {job["id"] for job in status["queue"]}
                busy |= {status["running"]["id"]} if status["running"] else set()
                if busy & ids:
                    seen = True
                elif seen:
                    break
                assert time.monotonic() - sent < CLIENT_TIMEOUT + 8, status
                time.sleep(0.1)
    finally:
        sock.close(0)
    log = daemon.log()
    assert "silent for" in log
    assert sum(f"job {i} done" in log for i in ids) < len(ids)


def test_a_queued_job_can_be_cancelled_and_reports_its_place(daemon):
    first_running = threading.Event()
    outcome: dict = {}

    def long_job():
        with daemon.client() as client:
            try:
                client.stylize(**long_job_args(50),
                               on_progress=lambda f, t: first_running.set())
                outcome["first"] = "finished"
            except StyleTransferError as error:
                outcome["first"] = error

    thread = threading.Thread(target=long_job)
    thread.start()
    assert first_running.wait(60)
    texts: list[str] = []
    cancel = threading.Event()

    def queued(fraction: float, text: str) -> None:
        texts.append(text)
        if text.startswith("queued"):
            cancel.set()

    with daemon.client() as client:
        started = time.monotonic()
        with pytest.raises(Cancelled):
            client.stylize(array_to_frame(random_image(7, 16, 16)), "cyclegan", "style_monet",
                           on_progress=queued, cancel_event=cancel)
        assert time.monotonic() - started < 1.0
        assert texts[0] == "queued: 1 job(s) ahead"
        assert client.status()["running"] is not None       # the first job was not touched
    thread.join(60)
    assert outcome["first"] == "finished"


def test_a_job_past_its_deadline_is_stopped_with_a_timeout_error(daemon):
    with daemon.client() as client:
        started = time.monotonic()
        with pytest.raises(StyleTransferError) as caught:
            client.stylize(**long_job_args(60), deadline_s=0.1)
        assert caught.value.code == "timeout"
        assert time.monotonic() - started < 5.0
        assert client.status()["running"] is None


# ------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, code, words", [
    (dict(engine="cyclegan", model="no_such_model"), "unknown_model", "style_monet"),
    (dict(engine="cyclegan", model="adain"), "unknown_model", "adain model"),
    (dict(engine="cyclegan", model="apple2orange"), "model_missing", "install"),
    (dict(engine="adain", model="adain"), "bad_request", "style"),
    (dict(engine="adain", model="adain", options={"alpha": 1.5},
          style_paths=["/nonexistent/style.png"]), "bad_request", "alpha"),
    (dict(engine="adain", model="adain", style_paths=["/nonexistent/style.png"]),
     "bad_request", "does not exist"),
    (dict(engine="cyclegan", model="style_monet", options={"strength": 1}), "bad_request",
     "strength"),
    (dict(engine="warhol"), "bad_request", "engine"),
])
def test_invalid_requests_get_specific_errors(daemon, kwargs, code, words):
    with daemon.client() as client:
        with pytest.raises(StyleTransferError) as caught:
            client.stylize(array_to_frame(random_image(6, 8, 8)), **kwargs)
        assert caught.value.code == code
        assert words in caught.value.message
        assert client.status()["ready"]


def test_images_over_the_pixel_limit_are_refused_before_any_work(daemon):
    big = array_to_frame(np.zeros((1001, 1000, 3), np.uint8))
    with daemon.client() as client:
        with pytest.raises(StyleTransferError) as caught:
            client.stylize(big, "cyclegan", "style_monet")
        assert caught.value.code == "too_large"
        assert "--max-pixels" in caught.value.message
        assert client.status()["jobs_done"] >= 0


# ------------------------------------------------------------------------- models and status

def test_models_lists_every_model_with_options(daemon):
    with daemon.client() as client:
        listing = client.models()
    by_name = {m["name"]: m for m in listing["models"]}
    for name, engine in (("adain", "adain"), ("style_monet", "cyclegan"),
                         ("pix2pix_facades_label2photo", "pix2pix")):
        assert by_name[name]["installed"] is True
        assert by_name[name]["engine"] == engine
        assert by_name[name]["display_name"]
    assert by_name["apple2orange"]["installed"] is False
    assert by_name["apple2orange"]["install_hint"]
    alpha = {o["name"]: o for o in by_name["adain"]["options"]}["alpha"]
    assert (alpha["kind"], alpha["default"], alpha["minimum"], alpha["maximum"]) == \
        ("float", 1.0, 0.0, 1.0)
    assert set(listing["engines"]) == set(registry.engine_names())        # every card
    assert set(listing["engines"]) >= {"adain", "cyclegan", "pix2pix", "mixgan"}


def test_status_reports_device_memory_queue_and_runtime(daemon):
    with daemon.client() as client:
        status = client.status()
    assert status["pid"] == daemon.pid
    assert status["ready"] is True and status["device"].startswith("cpu")
    assert status["rss_bytes"] > 10 * 2**20
    assert status["queue"] == [] and status["running"] is None
    assert status["protocol"] == 1 and status["endpoint"] == daemon.endpoint
    assert isinstance(status["runtime"], dict)
    from stclient.status import DaemonStatus, format_status
    assert status["runtime"]["compile"] is False          # the default: eager networks
    shown = format_status(DaemonStatus.from_json(status)).splitlines()
    assert "runtime    compile: False" in shown
    # the native kernels: built for the tests (install.py), so in use; else the reason
    native = status["runtime"]["native_kernels"]
    assert native == "ready" or native.startswith(("unavailable", "not built", "disabled",
                                                   "building")), native
    assert f"runtime    native kernels: {native}" in shown
