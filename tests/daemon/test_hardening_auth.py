"""Hardening (issue 16): who gets past the daemon's door, and how much they can make it hold.
Real daemon processes and sockets; another local user is a second uid (tests skip without root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq

from backend import PROJECT_ROOT
from backend.daemon.images import array_to_frame
from stclient import paths
from stclient.client import Client
from stclient.errors import StyleTransferError
from stclient.protocol import Error, Progress, StylizeRequest, decode_reply

from tests.helpers.batch_folders import make_plain_folder
from tests.helpers.daemon import free_tcp_port, start_daemon
from tests.helpers.otheruser import other_user, run_as, start_as

# As the other user: a status and a batch (whose output folder must never appear), with no
# credentials and with a guessed token; prints what came back.
INTRUDER = """
context = zmq.Context()
got = []
for password in (None, "0" * 64):
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    if password:
        sock.plain_username = b"style-transfer"
        sock.plain_password = password.encode()
    sock.connect(values["endpoint"])
    sock.send_multipart(protocol.StatusRequest(id="s").to_frames())
    sock.send_multipart(protocol.BatchRequest(id="b", spec=values["spec"]).to_frames())
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if sock.poll(100):
            reply = decode_reply(sock.recv_multipart())
            got.append([reply.id, type(reply).__name__, getattr(reply, "code", "")])
    sock.close(0)
print(json.dumps(got))
"""


def shared_folder(prefix: str) -> Path:
    """A folder every user may enter (the other user's files go there)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(folder, 0o777)
    return folder


def intruder_spec(folder: Path) -> tuple[dict, Path]:
    inp = folder / "in"
    make_plain_folder(inp, 1, 16)
    marker = folder / "WRITTEN_BY_INTRUDER"
    return {"input_dir": str(inp), "output_dir": str(marker), "engine": "cyclegan",
            "model": "style_monet"}, marker


# ------------------------------------------------------ 5. ipc outside the runtime folder

def test_abstract_ipc_socket_requires_the_token(models_dir):
    user = other_user()
    folder = shared_folder("st-abstract-")
    try:
        spec, marker = intruder_spec(folder)
        endpoint = f"ipc://@st-hardening-{uuid.uuid4().hex[:12]}"
        with start_daemon(models_dir, endpoint=endpoint) as daemon:
            got = run_as(user, INTRUDER, endpoint=endpoint, spec=spec)
            assert got == [], got                    # not even an error: the handshake failed
            with daemon.client() as client:          # the owner has the token and gets in
                assert client.status()["pid"] == daemon.pid
                client.batch(spec)
            assert marker.is_dir()                   # the same batch works for the owner
            shutil.rmtree(marker)
            assert run_as(user, INTRUDER, endpoint=endpoint, spec=spec) == []
            assert not marker.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_ipc_socket_outside_the_runtime_dir_is_0600_and_requires_the_token(models_dir):
    user = other_user()
    folder = shared_folder("st-open-")
    try:
        spec, marker = intruder_spec(folder)
        socket_file = folder / "daemon.sock"
        previous = os.umask(0)                      # the daemon inherits umask 000
        try:
            daemon = start_daemon(models_dir, endpoint=f"ipc://{socket_file}")
        finally:
            os.umask(previous)
        with daemon:
            assert oct(socket_file.stat().st_mode & 0o777) == "0o600"
            assert run_as(user, INTRUDER, endpoint=daemon.endpoint, spec=spec) == []
            os.chmod(socket_file, 0o666)            # even if the file were open to all
            assert run_as(user, INTRUDER, endpoint=daemon.endpoint, spec=spec) == []
            assert not marker.exists()
            with daemon.client() as client:
                assert client.status()["pid"] == daemon.pid
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------- 7. memory before authentication

BIG_SENDER = """
context = zmq.Context()
payload = bytearray(values["size"])
socks = []
for password in (None, "0" * 64):
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.sndtimeo = 2000
    if password:
        sock.plain_username = b"style-transfer"
        sock.plain_password = password.encode()
    sock.connect(values["endpoint"])
    header = protocol.StatusRequest(id="big").to_frames()[0]
    for _ in range(2):
        try:
            sock.send_multipart([header, payload], copy=False)
        except zmq.Again:
            pass
    socks.append(sock)
time.sleep(values["hold"])
print(json.dumps("sent"))
"""


def test_unauthenticated_peers_cannot_make_the_daemon_buffer_large_frames():
    user = other_user()
    port = free_tcp_port()
    with start_daemon(None, endpoint=f"tcp://127.0.0.1:{port}") as daemon:   # 1 GiB frames
        before = daemon.rss()
        peak = [before]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], daemon.rss())
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            run_as(user, BIG_SENDER, endpoint=daemon.endpoint, size=900 << 20, hold=3.0)
        finally:
            done.set()
            watcher.join()
        assert peak[0] - before < 64 << 20, f"+{(peak[0] - before) >> 20} MiB before any " \
                                            "authentication"
        with daemon.client() as client:
            assert client.status()["pid"] == daemon.pid


# ------------------------------------------------------------------------- 7. queue caps

def test_per_client_and_global_queue_caps_answer_busy(models_dir):
    rng = np.random.default_rng(7)
    content = array_to_frame(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8))
    style = array_to_frame(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    with start_daemon(models_dir, extra_args=["--max-queue-per-client", "3",
                                              "--max-queue", "4"]) as daemon:
        context = zmq.Context.instance()
        socks = [context.socket(zmq.DEALER) for _ in range(2)]
        first: dict[str, object] = {}
        try:
            for sock in socks:
                sock.linger = 0
                sock.connect(daemon.endpoint)
            def send(sock, rids):
                for rid in rids:
                    sock.send_multipart(StylizeRequest(
                        id=rid, engine="adain", model="adain", content=content,
                        styles=[style]).to_frames())

            def collect(wanted):
                deadline = time.monotonic() + 60      # a0 runs: its first progress comes last
                while time.monotonic() < deadline and not set(wanted) <= set(first):
                    for sock in socks:
                        while sock.poll(50):
                            reply = decode_reply(sock.recv_multipart())
                            if reply.id and reply.id not in first:
                                first[reply.id] = reply

            send(socks[0], [f"a{i}" for i in range(6)])
            collect([f"a{i}" for i in range(1, 6)])
            send(socks[1], ["b0", "b1"])              # another client: the global cap
            collect([f"a{i}" for i in range(6)] + ["b0", "b1"])
            busy = sorted(rid for rid, reply in first.items()
                          if isinstance(reply, Error) and reply.code == "busy")
            accepted = sorted(rid for rid, reply in first.items() if isinstance(reply, Progress))
            assert busy == ["a3", "a4", "a5", "b1"], first
            assert accepted == ["a0", "a1", "a2", "b0"], first
            assert "wait for one to finish" in first["a3"].message
            assert "jobs queued or running" in first["b1"].message
        finally:
            for sock in socks:
                sock.close(0)
        with daemon.client() as client:             # the dropped connections free the queue
            deadline = time.monotonic() + 30
            while client.status()["running"] or client.status()["queue"]:
                assert time.monotonic() < deadline
                time.sleep(0.2)


# ------------------------------------------------- 6. a runtime folder the client does not own

SQUATTER = """
folder = values["folder"]
os.makedirs(folder, mode=0o755)
os.chmod(folder, 0o755)
endpoint = "ipc://" + os.path.join(folder, "daemon.sock")
context = zmq.Context()
router = context.socket(zmq.ROUTER)
router.bind(endpoint)
os.chmod(os.path.join(folder, "daemon.sock"), 0o777)
with open(os.path.join(folder, "state.json"), "w") as handle:
    json.dump({"endpoint": endpoint, "pid": os.getpid(), "ready": True, "protocol": 1}, handle)
print("ready", flush=True)
while True:
    frames = router.recv_multipart()
    with open(values["marker"], "ab") as handle:     # the victim's request, pixels and all
        handle.write(b"".join(frames[1:]))
"""


def test_clients_refuse_a_runtime_dir_another_user_made_first(tmp_path):
    user = other_user()
    base = shared_folder("st-squat-")
    squatted = base / f"style-transfer-{os.getuid()}"       # the name without XDG_RUNTIME_DIR
    marker = base / "VICTIM_IMAGES"
    squatter = start_as(user, SQUATTER, folder=str(squatted), marker=str(marker))
    try:
        assert squatter.stdout.readline().strip() == "ready", squatter.stderr.read()
        env = {k: v for k, v in os.environ.items()
               if k not in (paths.RUNTIME_DIR_ENV, "XDG_RUNTIME_DIR")}
        env["TMPDIR"] = str(base)
        make_plain_folder(tmp_path / "in", 1, 16)
        for args in (["status"], ["batch", str(tmp_path / "in"), str(tmp_path / "out"),
                                  "--engine", "cyclegan"]):
            result = subprocess.run([sys.executable, "-m", "backend", *args], env=env,
                                    cwd=str(PROJECT_ROOT), capture_output=True, text=True,
                                    timeout=120)
            assert result.returncode != 0
            assert "belongs to another user" in result.stderr, result.stderr
            assert str(squatted) in result.stderr
        with pytest.raises(StyleTransferError) as caught:      # the plug-in's Client() too
            Client(runtime_dir=str(squatted))
        assert caught.value.code == "unavailable"
        assert "STYLE_TRANSFER_RUNTIME_DIR" in caught.value.message
        time.sleep(0.5)
        assert not marker.exists(), "the other user's fake daemon received a request"
    finally:
        squatter.kill()
        squatter.wait(10)
        shutil.rmtree(base, ignore_errors=True)
