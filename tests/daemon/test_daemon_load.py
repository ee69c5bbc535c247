"""8 concurrent clients x 20 jobs each: every reply matches its request, memory stays flat."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from backend.daemon.images import array_to_frame, frame_to_array
from backend.engines.job import StylizeJob
from stclient.registry import resolve_options

from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon

CLIENTS = 8
ROUNDS = 4
JOBS_PER_ROUND = 5          # 4 rounds x 5 = 20 jobs per client
RSS_SLACK = 24 * 2**20      # allocator noise; a leak of one image per job would be far larger


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


def job_spec(client: int, index: int) -> dict:
    """A different seed, channel count, engine and options for every (client, index), and an
    image size unique among the jobs that run at the same time (so any mix-up shows); every round
    uses the same sizes, so its working set matches the previous round's."""
    rng = np.random.default_rng(1000 * client + index)
    height, width = 8 + client, 8 + 3 * (index % JOBS_PER_ROUND)
    channels = (3, 4, 1)[(client + index) % 3]
    content = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if index % 5 == 4:
        return dict(engine="pix2pix", model="pix2pix_facades_label2photo", content=content,
                    options={"norm": ("image", "running")[client % 2]})
    return dict(engine="cyclegan", model="style_monet", content=content,
                options={"working_size": (0, 8, 12, 16)[(client + index) % 4]})


def test_concurrent_clients_get_their_own_results_and_memory_stays_flat(models_dir):
    from backend.runtime import Runtime
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    rss: list[int] = []
    with start_daemon(models_dir) as daemon:
        clients = [daemon.client() for _ in range(CLIENTS)]

        def work(client_index: int, round_index: int) -> None:
            try:
                for j in range(JOBS_PER_ROUND):
                    index = round_index * JOBS_PER_ROUND + j
                    spec = job_spec(client_index, index)
                    frame, data = clients[client_index].stylize(
                        array_to_frame(spec["content"]), spec["engine"], spec["model"],
                        spec["options"])
                    assert data["engine"] == spec["engine"]
                    results[(client_index, index)] = frame_to_array(frame).copy()
            except BaseException as error:      # reported by the main thread
                errors.append(error)

        for round_index in range(ROUNDS):
            threads = [threading.Thread(target=work, args=(c, round_index))
                       for c in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            assert not errors, errors
            rss.append(daemon.rss())
        with daemon.client() as client:
            status = client.status()
        assert status["queue"] == [] and status["running"] is None
        assert daemon.process.poll() is None
    print("daemon RSS after each round (MiB):", [round(r / 2**20, 1) for r in rss])
    # Memory: after two warm-up rounds (models loaded, caches filled) it must not keep growing.
    assert rss[-1] - rss[1] < RSS_SLACK, [r // 2**20 for r in rss]

    runtime = Runtime(device="cpu", models_dir=models_dir, threads=1)
    assert len(results) == CLIENTS * ROUNDS * JOBS_PER_ROUND
    for (client_index, index), got in sorted(results.items()):
        spec = job_spec(client_index, index)
        expected = runtime.stylize(StylizeJob(
            engine=spec["engine"], content=spec["content"], model=spec["model"],
            options=resolve_options(spec["engine"], spec["options"])))
        assert got.shape == spec["content"].shape
        assert np.array_equal(got, expected), (client_index, index)
