"""Thousands of malformed messages over a real socket: each gets exactly one error reply, and the
daemon keeps answering afterwards. Seeded, so a failure reproduces."""

from __future__ import annotations

import json
import random
import time

import pytest
import zmq

from stclient import PROTOCOL_VERSION
from stclient.protocol import Error, StatusRequest, decode_reply

from tests.helpers.daemon import start_daemon

MESSAGES = 3000
SEED = 20261127


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    models = tmp_path_factory.mktemp("models-empty")     # no model: nothing valid can run
    with start_daemon(models, extra_args=["--max-pixels", "100000"]) as handle:
        yield handle


def image(w=4, h=3, c=3, dtype="uint8"):
    return {"width": w, "height": h, "channels": c, "dtype": dtype}


def base_stylize(rid: str) -> dict:
    return {"v": PROTOCOL_VERSION, "id": rid, "op": "stylize", "engine": "cyclegan",
            "model": "no_such_model", "content": image(), "styles": [], "mask": None}


def malformed(rng: random.Random, index: int) -> tuple[list[bytes], str]:
    """One malformed message and the request id its error must carry ("" if unreadable)."""
    rid = f"fuzz-{index}"
    kind = rng.randrange(14)
    good_pixels = bytes(4 * 3 * 3)
    if kind == 0:     # binary garbage header
        return [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))], ""
    if kind == 1:     # truncated JSON
        text = json.dumps(base_stylize(rid)).encode()
        return [text[:rng.randrange(1, len(text) - 1)], good_pixels], ""
    if kind == 2:     # JSON that is not an object
        return [json.dumps(rng.choice([[], 1, "x", None, [base_stylize(rid)]])).encode()], ""
    if kind == 3:     # unknown op
        return [json.dumps({"v": PROTOCOL_VERSION, "id": rid,
                            "op": rng.choice(["", "eval", "STATUS", "pickle", 7])}).encode()], rid
    if kind == 4:     # wrong version or missing version
        header = base_stylize(rid)
        header["v"] = rng.choice([0, 2, "1", None, 1.5])
        return [json.dumps(header).encode(), good_pixels], rid
    if kind == 5:     # wrong types in fields
        header = base_stylize(rid)
        key = rng.choice(["engine", "model", "options", "styles", "style_paths", "mask",
                          "deadline_s"])
        header[key] = rng.choice([5, [1], {"a": 1}, "x", True, -3.0])
        return [json.dumps(header).encode(), good_pixels], rid
    if kind == 6:     # missing frame
        return [json.dumps(base_stylize(rid)).encode()], rid
    if kind == 7:     # extra frames
        return [json.dumps(base_stylize(rid)).encode(), good_pixels,
                *[b"x" * rng.randrange(5)] * rng.randrange(1, 4)], rid
    if kind == 8:     # byte length off by one (either way)
        return [json.dumps(base_stylize(rid)).encode(),
                bytes(len(good_pixels) + rng.choice([-1, 1]))], rid
    if kind == 9:     # giant dimensions (declared, not sent)
        header = base_stylize(rid)
        header["content"] = image(rng.choice([10 ** 6, 2 ** 31, 50000]),
                                  rng.choice([10 ** 6, 2 ** 31, 50000]))
        return [json.dumps(header).encode(), good_pixels], rid
    if kind == 10:    # bad image descriptions
        header = base_stylize(rid)
        header["content"] = rng.choice([image(c=0), image(c=9), image(w=-1), image(w=0),
                                        image(dtype="float64"), image(dtype=None),
                                        {"width": 4}, [4, 3, 3], image(w=4.0)])
        return [json.dumps(header).encode(), good_pixels], rid
    if kind == 11:    # semantic: unknown engine/option/model with valid structure
        header = base_stylize(rid)
        choice = rng.randrange(3)
        if choice == 0:
            header["engine"] = "deepdream"
        elif choice == 1:
            header["options"] = {"working_size": rng.choice([-5, 10 ** 9, "big", None])}
        else:
            header["options"] = {"no_such_option": 1}
        return [json.dumps(header).encode(), good_pixels], rid
    if kind == 12:    # cancel / sample / batch with bad fields
        op = rng.choice(["cancel", "sample", "batch"])
        header = {"v": PROTOCOL_VERSION, "id": rid, "op": op}
        if op == "sample":
            header.update(count=rng.choice([0, -1, 10 ** 6, "3"]), model="no_such_model")
        elif op == "batch":
            header["spec"] = rng.choice([None, [], {"input_dir": "relative"},
                                         {"input_dir": "/a", "output_dir": "/b",
                                          "engine": "nope"}])
            if header["spec"] is None:
                del header["spec"]
        return [json.dumps(header).encode()], rid
    # kind 13: huge header of nested JSON, or a valid status with a stray binary frame
    if rng.random() < 0.5:
        return [b"[" * 100000 + b"]" * 100000], ""
    return [StatusRequest(id=rid).to_frames()[0], b"\x00\x01"], rid


def test_thousands_of_malformed_messages_get_errors_and_the_daemon_survives(daemon):
    rng = random.Random(SEED)
    context = zmq.Context.instance()
    sockets = [context.socket(zmq.DEALER) for _ in range(4)]
    for sock in sockets:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(daemon.endpoint)
    expected: dict[int, list[str]] = {i: [] for i in range(len(sockets))}
    replies: dict[int, list] = {i: [] for i in range(len(sockets))}
    started = time.monotonic()
    try:
        for index in range(MESSAGES):
            frames, rid = malformed(rng, index)
            which = index % len(sockets)
            sockets[which].send_multipart(frames)
            expected[which].append(rid)
            if index % 50 == 49:            # drain a little so nothing piles up
                for i, sock in enumerate(sockets):
                    while sock.poll(0):
                        replies[i].append(decode_reply(sock.recv_multipart()))
        deadline = time.monotonic() + 60
        while (sum(map(len, replies.values())) < MESSAGES and time.monotonic() < deadline):
            for i, sock in enumerate(sockets):
                while sock.poll(10):
                    replies[i].append(decode_reply(sock.recv_multipart()))
        for i in range(len(sockets)):
            assert len(replies[i]) == len(expected[i]), "some message got no (or two) replies"
            for reply, rid in zip(replies[i], expected[i]):
                assert isinstance(reply, Error), reply
                assert reply.code in ("bad_request", "too_large", "unknown_model"), reply
                assert reply.message
                if rid:
                    assert reply.id == rid
        with daemon.client(timeout=10) as client:
            status = client.status()
        assert status["pid"] == daemon.pid and status["ready"]
        assert daemon.process.poll() is None
        assert time.monotonic() - started < 60
    finally:
        for sock in sockets:
            sock.close(0)
