"""A job is validated once, where it enters: `checked_job` for jobs built in Python, the daemon's
request validation for socket requests (it hands the worker a CheckedJob). The Runtime runs a
CheckedJob as it is and checks anything else through the same `checked_job`."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines import checks
from backend.engines.job import CheckedJob, StylizeJob
from backend.runtime import Runtime
from stclient import registry
from stclient.errors import BAD_IMAGE, BAD_REQUEST, StyleTransferError

ENGINE = "colortransfer"            # needs no model: the checks are all there is to load


def picture(seed: int, side: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return Runtime(device="cpu", models_dir=tmp_path_factory.mktemp("no-models"), threads=1)


def test_a_checked_job_has_resolved_options_float_mask_and_checked_pixels():
    mask = np.zeros((24, 24), np.uint8)
    mask[:, 12:] = 255
    job = checks.checked_job(StylizeJob(engine=ENGINE, content=picture(1),
                                        styles=[picture(2)], mask=mask, options={}))
    assert isinstance(job, CheckedJob)
    assert job.options == registry.resolve_options(ENGINE, {})      # defaults filled in
    assert job.mask.dtype == np.float32 and job.mask.shape == (24, 24)
    assert job.mask[0, 0] == 0.0 and job.mask[0, 23] == 1.0
    assert checks.checked_job(job) is job                            # not checked again


@pytest.mark.parametrize("change, code", [
    ({"content": [[1, 2, 3]]}, BAD_IMAGE),                          # not an array
    ({"styles": []}, BAD_REQUEST),                                  # the card wants a style
    ({"mask": np.zeros((5, 5), np.float32)}, BAD_REQUEST),          # another size
    ({"options": {"alpha": 7.0}}, BAD_REQUEST),                     # out of range
    ({"engine": "no-such-engine"}, BAD_REQUEST),
])
def test_bad_jobs_are_refused_by_the_one_check(change, code):
    fields = dict(engine=ENGINE, content=picture(1), styles=[picture(2)], options={})
    fields.update(change)
    with pytest.raises(StyleTransferError) as refused:
        checks.checked_job(StylizeJob(**fields))
    assert refused.value.code == code


def test_the_runtime_runs_a_checked_job_without_checking_it_again(runtime, monkeypatch):
    plain = StylizeJob(engine=ENGINE, content=picture(1), styles=[picture(2)],
                       options={"alpha": 0.5})
    checked = checks.checked_job(plain)
    expected = runtime.stylize(checked)

    def refuse(*args, **kwargs):
        raise AssertionError("checked a second time")

    monkeypatch.setattr(checks, "resolve_options", refuse)
    monkeypatch.setattr(registry, "check_inputs", refuse)
    np.testing.assert_array_equal(runtime.stylize(checked), expected)
    with pytest.raises(AssertionError, match="second time"):      # an unchecked job is checked
        runtime.stylize(plain)
