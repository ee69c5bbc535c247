"""The plug-in's background calls (stgimp/background.py: what keeps dialogs and previews from
blocking) against a real daemon: results arrive on the "UI" side, a newer preview supersedes and
cancels the older one in the daemon, Stop cancels it there, errors arrive as errors."""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend.daemon.images import array_to_frame
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugin" / "style_transfer"))
from stgimp.background import Background  # noqa: E402

STYLE = array_to_frame(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with start_daemon(make_models_dir(tmp_path_factory.mktemp("models"))) as handle:
        yield handle


class MainLoop:
    """Stands in for GLib.idle_add: deliveries wait in a queue until the test runs them."""

    def __init__(self) -> None:
        self.queue: "queue.Queue" = queue.Queue()

    def deliver(self, function, *args) -> None:
        self.queue.put((function, args))

    def run_until(self, condition, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            try:
                function, args = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("nothing arrived in time") from None
            function(*args)


def picture(side: int):
    rng = np.random.default_rng(side)
    return array_to_frame(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def stylize(side: int):
    def work(client, cancel):
        return client.stylize(picture(side), "adain", styles=[STYLE], cancel_event=cancel)
    return work


def wait_running(daemon, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while not (client.status().get("running") or {}).get("running_s"):
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)


def wait_idle(daemon, timeout: float = 30.0) -> float:
    started = time.monotonic()
    with daemon.client() as client:
        while client.status().get("running") is not None:
            assert time.monotonic() - started < timeout, "the daemon kept the job"
            time.sleep(0.05)
    return time.monotonic() - started


def test_results_arrive_on_the_ui_side_and_nothing_is_left_pending(daemon):
    loop = MainLoop()
    calls = Background(lambda: daemon.client(), deliver=loop.deliver)
    got, main = [], threading.current_thread()
    calls.start("models", lambda client, cancel: client.models()["models"],
                lambda models: got.append((threading.current_thread(), models)), got.append)
    assert calls.pending() == {"models"}
    loop.run_until(lambda: got)
    thread, models = got[0]
    assert thread is main and {m["name"] for m in models} >= {"adain", "style_monet"}
    assert calls.pending() == set()


def test_a_newer_preview_cancels_the_older_in_the_daemon(daemon):
    loop = MainLoop()
    calls = Background(lambda: daemon.client(), deliver=loop.deliver)
    done, failed = [], []
    calls.start("preview", stylize(768), lambda r: done.append("big"), failed.append)
    wait_running(daemon)                                   # the big one is running
    calls.restart("preview", stylize(64), lambda reply: done.append(reply[0].width),
                  failed.append)
    loop.run_until(lambda: done or failed)
    assert done == [64] and not failed, (done, failed)
    assert wait_idle(daemon) < 15


def test_stop_cancels_the_daemons_job_and_reports_nothing(daemon):
    loop = MainLoop()
    calls = Background(lambda: daemon.client(), deliver=loop.deliver)
    done, failed = [], []
    call = calls.start("preview", stylize(768), done.append, failed.append)
    wait_running(daemon)
    stopped = time.monotonic()
    assert calls.cancel("preview") and calls.pending() == set()
    freed = wait_idle(daemon)
    loop.run_until(call.done.is_set)
    assert done == [] and failed == []
    print(f"\npreview stopped: the daemon was free {freed:.2f} s after Stop "
          f"({time.monotonic() - stopped:.2f} s until the thread ended)")
    assert freed < 10


def test_errors_arrive_as_errors(daemon):
    loop = MainLoop()
    calls = Background(lambda: daemon.client(), deliver=loop.deliver)
    failed = []

    def work(client, cancel):
        return client.stylize(picture(32), "cyclegan", model="no_such_model")

    calls.start("preview", work, lambda reply: None, failed.append)
    loop.run_until(lambda: failed)
    assert failed[0].code == "unknown_model" and "no_such_model" in failed[0].message
