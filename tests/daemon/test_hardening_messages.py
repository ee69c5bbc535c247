"""Hardening (issue 16): the smaller findings, through a real daemon over its real socket —
refused pickles without torch's advice, huge numbers and lone surrogates as bad_request with the
request id, error replies that carry every readable id, and a burst of connects."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from backend.daemon.images import array_to_frame
from stclient import PROTOCOL_VERSION
from stclient.errors import StyleTransferError
from stclient.protocol import Error, decode_reply

from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon
from tests.helpers.hostile import pickle_checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("messages")
    models = Path(make_models_dir(base / "models"))
    marker = base / "PICKLE_RAN"
    pickle_checkpoint(models / "evil.pth", marker)
    (models / "evil.json").write_text(json.dumps({"engine": "cyclegan"}))
    return dict(models=models, marker=marker)


@pytest.fixture(scope="module")
def daemon(world):
    with start_daemon(world["models"]) as handle:
        yield handle


def send_raw(daemon, frames: list[bytes], wait_s: float = 10.0):
    """One message from a bare DEALER; its first final reply."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    try:
        sock.send_multipart(frames)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if sock.poll(100):
                reply = decode_reply(sock.recv_multipart())
                if type(reply).__name__ in ("Result", "Error"):
                    return reply
        raise AssertionError("no reply")
    finally:
        sock.close(0)


def stylize_header(rid: str, **fields) -> dict:
    header = {"v": PROTOCOL_VERSION, "id": rid, "op": "stylize", "engine": "cyclegan",
              "model": "style_monet", "content": {"width": 4, "height": 4, "channels": 3,
                                                  "dtype": "uint8"}}
    header.update(fields)
    return header


def raw_json(header: dict) -> bytes:
    return json.dumps(header).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------- refused pickles, no advice

def test_a_pickle_checkpoint_is_refused_without_torchs_advice(daemon, world):
    with daemon.client() as client:
        with pytest.raises(StyleTransferError) as caught:
            client.stylize(array_to_frame(np.zeros((8, 8, 3), np.uint8)), "cyclegan", "evil")
    assert caught.value.code == "bad_checkpoint", caught.value.message
    assert "weights_only" not in caught.value.message
    assert "nothing in it was run" in caught.value.message
    assert not world["marker"].exists(), "the pickle ran"


# ---------------------------------------------------- numbers and text no field can hold

HUGE = "1" + "0" * 400


@pytest.mark.parametrize("text", [
    '"deadline_s": ' + HUGE,
    '"deadline_s": 1e400',
    '"options": {"working_size": ' + HUGE + '}',
    '"options": {"working_size": -' + HUGE + '}',
    '"content": {"width": ' + HUGE + ', "height": 4, "channels": 3, "dtype": "uint8"}',
])
def test_huge_numbers_are_bad_requests_with_the_id(daemon, text):
    header = raw_json(stylize_header("huge"))[:-1] + b", " + text.encode() + b"}"
    reply = send_raw(daemon, [header, bytes(48)])
    assert isinstance(reply, Error) and reply.code == "bad_request", reply
    assert reply.id == "huge"


def test_adain_alpha_of_a_huge_integer_is_a_bad_request(daemon):
    header = stylize_header("alpha", engine="adain", model="adain",
                            styles=[{"width": 4, "height": 4, "channels": 3, "dtype": "uint8"}])
    text = raw_json(header)[:-1] + b', "options": {"alpha": ' + HUGE.encode() + b"}}"
    reply = send_raw(daemon, [text, bytes(48), bytes(48)])
    assert isinstance(reply, Error) and (reply.code, reply.id) == ("bad_request", "alpha")


@pytest.mark.parametrize("field, value", [
    ("style_paths", ["/tmp/x\ud800.png"]), ("model", "m\udfff"), ("engine", "\ud800"),
    ("options", {"\ud800": 1}),
])
def test_lone_surrogates_are_bad_requests_with_the_id(daemon, field, value):
    reply = send_raw(daemon, [raw_json(stylize_header("sur", **{field: value})), bytes(48)])
    assert isinstance(reply, Error) and (reply.code, reply.id) == ("bad_request", "sur"), reply


def test_an_unusable_id_is_answered_with_an_empty_id(daemon):
    for rid in ("x\ud800", "x" * 129):
        reply = send_raw(daemon, [raw_json(stylize_header(rid)), bytes(48)])
        assert isinstance(reply, Error) and (reply.code, reply.id) == ("bad_request", ""), reply


def test_too_many_frames_are_refused_with_the_id(daemon):
    reply = send_raw(daemon, [raw_json(stylize_header("frames")), *[b"x"] * 30])
    assert isinstance(reply, Error) and (reply.code, reply.id) == ("bad_request", "frames")


def test_the_daemon_serves_on_after_all_that(daemon):
    with daemon.client() as client:
        frame, _ = client.stylize(array_to_frame(np.zeros((8, 8, 3), np.uint8)), "cyclegan",
                                  "style_monet")
    assert frame.width == 8


# ---------------------------------------------------------------------- a burst of connects

def test_a_burst_of_300_connects_is_not_refused(daemon):
    path = daemon.endpoint[len("ipc://"):]
    socks, refused = [], 0
    try:
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except (BlockingIOError, ConnectionRefusedError, OSError):
                refused += 1
            socks.append(sock)
    finally:
        for sock in socks:
            sock.close()
    assert refused == 0, f"{refused} of 300 connects refused"
    with daemon.client() as client:
        assert client.status()["pid"] == daemon.pid
