"""Hardening (issue 16): sizes that decide allocations are checked before work, an allocation
that fails anyway is a clean out_of_memory, and a running job gets its timeout on time. Real
daemon processes over real sockets."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.spec import BatchSpec
from backend.daemon.images import array_to_frame
from stclient.client import Client
from stclient.errors import StyleTransferError

from tests.helpers.batch_folders import make_plain_folder
from tests.helpers.daemon import start_daemon

MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def daemon(models_dir):
    with start_daemon(models_dir, extra_args=["--max-pixels", str(MAX_PIXELS),
                                              "--max-job-memory", "20M"]) as handle:
        yield handle


def image(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def refused(call, code: str, words: str = "") -> None:
    started = time.monotonic()
    with pytest.raises(StyleTransferError) as caught:
        call()
    assert caught.value.code == code, caught.value.message
    assert words in caught.value.message
    assert time.monotonic() - started < 10, "refused only after working"


# -------------------------------------------------------------------------- 3. sizes

def test_size_options_are_held_to_the_pixel_limit_and_the_memory_budget(daemon, tmp_path):
    tiny = array_to_frame(image(1, 2, 2))
    with daemon.client() as client:
        warm = client.stylize(array_to_frame(image(6, 16, 16)), "cyclegan", "style_monet")
        rss = daemon.rss()                         # the first real job loads torch's pieces
        for engine, model in (("cyclegan", "style_monet"),
                              ("pix2pix", "pix2pix_facades_label2photo")):
            refused(lambda: client.stylize(tiny, engine, model, {"working_size": 16384}),
                    "too_large", "scaled to 16384")
        refused(lambda: client.stylize(array_to_frame(image(2, 8, 8)), "adain", "adain",
                                       {"style_size": 16384}, styles=[tiny]),
                "too_large", "scaled to 16384")
        # within the pixel limit, but the whole images need more than --max-job-memory 20M
        refused(lambda: client.stylize(array_to_frame(image(3, 60, 60)), "cyclegan",
                                       "style_monet", {"working_size": 1000}),
                "out_of_memory", "GiB")
        style_file = tmp_path / "style.png"                 # its size is known once read
        imageio.write_image(style_file, image(4, 700, 700))
        refused(lambda: client.stylize(array_to_frame(image(5, 8, 8)), "adain", "adain",
                                       style_paths=[style_file]), "out_of_memory", "style image")
        refused(lambda: client.sample(count=1, options={"working_size": 16384}), "too_large")
        refused(lambda: client.sample(count=256, options={"working_size": 512}), "out_of_memory",
                "256 images")
        make_plain_folder(tmp_path / "in", 1, 16)
        spec = BatchSpec(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
                         engine="cyclegan", model="style_monet",
                         options={"working_size": 16384})
        refused(lambda: client.batch(spec.to_json()), "too_large")
        again = client.stylize(array_to_frame(image(6, 16, 16)), "cyclegan", "style_monet")
        assert bytes(again[0].data) == bytes(warm[0].data)
    assert daemon.rss() - rss < 128 << 20, "a refused job allocated its sizes"


# ------------------------------------------------------------------ 3. MemoryError anywhere

def vm_size(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def test_a_failed_allocation_is_out_of_memory_and_the_daemon_serves_on(models_dir):
    if not hasattr(resource, "prlimit"):
        pytest.skip("needs prlimit (Linux)")
    with start_daemon(models_dir, extra_args=["--max-pixels", "8000000"]) as daemon:
        with daemon.client(timeout=60) as client:
            client.stylize(array_to_frame(image(7, 16, 16)), "cyclegan", "style_monet")
            big = array_to_frame(image(8, 2500, 2500))            # 19 MB on the wire
            limit = vm_size(daemon.pid) + (100 << 20)             # room for the message only
            resource.prlimit(daemon.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
            try:
                with pytest.raises(StyleTransferError) as caught:
                    client.stylize(big, "cyclegan", "style_monet")
                assert caught.value.code == "out_of_memory", caught.value.message
                assert client.status()["ready"]                   # still answers, still limited
            finally:
                resource.prlimit(daemon.pid, resource.RLIMIT_AS,
                                 (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            frame, _ = client.stylize(array_to_frame(image(9, 16, 16)), "cyclegan",
                                      "style_monet")
            assert frame.width == 16
        assert daemon.process.poll() is None


# ---------------------------------------------------------- 3. deadlines on running jobs

STALLING_DAEMON = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import backend
    from pathlib import Path
    from backend.daemon import validation
    from backend.daemon.config import DaemonConfig
    from backend.daemon.server import DaemonServer
    import backend.perf.budget  # torch, loaded before serving as in the real daemon

    class StallingRuntime:
        '''An engine stage that runs for {stall} s without one progress report or poll.'''
        device = "cpu"
        def stylize(self, job, progress=None, cancelled=None):
            time.sleep({stall})
            return job.content.copy()
        def status(self):
            return {{"device": "cpu"}}

    validation.resolve_model = lambda engine, model, config: model or "stall"
    endpoint = {endpoint!r}
    config = DaemonConfig(endpoint=endpoint, runtime_dir=Path(endpoint[6:]).parent)
    server = DaemonServer(config, runtime_factory=lambda _: StallingRuntime())
    server.bind()
    server.wait_ready(60)
    print("ready", flush=True)
    server.serve_forever()
""")


def test_a_running_job_that_never_polls_is_answered_at_its_deadline():
    folder = Path(tempfile.mkdtemp(prefix="st-stall-", dir="/tmp"))
    endpoint = f"ipc://{folder}/daemon.sock"
    child = subprocess.Popen([sys.executable, "-c", STALLING_DAEMON.format(
        root=str(PROJECT_ROOT), endpoint=endpoint, stall=12)], stdout=subprocess.PIPE,
        text=True, cwd=str(PROJECT_ROOT))
    try:
        assert child.stdout.readline().strip() == "ready"
        with Client(endpoint, autostart=False, timeout=30, runtime_dir=str(folder)) as client:
            started = time.monotonic()
            with pytest.raises(StyleTransferError) as caught:
                client.stylize(array_to_frame(image(10, 8, 8)), "cyclegan", "m", deadline_s=1.0)
            waited = time.monotonic() - started
            assert caught.value.code == "timeout", caught.value.message
            assert waited < 5.0, f"answered after {waited:.1f} s (the stage runs 12 s)"
            assert client.status()["running"] is not None       # the stage still runs
    finally:
        child.kill()
        child.wait(10)
