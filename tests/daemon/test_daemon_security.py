"""Bind policy, CurveZMQ and the TCP token, over real sockets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import zmq
import zmq.auth

from backend import PROJECT_ROOT
from backend.daemon.security import is_local_endpoint
from stclient import paths
from stclient.client import Client
from stclient.errors import StyleTransferError
from stclient.protocol import StatusRequest, decode_reply, Error, Result

from tests.helpers.daemon import free_tcp_port, make_runtime_dir, start_daemon


def serve(runtime_dir, *args, timeout=120):
    env = dict(os.environ)
    env[paths.RUNTIME_DIR_ENV] = str(runtime_dir)
    return subprocess.run([sys.executable, "-m", "backend", "serve", "--foreground",
                           "--device", "cpu", *args], cwd=str(PROJECT_ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("endpoint, local", [
    ("ipc:///tmp/x.sock", True), ("tcp://127.0.0.1:5000", True), ("tcp://127.8.9.1:5000", True),
    ("tcp://[::1]:5000", True), ("tcp://localhost:5000", True), ("tcp://0.0.0.0:5000", False),
    ("tcp://*:5000", False), ("tcp://192.168.1.10:5000", False), ("tcp://eth0:5000", False),
    ("tcp://[::]:5000", False), ("tcp://example.org:5000", False),
])
def test_which_endpoints_count_as_local(endpoint, local):
    assert is_local_endpoint(endpoint) is local


@pytest.mark.parametrize("host", ["0.0.0.0", "*"])
def test_remote_bind_without_curve_keys_is_refused(host):
    directory = make_runtime_dir()
    result = serve(directory, "--endpoint", f"tcp://{host}:{free_tcp_port()}")
    assert result.returncode == 1
    assert "Refusing to listen" in result.stderr and "--curve-keys" in result.stderr
    assert paths.read_state(directory) is None


def run_keys(directory, *clients):
    subprocess.run([sys.executable, "-m", "backend", "keys", str(directory),
                    *[f"--client={c}" for c in clients]], cwd=str(PROJECT_ROOT), check=True,
                   capture_output=True)


def test_curve_admits_allowed_keys_only(tmp_path):
    keys = tmp_path / "keys"
    run_keys(keys, "good")
    stranger = tmp_path / "stranger"            # a valid key pair the daemon does not know
    stranger.mkdir()
    zmq.auth.create_certificates(str(stranger), "client")
    (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())
    port = free_tcp_port()
    with start_daemon(None, endpoint=f"tcp://0.0.0.0:{port}",
                      extra_args=["--curve-keys", str(keys)]) as daemon:
        endpoint = f"tcp://127.0.0.1:{port}"
        with Client(endpoint, autostart=False, timeout=10, runtime_dir=str(daemon.runtime_dir),
                    curve_keys=str(keys / "client-good")) as good:
            assert good.status()["pid"] == daemon.pid
        bad = Client(endpoint, autostart=False, timeout=5, runtime_dir=str(daemon.runtime_dir),
                     curve_keys=str(stranger))
        with pytest.raises(StyleTransferError) as caught:
            bad.status()
        bad.close()
        assert caught.value.code == "unauthorized", caught.value.message
        plain = Client(endpoint, autostart=False, timeout=3, runtime_dir=str(daemon.runtime_dir))
        with pytest.raises(StyleTransferError):
            plain.status()                       # no CURVE at all: the handshake never completes
        plain.close()


def raw_status(endpoint: str, token, password=None, wait_ms: int = 10000):
    """A status request from a bare DEALER; `password` None: no PLAIN credentials at all.
    Returns the decoded reply, or None when nothing came back within `wait_ms`."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if password is not None:
        sock.plain_username = paths.PLAIN_USER.encode()
        sock.plain_password = password.encode()
    sock.connect(endpoint)
    try:
        sock.send_multipart(StatusRequest(id="raw", token=token).to_frames())
        if not sock.poll(wait_ms):
            return None
        return decode_reply(sock.recv_multipart())
    finally:
        sock.close(0)


def test_tcp_requests_need_the_users_token():
    port = free_tcp_port()
    with start_daemon(None, endpoint=f"tcp://127.0.0.1:{port}") as daemon:
        token_file = paths.token_path(daemon.runtime_dir)
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = daemon.token
        assert token and len(token) == 64
        # Without the token as the handshake's password nothing gets through at all.
        for wrong in (None, "0" * 64, token[:-1], token + "x"):
            assert raw_status(daemon.endpoint, token, password=wrong, wait_ms=1500) is None, wrong
        # Past the handshake, the request's own token is still checked.
        for wrong in (None, "", "0" * 64, token[:-1], token + "x"):
            reply = raw_status(daemon.endpoint, wrong, password=token)
            assert isinstance(reply, Error) and reply.code == "unauthorized", wrong
        assert isinstance(raw_status(daemon.endpoint, token, password=token), Result)
        with daemon.client(token="wrong") as client:
            with pytest.raises(StyleTransferError) as caught:
                client.status()
            assert caught.value.code == "unauthorized"
            assert "rejected this client's token" in caught.value.message
        with daemon.client() as client:                 # reads the token file itself
            assert client.status()["pid"] == daemon.pid


def test_runtime_dir_is_private(tmp_path):
    directory = tmp_path / "rt"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    paths.ensure_runtime_dir(directory)
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    link = tmp_path / "link"
    link.symlink_to(directory)
    with pytest.raises(StyleTransferError):
        paths.ensure_runtime_dir(link)
