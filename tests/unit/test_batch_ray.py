"""`batch --ray` on a real local Ray (2 CPUs): the same outputs and report as the local batch, a
worker killed mid-batch, the driver killed and the batch rerun, the style encoded once per
worker, and the retry rules of ray_schedule without a cluster.

Ray is optional for users; CI installs it (`install.py --with ray`) and sets
STYLE_TRANSFER_REQUIRE_RAY=1, so there a missing Ray fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import PROJECT_ROOT, imageio
from backend.batch.ray_schedule import Schedule
from backend.batch.runner import run_batch
from backend.batch.spec import BatchSpec

from tests.helpers.batch_folders import (image_files, make_bad_files, make_mixed_folder,
                                         make_plain_folder, smooth_image, wait_for_outputs)
from tests.helpers.checkpoints import make_models_dir

ENGINE, MODEL = "cyclegan", "style_monet"


def _ray():
    if os.environ.get("STYLE_TRANSFER_REQUIRE_RAY") == "1":
        import ray                                       # CI: a missing Ray is a failure
        return ray
    return pytest.importorskip("ray", reason="Ray is optional: python3 install.py --with ray")


# Ray's own memory monitor kills workers when the node is nearly full; on a shared test machine
# that would add deaths these tests do not cause (they kill workers on purpose and count).
QUIET_RAY_ENV = {"RAY_memory_monitor_refresh_ms": "0"}


def _short_temp_dir(tag: str) -> Path:
    """Ray's sockets live under its temp dir and must stay under ~100 characters."""
    return Path(tempfile.mkdtemp(prefix=f"st-ray-{tag}-", dir="/tmp"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray with 2 CPUs for the in-process tests of this file."""
    ray = _ray()
    temp = _short_temp_dir("unit")
    saved = {name: os.environ.get(name) for name in QUIET_RAY_ENV}
    os.environ.update(QUIET_RAY_ENV)             # read by the raylet ray.init starts
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp),
             logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def runtime(models_dir):
    from backend.runtime import Runtime
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


@pytest.fixture
def use_models(models_dir, monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", str(models_dir))


def spec_for(inp: Path, out: Path, **fields) -> BatchSpec:
    fields.setdefault("engine", ENGINE)
    fields.setdefault("model", MODEL)
    return BatchSpec(input_dir=str(inp), output_dir=str(out), **fields)


def ray_batch(workers: int = 2):
    from backend.batch.ray_runner import RayBatch, RayOptions
    return RayBatch(RayOptions(workers=workers, cpus_per_worker=1))


def comparable(report_json: dict) -> dict:
    """A report without what differs between two runs of the same batch (times, OUTPUT_DIR)."""
    data = dict(report_json, spec=dict(report_json["spec"], output_dir=None), elapsed_s=None,
                images_per_s=None, started=None)
    data["items"] = [dict(item, seconds=None) for item in report_json["items"]]
    return data


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_same_files(a: Path, b: Path) -> None:
    assert all_files(a) == all_files(b)
    for rel in all_files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# ----------------------------------------------------------------------- same as the local batch

def test_outputs_and_report_equal_the_local_batch(ray_cluster, runtime, use_models, tmp_path):
    """Mixed formats, alpha, 16-bit, EXIF/ICC, sub-folders, and every kind of bad file: byte for
    byte the local batch's outputs, and the same report."""
    inp, local, on_ray = tmp_path / "in", tmp_path / "local", tmp_path / "ray"
    make_mixed_folder(inp, side=24)
    bad = make_bad_files(inp / "bad")
    spec = dict(recursive=True, quality=90, report="report.json")
    want = run_batch(spec_for(inp, local, **spec), runtime)
    batch = ray_batch()
    got = batch.run(spec_for(inp, on_ray, **spec))
    assert got.count("ok") == 9 and got.count("failed") == len(bad), got.to_json()
    assert {f"bad/{rel}": code for rel, code in bad.items()} == {
        item.input: item.code for item in got.failures}
    assert comparable(got.to_json()) == comparable(want.to_json())
    assert got.exit_status() == want.exit_status() == 1
    (local / "report.json").unlink()
    written = json.loads((on_ray / "report.json").read_text())
    (on_ray / "report.json").unlink()
    assert comparable(written) == comparable(got.to_json())
    assert_same_files(on_ray, local)                     # names, folders, bytes: all the same
    assert imageio.read_image(on_ray / "deep16.png").pixels.dtype == np.uint16
    alpha_in = imageio.read_image(inp / "alpha.png").pixels
    np.testing.assert_array_equal(imageio.read_image(on_ray / "alpha.png").pixels[..., 3],
                                  alpha_in[..., 3])
    assert Image.open(on_ray / "sub" / "photo.jpg").getexif().get(0x010F) == "TestCam"
    used = [w for w in batch.stats.workers if w.images]
    assert len(used) == 2 and {w.device for w in used} == {"cpu"}
    assert sum(w.images for w in used) == 9 + len(bad) - 1     # the folder loop is a scan result
    assert all(w.stats["model_loads"] == 1 for w in used)      # the model loaded once per worker


def test_adain_style_is_encoded_once_per_worker(ray_cluster, use_models, models_dir, tmp_path):
    from backend.runtime import Runtime
    inp, out, local = tmp_path / "in", tmp_path / "out", tmp_path / "local"
    make_plain_folder(inp, 6, 32)
    style = tmp_path / "style.png"
    Image.fromarray(smooth_image(77, 40, 40)).save(style)
    fields = dict(engine="adain", model="adain", styles=[str(style)], options={"alpha": 0.7})
    batch = ray_batch()
    report = batch.run(spec_for(inp, out, **fields))
    assert report.count("ok") == 6
    # which workers get images is the scheduler's call (on a loaded machine the first worker
    # may finish all six before the second has loaded its model): each one that ran images
    # encoded the style once and reused it for the rest
    used = [w for w in batch.stats.workers if w.images]
    assert sum(w.images for w in used) == 6
    assert all(w.stats["style_encodes"] == 1 for w in used), [w.stats for w in used]
    assert all(w.stats["style_cache_hits"] == w.images - 1 for w in used), \
        [w.stats for w in used]
    run_batch(spec_for(inp, local, **fields), Runtime(device="cpu", models_dir=models_dir,
                                                      threads=1))
    assert_same_files(out, local)


# ----------------------------------------------------------------------- faults

def test_a_killed_worker_is_retried_elsewhere_with_no_partial_file(ray_cluster, runtime,
                                                                   use_models, tmp_path):
    inp, out, local = tmp_path / "in", tmp_path / "out", tmp_path / "local"
    names = make_plain_folder(inp, 10, 64)
    batch = ray_batch()
    killed = []

    def progress(fraction: float, text: str) -> None:
        # at the first result every started worker has images in hand (two are queued on
        # each, and both run at once): kill one of them mid-image
        if text.startswith("1/") and not killed:
            started = [w for w in batch.stats.workers if w.starts and w.pid > 0]
            victim = started[-1]
            killed.append(victim)
            os.kill(victim.pid, signal.SIGKILL)

    report = batch.run(spec_for(inp, out), progress)
    assert killed
    assert report.count("ok") == 10 and report.exit_status() == 0, report.to_json()
    assert batch.stats.deaths == 1 and batch.stats.retried >= 1
    assert sorted(p.name for p in out.iterdir()) == names          # no temp file left
    run_batch(spec_for(inp, local), runtime)
    assert_same_files(out, local)


def _workers_of(ray_temp: Path) -> list[int]:
    """Worker processes of the Ray started with RAY_TMPDIR=ray_temp (only they write outputs;
    its node agents outlive a killed driver by about a minute, holding nothing)."""
    marker = f"RAY_TMPDIR={ray_temp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0") and \
                        b"BatchWorker" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_killed_driver_then_rerun_does_exactly_the_rest(models_dir, runtime, tmp_path):
    _ray()
    inp, out, local = tmp_path / "in", tmp_path / "out", tmp_path / "local"
    names = make_plain_folder(inp, 10, 48)
    ray_temp = _short_temp_dir("cli")
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir), RAY_TMPDIR=str(ray_temp),
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **QUIET_RAY_ENV)
    command = [sys.executable, "-m", "backend", "batch", str(inp), str(out), "--engine", ENGINE,
               "--model", MODEL, "--ray", "--ray-workers", "2", "--ray-cpus", "1"]
    try:
        process = subprocess.Popen(command + ["--quiet"], cwd=str(PROJECT_ROOT), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_outputs(process, out, count=2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        deadline = time.monotonic() + 60         # its workers end with it (after the
        while _workers_of(ray_temp) and time.monotonic() < deadline:    # images in hand)
            time.sleep(0.2)
        assert not _workers_of(ray_temp), "the killed driver's Ray workers stayed"
        done_before = image_files(out)
        assert 2 <= len(done_before) < len(names)
        for name in done_before:                  # every visible file is a complete image
            assert imageio.read_image(out / name).pixels.shape == (48, 48, 3)
        stamps = {name: (out / name).stat().st_mtime_ns for name in done_before}

        rerun = subprocess.run(command + ["--report", str(tmp_path / "r.json")],
                               cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
                               timeout=300)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "Ray: 2 worker(s) on 1 node(s) (cpu)" in rerun.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    status = {item["input"]: item["status"] for item in report["items"]}
    assert sorted(n for n, s in status.items() if s == "skipped") == done_before
    assert sorted(n for n, s in status.items() if s == "ok") == sorted(
        set(names) - set(done_before))
    assert sorted(p.name for p in out.iterdir()) == names     # no temp file of the killed run
    assert {name: (out / name).stat().st_mtime_ns for name in done_before} == stamps
    run_batch(spec_for(inp, local), runtime)
    assert_same_files(out, local)


# ----------------------------------------------------------------------- without a cluster

def test_without_ray_the_flag_says_how_to_install_it(tmp_path):
    make_plain_folder(tmp_path / "in", 1, 16)
    code = ("import sys; sys.modules['ray'] = None; from backend.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "batch", str(tmp_path / "in"),
                             str(tmp_path / "out"), "--engine", ENGINE, "--ray"],
                            cwd=str(PROJECT_ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "python3 install.py --with ray" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, words", [
    (["--ray", "--threads", "2"], "--ray-cpus"),
    (["--ray-workers", "2"], "apply to --ray"),
    (["--ray", "--ray-workers", "0"], "at least 1"),
])
def test_ray_usage_errors_exit_2(tmp_path, capsys, extra, words):
    _ray()
    from backend.cli import main
    make_plain_folder(tmp_path / "in", 1, 16)
    code = main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--engine", ENGINE,
                 *extra])
    assert code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_given_as_the_ray_address_is_a_usage_error(tmp_path, capsys):
    from backend.cli import main
    with pytest.raises(SystemExit) as stopped:
        main(["batch", "--engine", ENGINE, "--ray", str(tmp_path), str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "is not a Ray address" in capsys.readouterr().err


def test_a_worker_with_other_backend_sources_refuses_to_start(tmp_path):
    from backend.batch.ray_worker import BatchWorker, WorkerSetup, source_digest
    spec = spec_for(tmp_path, tmp_path / "out")
    setup = WorkerSetup(spec=spec, options={}, styles=[], input_root=str(tmp_path),
                        output_root=str(tmp_path / "out"), models_dir=str(tmp_path),
                        device="cpu", code="0" * 16)
    ready = BatchWorker(setup).ready()
    assert ready.error is not None and ready.error[0] == "bad_request"
    assert "not the driver's version" in ready.error[1]
    assert len(source_digest()) == 16 and source_digest() == source_digest()


def test_ray_addresses_and_worker_shapes():
    from backend.batch.ray_runner import RayOptions, check_address, plan_workers
    from stclient.errors import StyleTransferError
    for good in ("auto", "local", "ray://head:10001", "10.0.0.5:6379"):
        assert check_address(good) == good
    for bad in ("photos/", "in", "out/x:1", ":6379"):
        with pytest.raises(ValueError):
            check_address(bad)
    cpu_cluster = {"CPU": 16.0}
    shape = plan_workers(RayOptions(), "auto", cpu_cluster)
    assert (shape.count, shape.num_cpus, shape.num_gpus, shape.threads) == (4, 4, 0, 4)
    assert plan_workers(RayOptions(), "auto", {"CPU": 2.0}).count == 1      # 2 CPUs: one worker
    assert plan_workers(RayOptions(cpus_per_worker=1), "auto", {"CPU": 2.0}).count == 2
    gpu_cluster = {"CPU": 32.0, "GPU": 3.0}
    shape = plan_workers(RayOptions(), "auto", gpu_cluster)
    assert (shape.count, shape.num_gpus, shape.device) == (3, 1, "cuda")
    assert plan_workers(RayOptions(), "cpu", gpu_cluster).num_gpus == 0     # --device cpu
    assert plan_workers(RayOptions(workers=5), "auto", gpu_cluster).count == 5
    with pytest.raises(StyleTransferError, match="no GPU"):
        plan_workers(RayOptions(), "cuda", cpu_cluster)


def _drain(schedule: Schedule, worker) -> list:
    handed = []
    while (assignment := schedule.next_for(worker)) is not None:
        handed.append(assignment)
    return handed


def test_schedule_retries_a_dead_workers_images_alone_and_gives_up_on_a_killer():
    schedule = Schedule(6, per_worker=2, max_deaths=2)
    schedule.add_worker("a")
    schedule.add_worker("b")
    a1 = _drain(schedule, "a")
    b1 = _drain(schedule, "b")
    assert [x.item for x in a1] == [0, 1] and [x.item for x in b1] == [2, 3]
    assert not any(x.alone or x.retry for x in a1 + b1)
    retried, given_up = schedule.worker_died("a")          # two images in hand: none blamed
    assert retried == [0, 1] and given_up == []
    schedule.done(b1[0])
    assert _drain(schedule, "b") == []                     # retries wait: b drains first
    schedule.done(b1[1])
    solo = _drain(schedule, "b")
    assert [(x.item, x.retry, x.alone) for x in solo] == [(0, True, True)]
    retried, given_up = schedule.worker_died("b")          # died alone with image 0: blamed
    assert (retried, given_up) == ([0], [])
    schedule.add_worker("b")                               # Ray restarted it
    assert [x.item for x in _drain(schedule, "b")] == [1]  # the oldest retry first, alone
    schedule.done(schedule.in_flight()[0])
    assert [x.item for x in _drain(schedule, "b")] == [0]
    retried, given_up = schedule.worker_died("b")          # image 0 killed a worker twice
    assert (retried, given_up) == ([], [0])
    schedule.add_worker("b")
    handed = _drain(schedule, "b")
    assert [x.item for x in handed] == [4, 5] and not any(x.alone for x in handed)
    for assignment in handed:
        schedule.done(assignment)
    assert schedule.finished and schedule.retried == {0, 1}


def test_schedule_cancel_returns_what_never_started():
    schedule = Schedule(5, per_worker=2)
    schedule.add_worker("a")
    handed = _drain(schedule, "a")
    assert schedule.cancel() == [2, 3, 4]
    assert not schedule.finished and _drain(schedule, "a") == []
    for assignment in handed:
        schedule.done(assignment)
    assert schedule.finished


# ----------------------------------------------------------------------- install.py --with ray

def _install_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("install_for_ray", PROJECT_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_install_with_ray_pins_the_version_this_suite_runs_and_is_idempotent():
    ray = _ray()
    install = _install_module()
    assert install.extra_pin("ray") == ("ray", ray.__version__)
    assert install.extra_status(Path(sys.executable), "ray") == ("ok", f"ray {ray.__version__}")
    # pinned version present: install.py --with ray says so and runs no pip
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "install.py"), "--python",
                             sys.executable, "--no-plugin", "--no-kernels", "--no-demo",
                             "--with", "ray"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"ray extra: ray {ray.__version__} already installed" in result.stdout
    assert "Installing" not in result.stdout
    refused = subprocess.run([sys.executable, str(PROJECT_ROOT / "install.py"), "--with",
                              "spark"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown extra(s) spark" in refused.stderr
