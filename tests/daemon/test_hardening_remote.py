"""Hardening (issue 16): remote (CURVE) clients send pixels, not paths; they see and cancel only
their own jobs. Two real daemons on 0.0.0.0 with CURVE keys; "remote" clients connect through
this machine's non-loopback address, local ones through 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.spec import BatchReport, BatchSpec
from backend.daemon.images import array_to_frame
from stclient.client import Client
from stclient.errors import Cancelled, StyleTransferError

from tests.helpers.batch_folders import image_files, make_plain_folder
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import free_tcp_port, non_loopback_address, start_daemon

LAN = non_loopback_address()
pytestmark = pytest.mark.skipif(LAN is None, reason="no non-loopback address to connect from")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Keys for alice and bob, an allowed root with a style and an input folder, a folder
    outside it, and links from inside to outside."""
    base = tmp_path_factory.mktemp("remote")
    keys = base / "keys"
    subprocess.run([sys.executable, "-m", "backend", "keys", str(keys), "--client=alice",
                    "--client=bob"], cwd=str(PROJECT_ROOT), check=True, capture_output=True)
    allowed, outside = base / "allowed", base / "outside"
    for folder in (allowed, outside):
        (folder / "in").mkdir(parents=True)
        make_plain_folder(folder / "in", 1, 16)
        imageio.write_image(folder / "style.png", small_image(3, 24))
    os.symlink(outside / "style.png", allowed / "link_style.png")
    os.symlink(outside / "in" / "img_0000.png", allowed / "in" / "link_file.png")
    os.symlink(outside / "in", allowed / "in" / "link_folder")
    return dict(base=base, keys=keys, allowed=allowed, outside=outside,
                models=make_models_dir(base / "models"))


def curve_daemon(world, *extra):
    port = free_tcp_port()
    handle = start_daemon(world["models"], endpoint=f"tcp://0.0.0.0:{port}",
                          extra_args=["--curve-keys", str(world["keys"]), *extra])
    handle.port = port
    return handle


@pytest.fixture(scope="module")
def pixels_only(world):
    with curve_daemon(world) as handle:
        yield handle


@pytest.fixture(scope="module")
def with_allow_dir(world):
    with curve_daemon(world, "--allow-dir", str(world["allowed"])) as handle:
        yield handle


def client(daemon, world, who="alice", host=LAN, timeout=30.0) -> Client:
    made = Client(f"tcp://{host}:{daemon.port}", autostart=False, timeout=timeout,
                  runtime_dir=str(daemon.runtime_dir),
                  curve_keys=str(world["keys"] / f"client-{who}"))
    daemon._clients.append(made)
    return made


def small_image(seed: int, side: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def stylize_with(c: Client, path: Path):
    return c.stylize(array_to_frame(small_image(1)), "adain", "adain", style_paths=[path])


def refused(call) -> StyleTransferError:
    with pytest.raises(StyleTransferError) as caught:
        call()
    assert caught.value.code == "unauthorized", caught.value.message
    return caught.value


def batch_spec(inp: Path, out: Path, **fields) -> dict:
    return {**BatchSpec(input_dir=str(inp), output_dir=str(out), engine="cyclegan",
                        model="style_monet", **fields).to_json()}


# ------------------------------------------------------------------ 2. remote and files

def test_remote_clients_may_not_name_files_without_allow_dir(pixels_only, world, tmp_path):
    remote = client(pixels_only, world)
    existing = refused(lambda: stylize_with(remote, world["outside"] / "style.png"))
    missing = refused(lambda: stylize_with(remote, world["outside"] / "no-such.png"))
    assert existing.message == missing.message          # says nothing about existence
    assert "--allow-dir" in existing.message
    out = tmp_path / "remote-out"
    refused(lambda: remote.batch(batch_spec(world["outside"] / "in", out)))
    refused(lambda: remote.batch(batch_spec(world["outside"] / "in", out, report="r.json")))
    assert not out.exists()
    frame, _ = remote.stylize(array_to_frame(small_image(1)), "adain", "adain",   # pixels: fine
                              styles=[array_to_frame(small_image(2))])
    local = client(pixels_only, world, host="127.0.0.1")   # this machine, same keys: files ok
    stylize_with(local, world["outside"] / "style.png")


def test_allow_dir_admits_only_real_paths_below_it(with_allow_dir, world, tmp_path):
    remote = client(with_allow_dir, world)
    stylize_with(remote, world["allowed"] / "style.png")
    refused(lambda: stylize_with(remote, world["outside"] / "style.png"))
    refused(lambda: stylize_with(remote, world["allowed"] / "link_style.png"))   # link out
    refused(lambda: stylize_with(remote, world["allowed"] / ".." / "outside" / "style.png"))
    refused(lambda: remote.batch(batch_spec(world["allowed"] / "in", tmp_path / "o")))
    out = world["allowed"] / "out"
    report = BatchReport.from_json(remote.batch(batch_spec(world["allowed"] / "in", out,
                                                           recursive=True)))
    codes = {item.input: (item.status, item.code) for item in report.items}
    assert codes == {"img_0000.png": ("ok", None),
                     "link_file.png": ("failed", "unauthorized"),
                     "link_folder": ("failed", "unauthorized")}, codes
    assert image_files(out) == ["img_0000.png"]           # nothing from outside was read


# ----------------------------------------------------- 9. only one's own jobs, in status too

def test_remote_clients_see_and_cancel_only_their_own_jobs(pixels_only, world):
    alice, bob = client(pixels_only, world, "alice"), client(pixels_only, world, "bob")
    content = array_to_frame(small_image(5, 320))
    style = array_to_frame(small_image(6, 48))
    started, outcome = threading.Event(), {}

    def run() -> None:
        try:
            client(pixels_only, world, "alice").stylize(
                content, "adain", "adain", styles=[style], request_id="alice-job",
                on_progress=lambda f, t: t == "encoding content" and started.set())
            outcome["finished"] = True
        except StyleTransferError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(60)
        seen_by_bob = bob.status()["running"]
        assert seen_by_bob["id"] is None and seen_by_bob["own"] is False
        assert "engine" not in seen_by_bob and "text" not in seen_by_bob
        assert bob.cancel("alice-job") == {"cancelled": 0}
        assert alice.status()["running"]["id"] == "alice-job"
        assert alice.cancel("alice-job") == {"cancelled": 1}
    finally:
        thread.join(60)
    assert isinstance(outcome.get("error"), Cancelled), outcome
