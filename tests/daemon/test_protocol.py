"""The wire protocol's encoder/decoder on its own: round trips and rejections (no sockets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stclient import PROTOCOL_VERSION
from stclient.errors import BAD_REQUEST, CANCELLED, TOO_LARGE, Cancelled, StyleTransferError
from stclient.protocol import (BatchRequest, CancelRequest, Error, ImageFrame, Progress,
                               ProtocolError, Result, SampleRequest, StatusRequest,
                               StylizeRequest, decode_reply, decode_request)

from backend.daemon.images import array_to_frame, frame_to_array, mask_to_array


def frame_of(array: np.ndarray) -> ImageFrame:
    return array_to_frame(array)


def test_stylize_round_trip_keeps_every_field_and_pixel():
    rng = np.random.default_rng(0)
    content = rng.integers(0, 65535, (7, 5, 4), dtype=np.uint16)
    style = rng.random((3, 9, 3), dtype=np.float32)
    mask = rng.integers(0, 255, (7, 5, 1), dtype=np.uint8)
    request = StylizeRequest(engine="adain", model="adain", options={"alpha": 0.5},
                             content=frame_of(content), styles=[frame_of(style)],
                             style_paths=["/x/y.png"], mask=frame_of(mask), deadline_s=3.5,
                             token="t")
    frames = [bytes(f) for f in request.to_frames()]
    decoded = decode_request(frames)
    assert isinstance(decoded, StylizeRequest)
    assert (decoded.id, decoded.engine, decoded.model, decoded.options, decoded.style_paths,
            decoded.deadline_s, decoded.token) == (request.id, "adain", "adain",
                                                   {"alpha": 0.5}, ["/x/y.png"], 3.5, "t")
    assert np.array_equal(frame_to_array(decoded.content), content)
    assert np.array_equal(frame_to_array(decoded.styles[0]), style)
    assert mask_to_array(decoded.mask, 7, 5).dtype == np.float32
    assert np.allclose(mask_to_array(decoded.mask, 7, 5), mask[:, :, 0] / 255.0)


def test_other_requests_round_trip():
    for request in (StatusRequest(), CancelRequest(target="abc"),
                    BatchRequest(spec={"input_dir": "/a"}, deadline_s=10),
                    SampleRequest(model="m", count=3, seed=7, options={"working_size": 0})):
        decoded = decode_request(request.to_frames())
        assert type(decoded) is type(request)
        assert decoded == request


def test_replies_round_trip():
    image = frame_of(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    result = decode_reply(Result(id="r", op="stylize", data={"a": 1}, images=[image])
                          .to_frames())
    assert result.data == {"a": 1} and bytes(result.images[0].data) == bytes(image.data)
    progress = decode_reply(Progress(id="p", fraction=0.25, text="half").to_frames())
    assert (progress.fraction, progress.text) == (0.25, "half")
    error = decode_reply(Error(id="e", code=CANCELLED, message="stop").to_frames())
    assert isinstance(error.to_exception(), Cancelled)


def header(**fields):
    base = {"v": PROTOCOL_VERSION, "id": "x", "op": "stylize", "engine": "cyclegan",
            "content": {"width": 2, "height": 2, "channels": 3, "dtype": "uint8"}}
    base.update(fields)
    return json.dumps(base).encode()


@pytest.mark.parametrize("frames, code", [
    ([], BAD_REQUEST),
    ([b"\xff\xfe"], BAD_REQUEST),
    ([b"[1,2]"], BAD_REQUEST),
    ([b'{"v": 1, "id": "x", "op": "status", "x": NaN}'], BAD_REQUEST),
    ([json.dumps({"v": 99, "id": "x", "op": "status"}).encode()], BAD_REQUEST),
    ([json.dumps({"v": 1, "id": 5, "op": "status"}).encode()], BAD_REQUEST),
    ([json.dumps({"v": 1, "id": "x", "op": "explode"}).encode()], BAD_REQUEST),
    ([json.dumps({"v": 1, "id": "x", "op": "status"}).encode(), b"extra"], BAD_REQUEST),
    ([header(), bytes(11)], BAD_REQUEST),                      # one byte short
    ([header(), bytes(13)], BAD_REQUEST),                      # one byte long
    ([header()], BAD_REQUEST),                                 # frame missing
    ([header(), bytes(12), bytes(12)], BAD_REQUEST),           # frame extra
    ([header(content={"width": 2 ** 30, "height": 1, "channels": 3, "dtype": "uint8"}),
      b""], TOO_LARGE),
    ([header(content={"width": 2, "height": 2, "channels": 5, "dtype": "uint8"}), bytes(20)],
     BAD_REQUEST),
    ([header(content={"width": 2, "height": 2, "channels": 3, "dtype": "int64"}), bytes(96)],
     BAD_REQUEST),
    ([header(content={"width": True, "height": 2, "channels": 3, "dtype": "uint8"}),
      bytes(6)], BAD_REQUEST),
    ([header(engine=3), bytes(12)], BAD_REQUEST),
    ([header(options=[1]), bytes(12)], BAD_REQUEST),
    ([header(style_paths="a"), bytes(12)], BAD_REQUEST),
    ([header(deadline_s=-1), bytes(12)], BAD_REQUEST),
])
def test_malformed_requests_are_protocol_errors(frames, code):
    with pytest.raises(ProtocolError) as caught:
        decode_request(frames)
    assert caught.value.code == code
    assert isinstance(caught.value, StyleTransferError)


def test_request_id_survives_in_errors_when_readable():
    with pytest.raises(ProtocolError) as caught:
        decode_request([header(id="abc"), bytes(11)])
    assert caught.value.request_id == "abc"


def test_float_frames_with_nan_are_bad_images():
    bad = np.array([[[np.nan, 0, 0]]], dtype=np.float32)
    with pytest.raises(StyleTransferError) as caught:
        frame_to_array(array_to_frame(bad))
    assert caught.value.code == "bad_image"
