"""MIXGAN through a real daemon over ZeroMQ: stylize and sample equal the in-process results."""

from __future__ import annotations

import numpy as np
import pytest

from backend.daemon.images import array_to_frame, frame_to_array
from backend.engines.job import StylizeJob
from backend.runtime import Runtime
from stclient.errors import StyleTransferError
from tests.helpers.mixgan import make_mixgan_model, one_torch_thread

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()



@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixgan-daemon-models")
    make_mixgan_model(folder, "mix_conv", "conv", seed=4)
    return folder


@pytest.fixture(scope="module")
def runtime(models_dir):
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


def test_stylize_over_the_daemon_equals_in_process(daemon, runtime) -> None:
    content = np.random.default_rng(3).integers(0, 256, (45, 70, 4), dtype=np.uint8)
    with daemon.client() as client:
        frame, data = client.stylize(array_to_frame(content), "mixgan", "mix_conv", {})
    result = frame_to_array(frame)
    expected = runtime.stylize(StylizeJob(engine="mixgan", content=content, model="mix_conv"))
    assert result.shape == content.shape and np.array_equal(result, expected)
    assert np.array_equal(result[..., 3], content[..., 3])
    assert data["engine"] == "mixgan" and data["model"] == "mix_conv"


def test_sample_over_the_daemon_equals_in_process(daemon, runtime) -> None:
    with daemon.client() as client:
        frames, data = client.sample("mix_conv", count=3, seed=9)
        again, _ = client.sample("mix_conv", count=1, seed=9, options={"working_size": 48})
    images = [frame_to_array(f) for f in frames]
    expected = runtime.sample("mix_conv", count=3, seed=9)
    assert data["count"] == 3 and data["seed"] == 9
    assert all(np.array_equal(a, b) for a, b in zip(images, expected))
    assert frame_to_array(again[0]).shape == (48, 48, 3)


def test_daemon_lists_the_model_and_refuses_bad_samples(daemon) -> None:
    with daemon.client() as client:
        names = {m["name"]: m for m in client.models()["models"]}
        assert names["mix_conv"]["engine"] == "mixgan"
        with pytest.raises(StyleTransferError) as error:
            client.sample("mix_conv", count=1, options={"alpha": 1.0})
        assert error.value.code == "bad_request"
        with pytest.raises(StyleTransferError) as error:
            client.sample("nope", count=1)
        assert error.value.code == "unknown_model"
