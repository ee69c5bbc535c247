"""serve / status / stop from the command line, single instance, detaching and auto-start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from backend import PROJECT_ROOT
from backend.daemon.images import array_to_frame
from stclient import paths
from stclient.client import Client
from stclient.errors import StyleTransferError

from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import make_runtime_dir, start_daemon


def cli(runtime_dir, *args, timeout=180):
    env = dict(os.environ)
    env[paths.RUNTIME_DIR_ENV] = str(runtime_dir)
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=str(PROJECT_ROOT),
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def runtime_dir():
    directory = make_runtime_dir()
    yield directory
    state = paths.read_state(directory)
    if state and paths.pid_alive(state.get("pid")):       # never leave a daemon behind
        os.kill(state["pid"], 15)
    shutil.rmtree(directory, ignore_errors=True)


def test_serve_twice_says_a_daemon_is_already_running(runtime_dir):
    with start_daemon(None, runtime_dir=runtime_dir) as daemon:
        for extra in (["--foreground"], []):
            result = cli(runtime_dir, "serve", "--device", "cpu", *extra, "--endpoint",
                         f"ipc://{runtime_dir}/other.sock")
            assert result.returncode == 1, result
            assert "already running" in result.stderr
            assert daemon.endpoint in result.stderr and str(daemon.pid) in result.stderr
        with daemon.client() as client:
            assert client.status()["pid"] == daemon.pid


def test_detached_serve_status_and_stop(runtime_dir):
    started = cli(runtime_dir, "serve", "--device", "cpu")
    assert started.returncode == 0, started.stderr
    assert "daemon started" in started.stdout
    state = paths.read_state(runtime_dir)
    pid = state["pid"]
    assert paths.pid_alive(pid) and state["ready"] is True
    assert os.getsid(pid) != os.getsid(0), "the daemon must run in its own session"
    assert state["endpoint"] == f"ipc://{paths.socket_path(runtime_dir)}"

    status = cli(runtime_dir, "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {pid}" in status.stdout and "device" in status.stdout
    as_json = json.loads(cli(runtime_dir, "status", "--json").stdout)
    assert as_json["pid"] == pid and as_json["ready"] is True

    stopped = cli(runtime_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not paths.pid_alive(pid)
    assert paths.read_state(runtime_dir) is None
    assert not paths.socket_path(runtime_dir).exists()
    assert paths.log_path(runtime_dir).read_text().strip()       # the rotating log was used
    gone = cli(runtime_dir, "status", "--timeout", "2")
    assert gone.returncode == 1 and "No daemon is running" in gone.stderr
    assert "python -m backend serve" in gone.stderr
    assert cli(runtime_dir, "stop", "--timeout", "2").returncode == 0


def test_stop_cancels_the_running_job_and_exits_cleanly(runtime_dir, tmp_path):
    models = make_models_dir(tmp_path / "models")
    with start_daemon(models, runtime_dir=runtime_dir) as daemon:
        rng = np.random.default_rng(3)
        # long enough (several seconds even on an idle machine) for `stop` to arrive mid-job
        content = array_to_frame(rng.integers(0, 256, (768, 768, 3), dtype=np.uint8))
        style = array_to_frame(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        started = threading.Event()
        outcome = {}

        def run():
            try:
                with daemon.client() as client:
                    client.stylize(content, "adain", "adain", styles=[style],
                                   on_progress=lambda f, t: started.set())
                outcome["finished"] = True
            except StyleTransferError as error:
                outcome["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(60)
        stopped = cli(runtime_dir, "stop")
        thread.join(30)
        assert stopped.returncode == 0, stopped.stderr
        assert outcome.get("error") is not None and outcome["error"].code == "cancelled"
        assert daemon.process.wait(10) == 0


def test_client_auto_starts_a_detached_daemon(runtime_dir):
    client = Client(autostart=True, runtime_dir=str(runtime_dir), timeout=30,
                    serve_args=["--device", "cpu"])
    try:
        status = client.status()
        pid = status["pid"]
        assert os.getsid(pid) != os.getsid(0)
        assert status["endpoint"] == f"ipc://{paths.socket_path(runtime_dir)}"
        again = Client(autostart=True, runtime_dir=str(runtime_dir))   # finds it, no second one
        assert again.status()["pid"] == pid
        again.close()
        client.shutdown()
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while paths.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not paths.pid_alive(pid)


def test_auto_start_failure_names_the_log(runtime_dir, tmp_path):
    client = Client(autostart=True, runtime_dir=str(runtime_dir), timeout=2,
                    project_root=str(tmp_path), start_timeout=20)   # no backend there
    with pytest.raises(StyleTransferError) as caught:
        client.status()
    client.close()
    assert caught.value.code == "unavailable"
    assert str(paths.log_path(runtime_dir)) in caught.value.message
    assert "No module named" in caught.value.message or "backend" in caught.value.message
