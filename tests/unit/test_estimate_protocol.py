"""The estimate and intermediate parts of the protocol without a daemon: messages survive the
codec and bad ones are refused; a job's intermediate slot holds at most one image, the newest,
and sends only against a credit; durations read as people say them."""

from __future__ import annotations

import pytest

from backend.daemon.jobs import Job
from stclient.estimate import Estimate, duration
from stclient.protocol import (EstimateRequest, ImageFrame, Intermediate, IntermediateRequest,
                               ProtocolError, StylizeRequest, decode_reply, decode_request)


def test_estimate_and_intermediate_messages_round_trip():
    request = EstimateRequest(engine="any", width=640, height=480, styles=2, mask=True,
                              model="m", options={"iterations": 7})
    decoded = decode_request(request.to_frames())
    assert isinstance(decoded, EstimateRequest)
    assert (decoded.width, decoded.height, decoded.styles, decoded.mask, decoded.options) == \
        (640, 480, 2, True, {"iterations": 7})
    pull = decode_request(IntermediateRequest(target="job-1").to_frames())
    assert isinstance(pull, IntermediateRequest) and pull.target == "job-1"
    frame = ImageFrame(3, 2, 4, "uint16", bytes(range(48)))
    reply = decode_reply(Intermediate(id="job-1", fraction=0.25, text="iteration 5 of 20",
                                      image=frame).to_frames())
    assert isinstance(reply, Intermediate) and reply.text == "iteration 5 of 20"
    assert reply.fraction == 0.25 and bytes(reply.image.data) == bytes(range(48))
    content = ImageFrame(1, 1, 3, "uint8", b"abc")
    asked = decode_request(StylizeRequest(engine="any", content=content,
                                          intermediates=True).to_frames())
    assert asked.intermediates is True
    assert decode_request(StylizeRequest(engine="any", content=content).to_frames()) \
        .intermediates is False


@pytest.mark.parametrize("change", [{"width": 0}, {"height": -3}, {"styles": 99}])
def test_bad_estimate_requests_are_refused(change):
    frames = EstimateRequest(engine="any", width=10, height=10).to_frames()
    import json
    header = json.loads(frames[0])
    header.update(change)
    with pytest.raises(ProtocolError):
        decode_request([json.dumps(header).encode()])


def test_a_job_keeps_only_the_newest_intermediate_and_sends_against_credit():
    job = Job(identity=b"x", request=None, payload=None, priority=0, deadline=1e18)
    assert job.offer_intermediate("first") is False          # no credit: kept
    assert job.offer_intermediate("second") is False         # replaces it
    assert job.credit_intermediate() == "second"             # the newest goes at once
    assert job.credit_intermediate() is None                 # nothing kept: a credit waits
    assert job.offer_intermediate("third") is True           # ... and is spent on this one
    assert job.offer_intermediate("fourth") is False
    job.close_intermediates()
    assert job.credit_intermediate() is None                 # nothing after the result
    assert job.offer_intermediate("fifth") is False


def test_durations_and_estimate_texts():
    assert duration(0.4) == "under a second"
    assert duration(42.4) == "about 42 s"
    assert duration(190) == "about 3 min 10 s"
    assert duration(184) == "about 3 min"
    assert duration(3 * 3600 + 290) == "about 3 h 5 min"
    estimate = Estimate(190.2, "256 px, 2 scales, 200 iterations")
    assert estimate.text == "about 3 min 10 s (256 px, 2 scales, 200 iterations)"
    assert Estimate.from_json(estimate.to_json()) == Estimate(190.2, estimate.summary)
