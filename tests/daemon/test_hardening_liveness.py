"""Hardening (issue 16): a client notices a dead or frozen daemon within seconds, says what
happened and what happens next, and its next call starts the daemon again. Real daemon
processes, real sockets, kill -9 and SIGSTOP."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np

from backend.daemon.images import array_to_frame
from stclient import paths
from stclient.client import Client
from stclient.errors import StyleTransferError

from tests.helpers.daemon import make_runtime_dir, start_daemon


def long_job(client: Client, started: threading.Event, outcome: dict) -> None:
    rng = np.random.default_rng(11)
    content = array_to_frame(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    style = array_to_frame(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    try:
        client.stylize(content, "adain", "adain", styles=[style],
                       on_progress=lambda f, t: t == "encoding content" and started.set())
        outcome["finished"] = True
    except StyleTransferError as error:
        outcome["error"] = error
    outcome["at"] = time.monotonic()


def run_until_started(client: Client) -> tuple[threading.Thread, dict]:
    started, outcome = threading.Event(), {}
    thread = threading.Thread(target=long_job, args=(client, started, outcome))
    thread.start()
    assert started.wait(120), outcome
    return thread, outcome


def test_a_killed_daemon_is_noticed_at_once_and_started_again(models_dir):
    runtime_dir = make_runtime_dir()
    daemon = start_daemon(models_dir, runtime_dir=runtime_dir)
    client = Client(daemon.endpoint, autostart=True, timeout=30, runtime_dir=str(runtime_dir),
                    serve_args=["--device", "cpu", "--threads", "1", "--models-dir",
                                str(models_dir)])
    new_pid = None
    try:
        thread, outcome = run_until_started(client)
        os.kill(daemon.pid, signal.SIGKILL)
        killed = time.monotonic()
        thread.join(40)
        error = outcome.get("error")
        assert error is not None and error.code == "unavailable", outcome
        assert outcome["at"] - killed < 3.0, f"noticed after {outcome['at'] - killed:.1f} s"
        assert "stopped unexpectedly" in error.message
        assert str(paths.log_path(runtime_dir)) in error.message
        assert "the next run starts it again" in error.message
        status = client.status()                         # the same Client starts a new one
        new_pid = status["pid"]
        assert new_pid != daemon.pid and status["ready"]
    finally:
        client.close()
        if new_pid is None:
            new_pid = (paths.read_state(runtime_dir) or {}).get("pid")
        if new_pid and new_pid != daemon.pid and paths.pid_alive(new_pid):
            os.kill(new_pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while paths.pid_alive(new_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        daemon.stop()


def test_a_frozen_daemon_is_noticed_within_seconds(models_dir):
    with start_daemon(models_dir) as daemon:
        client = daemon.client(timeout=30)
        thread, outcome = run_until_started(client)
        os.kill(daemon.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            thread.join(40)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        error = outcome.get("error")
        assert error is not None and error.code == "unavailable", outcome
        assert outcome["at"] - stopped < 4.5, f"noticed after {outcome['at'] - stopped:.1f} s"
        assert "stopped answering" in error.message and str(daemon.pid) in error.message
        with daemon.client() as again:                  # it runs on once it is continued
            deadline = time.monotonic() + 30
            while again.status()["running"] is not None:
                assert time.monotonic() < deadline
                time.sleep(0.2)
