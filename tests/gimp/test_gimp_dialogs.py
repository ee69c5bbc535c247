"""The dialogs in the real GIMP 3 (gimp-console with an Xvfb display, INTERACTIVE run mode): they
open at once (the daemon is asked in the background, also while it is being started), previews
are the daemon's answer for the small copy, the batch dialog shows the chosen engine's fields and
models, Backend Status offers "Start backend" when the backend is down and starts it, no
mnemonic is used twice, errors are shown once and say what to run.

Screenshots of every dialog are saved; STYLE_TRANSFER_DOC_IMAGES=1 copies them to docs/images/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stclient import paths
from stclient.client import Client
from stclient.protocol import ImageFrame
from tests.gimp.harness import ImageSpec, gimp_session
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon

pytestmark = pytest.mark.gimp

P = "python-fu-style-transfer-"
CYCLEGAN = "style_monet"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
CHECK = "python3 install.py --check"
# GIMP 3.0 starts an INTERACTIVE run from the procedure's last values (kept in this folder, also
# across GIMP sessions), not from the arguments the caller set: cases that must see their own
# arguments remove them first
LAST_VALUES = "/root/.config/GIMP/3.0/plug-in-settings"


def own_arguments(case: dict) -> dict:
    case["before"] = [["remove", LAST_VALUES]]
    return case


@pytest.fixture(scope="module")
def session():
    with gimp_session() as gimp:
        yield gimp


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> str:
    return make_models_dir(tmp_path_factory.mktemp("gimp-models"))


@pytest.fixture(scope="module")
def daemon(session, models_dir):
    handle = start_daemon(models_dir, runtime_dir=session.shared / "run")
    yield handle
    handle.stop()


def pattern(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (7 + c) + y / (11 + 2 * c) + seed) for c in range(3)]
    image = np.stack(planes, axis=2) + rng.normal(0, 0.05, (height, width, 3))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def dialogs(run) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in run.stderr.splitlines()
            if line.startswith("STYLE_TRANSFER_DIALOG ")]


def keep_screenshots(shown: list[dict], prefix: str = "dialog-") -> None:
    for report in shown:
        path = report.get("screenshot")
        assert path and Path(path).is_file(), report
        with Image.open(path) as picture:
            assert picture.width > 200 and picture.height > 100
            assert np.unique(np.asarray(picture.convert("L"))).size > 8, f"blank: {path}"
        if os.environ.get("STYLE_TRANSFER_DOC_IMAGES") == "1":
            shutil.copyfile(path, DOC_IMAGES / f"{prefix}{Path(path).name}")


def no_mnemonic_trouble(run, shown: list[dict]) -> None:
    for report in shown:
        keys = report["mnemonics"]
        assert len(keys) == len(set(keys)), report["title"] + ": " + "".join(sorted(keys))
    lines = [line for line in run.stderr.splitlines()
             if "mnemonic" in line and not line.startswith("STYLE_TRANSFER_DIALOG ")]
    assert not lines, "\n".join(lines)


def daemon_answer(daemon, frame: ImageFrame, engine: str, **kwargs) -> np.ndarray:
    with daemon.client() as client:
        result, _ = client.stylize(frame, engine, **kwargs)
    return np.frombuffer(result.data, np.uint8).reshape(result.height, result.width,
                                                        result.channels)


@pytest.fixture(scope="module")
def style_file(session) -> str:
    path = session.shared / "style.png"
    Image.fromarray(pattern(64, 64, 9)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def dialog_run(session, daemon, style_file):
    display = session.gimp.start_display()
    shots = session.shared / "shots"
    shots.mkdir()
    batch_in = session.shared / "batch_in"
    batch_in.mkdir()
    Image.fromarray(pattern(24, 32, 3)).save(batch_in / "a.png")
    photo = pattern(300, 400, 1)
    endpoint = daemon.endpoint
    cases = [
        session.case("adain", P + "adain", ImageSpec(400, 300).add("photo", photo),
                     args={"style-file": {"file": style_file}, "alpha": 0.6,
                           "endpoint": endpoint}, run_mode="interactive"),
        session.case("cyclegan_selection", P + "cyclegan", ImageSpec(400, 300).add(
                         "photo", photo), selection={"rect": [100, 80, 160, 120]},
                     args={"model": CYCLEGAN, "endpoint": endpoint}, run_mode="interactive"),
        session.case("pix2pix", P + "pix2pix", ImageSpec(64, 48).add("photo", photo[:48, :64]),
                     args={"endpoint": endpoint}, run_mode="interactive"),
        session.case("batch_cyclegan", P + "batch",
                     args={"input-folder": {"file": str(batch_in)},
                           "output-folder": {"file": str(session.shared / "out1")},
                           "engine": "cyclegan", "endpoint": endpoint}, run_mode="interactive"),
        session.case("status", P + "status", args={"endpoint": endpoint},
                     run_mode="interactive"),
        session.case("batch_adain", P + "batch",
                     args={"input-folder": {"file": str(batch_in)},
                           "output-folder": {"file": str(session.shared / "out2")},
                           "engine": "adain", "style-file": {"file": style_file},
                           "endpoint": endpoint}, run_mode="interactive"),
        session.case("dead", P + "cyclegan", ImageSpec(64, 48).add("photo", photo[:48, :64]),
                     args={"endpoint": f"ipc://{session.shared}/nobody.sock"},
                     run_mode="interactive"),
        session.case("optimize", P + "optimize",
                     ImageSpec(64, 48).add("photo", photo[:48, :64]),
                     args={"style-file": {"file": style_file}, "iterations": 4, "size": 32,
                           "update-every": 2, "endpoint": endpoint}, run_mode="interactive"),
    ]
    cases = [own_arguments(case) for case in cases]
    env = {"DISPLAY": display, "STYLE_TRANSFER_TEST_DIALOG_RESPONSE": "ok",
           "STYLE_TRANSFER_TEST_SCREENSHOTS": str(shots)}
    results = session.run(cases, env=env, tag="dialogs")
    run = session.last_run
    shown = dialogs(run)
    assert len(shown) == len(cases), run.describe()[-6000:]
    return {"results": results, "run": run, "photo": photo,
            "shown": {case["name"]: report for case, report in zip(cases, shown)}}


def report(dialog_run, name: str) -> dict:
    return dialog_run["shown"][name]


def test_every_dialog_opens_at_once_with_unique_mnemonics(dialog_run):
    shown = list(dialog_run["shown"].values())
    for item in shown:
        if "mapped_after_s" in item:
            assert item["mapped_after_s"] < 5, item
    no_mnemonic_trouble(dialog_run["run"], shown)
    keep_screenshots(shown)


def test_filter_dialog_preview_is_the_daemons_answer(dialog_run, daemon, style_file):
    adain = report(dialog_run, "adain")
    preview = adain["preview"]
    assert (preview["width"], preview["height"]) == (320, 240), preview
    files = adain["preview_files"]
    source = np.fromfile(files["in"], np.uint8).reshape(240, 320, 3)
    shown = np.fromfile(files["out"], np.uint8).reshape(240, 320, 3)
    frame = ImageFrame(320, 240, 3, "uint8", source.tobytes())
    want = daemon_answer(daemon, frame, "adain", options={"alpha": 0.6},
                         style_paths=[style_file])
    np.testing.assert_array_equal(shown, want)
    assert "models" in adain["waiting_when_mapped"] or adain["models"] == ["adain"]
    layer = dialog_run["results"]["adain"]
    assert layer.status == "success", layer.explain()


def test_preview_with_a_selection_and_the_filter_use_the_whole_layer(dialog_run):
    report_ = report(dialog_run, "cyclegan_selection")
    assert report_["preview"]["selection"] is True
    assert dialog_run["results"]["cyclegan_selection"].status == "success"


def test_pix2pix_dialog_speaks_plainly(dialog_run):
    pix2pix = report(dialog_run, "pix2pix")
    assert pix2pix["models"] == ["pix2pix_facades_label2photo"], pix2pix
    assert "norm" in pix2pix["fields"]


def test_optimise_dialog_shows_the_estimate_for_its_settings(dialog_run):
    optimize = report(dialog_run, "optimize")
    text = optimize["estimate"]
    assert text.startswith("Estimated time: ") and "unknown" not in text, optimize
    assert text.endswith("(32 px, 1 scale, 4 iterations)"), text
    assert "update-every" in optimize["fields"]
    assert optimize["models"] == ["adain"], optimize      # it runs on the adain model's VGG
    assert dialog_run["results"]["optimize"].status == "success", \
        dialog_run["results"]["optimize"].explain()


def test_batch_dialog_shows_the_engines_fields_and_models(dialog_run):
    results = dialog_run["results"]
    assert results["batch_cyclegan"].status == "success"
    assert results["batch_adain"].status == "success", results["batch_adain"].explain()
    cyclegan, adain = report(dialog_run, "batch_cyclegan"), report(dialog_run, "batch_adain")
    assert cyclegan["models"] == [CYCLEGAN] and "horse2zebra" in cyclegan["missing"]
    assert "style-file" not in cyclegan["fields"] and "alpha" not in cyclegan["fields"]
    assert {"working-size", "photo-radius", "photo-eps"} <= set(cyclegan["fields"])
    assert adain["models"] == ["adain"]
    assert {"style-file", "alpha", "preserve-color", "working-size", "photo-radius",
            "photo-eps"} <= set(adain["fields"])
    for shown in (cyclegan, adain):               # the model list right below the engine
        rows = shown["rows"]
        assert rows[rows.index("engine") + 1] == "model", rows


def test_backend_status_is_readable(dialog_run, daemon):
    status = report(dialog_run, "status")
    first = status["steps"][0]
    assert first["running"] and not first["start_button"]
    assert daemon.endpoint in status["text"] and CYCLEGAN in status["text"]


def test_an_error_is_shown_once_and_says_what_to_run(dialog_run):
    failed = dialog_run["results"]["dead"]
    assert failed.status == "execution-error", failed.explain()
    message = failed.message
    assert "No style-transfer daemon answers" in message
    # GIMP shows an EXECUTION_ERROR's message itself: the plug-in must not add a Gimp.message
    # (gimp-console prints those on its stderr), only its own one terminal line
    run = dialog_run["run"]
    mine = f"{P}cyclegan: "                       # the plug-in's one line for the terminal
    output = [line for line in (run.stdout + run.stderr).splitlines()
              if not line.startswith(("STYLE_TRANSFER_DIALOG ", mine))]
    # what remains is GIMP's own display of the error ("Calling error for procedure ..."),
    # once; a Gimp.message would add a "...-Warning: <message>" line
    assert sum(message[:60] in line for line in output) == 1, "\n".join(output[-40:])
    dead = report(dialog_run, "dead")
    assert dead["mapped_after_s"] < 5 and CHECK in (dead["problem"] or ""), dead


# ------------------------------------------------------------- no daemon yet: start it

def stop_default_daemon(runtime: Path) -> None:
    state = paths.read_state(runtime) or {}
    endpoint = f"ipc://{runtime / paths.SOCKET_NAME}"
    try:
        with Client(endpoint, autostart=False, timeout=10, runtime_dir=str(runtime)) as client:
            client.shutdown()
    except Exception:
        pass
    deadline = time.monotonic() + 20
    while paths.pid_alive(state.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.1)
    if paths.pid_alive(state.get("pid")):
        os.kill(state["pid"], 9)


def test_status_starts_the_backend_and_a_broken_one_says_what_to_run(session, models_dir):
    display = session.gimp.start_display()
    shots = session.shared / "shots-start"
    shots.mkdir(exist_ok=True)
    good, broken = session.shared / "auto-good", session.shared / "auto-broken"
    for runtime in (good, broken):
        runtime.mkdir(mode=0o700)
    photo = pattern(48, 64, 5)
    env = {"DISPLAY": display, "STYLE_TRANSFER_TEST_DIALOG_RESPONSE": "ok",
           "STYLE_TRANSFER_TEST_SCREENSHOTS": str(shots),
           "STYLE_TRANSFER_MODELS_DIR": models_dir}
    try:
        session.run([own_arguments(session.case("start", P + "status",
                                                run_mode="interactive"))],
                    env={**env, paths.RUNTIME_DIR_ENV: str(good)}, tag="start")
        started = dialogs(session.last_run)[0]
        results = session.run(
            [own_arguments(session.case("broken", P + "cyclegan",
                                        ImageSpec(64, 48).add("photo", photo),
                                        run_mode="interactive"))],
            env={**env, paths.RUNTIME_DIR_ENV: str(broken),
                 "STYLE_TRANSFER_MEMORY_BUDGET": "plenty"}, tag="broken")
        broken_dialog = dialogs(session.last_run)[0]
    finally:
        stop_default_daemon(good)
        stop_default_daemon(broken)
    assert len(started["steps"]) == 2, started
    down, up = started["steps"]
    assert not down["running"] and down["start_button"], started
    assert down["shown_after_s"] < 5
    assert up["running"] and "device" in up["text"], started
    assert broken_dialog["mapped_after_s"] < 5, "the dialog waited for the backend"
    assert "models" in broken_dialog["waiting_when_mapped"]
    assert CHECK in (broken_dialog["problem"] or ""), broken_dialog
    failed = results["broken"]
    assert failed.status == "execution-error" and CHECK in failed.message, failed.explain()
    keep_screenshots([started, broken_dialog], prefix="dialog-no-backend-")
