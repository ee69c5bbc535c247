"""The optimisation filters in the real GIMP 3 (headless), against the real daemon on the host:
with `update-every` the result layer is made at the first image so far and updated in place
(one layer, counted updates, the final name), and the result is the same pixels as a run with
updates off. Tiny images and few iterations on a random VGG in the released layout."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.gimp.harness import ImageSpec, gimp_session
from tests.helpers.checkpoints import make_models_dir
from tests.gimp.test_gimp_plugin import _plugin_pids   # the plug-in's processes, by pid
from tests.helpers.daemon import start_daemon
from tests.unit.test_cin_engine import photo

pytestmark = pytest.mark.gimp
P = "python-fu-style-transfer-"
CONTENT = photo(32, 40, seed=21)


@pytest.fixture(scope="module")
def session():
    with gimp_session() as gimp:
        yield gimp


@pytest.fixture(scope="module")
def run(session):
    models = make_models_dir(session.shared / "models")
    style = session.shared / "starry.png"
    Image.fromarray(photo(32, 32, seed=22)).save(style)
    handle = start_daemon(models, runtime_dir=session.shared / "run")
    try:
        common = {"style-file": {"file": str(style)}, "size": 40, "endpoint": handle.endpoint}
        cases = [
            session.case("live", P + "optimize", ImageSpec(40, 32).add("photo", CONTENT),
                         args={**common, "iterations": 8, "update-every": 2}),
            session.case("off", P + "optimize", ImageSpec(40, 32).add("photo", CONTENT),
                         args={**common, "iterations": 8, "update-every": 0}),
            session.case("photo", P + "photo", ImageSpec(40, 32).add("photo", CONTENT),
                         args={**common, "iterations": 5, "update-every": 2}),
            session.case("selection", P + "optimize", ImageSpec(40, 32).add("photo", CONTENT),
                         selection={"ellipse": [6, 4, 28, 22], "feather": 6},
                         args={**common, "iterations": 4, "update-every": 1}),
            session.case("selection_off", P + "optimize",
                         ImageSpec(40, 32).add("photo", CONTENT),
                         selection={"ellipse": [6, 4, 28, 22], "feather": 6},
                         args={**common, "iterations": 4, "update-every": 0}),
        ]
        results = session.run(cases, env={"STYLE_TRANSFER_TIMING": "1"})
    finally:
        handle.stop()
    timing = [json.loads(line.split(" ", 1)[1]) for line in session.last_run.stderr.splitlines()
              if line.startswith("STYLE_TRANSFER_TIMING ")]
    return results, timing


def test_the_result_layer_is_updated_while_it_runs(run):
    results, timing = run
    live, off = results["live"], results["off"]
    assert live.status == "success", live.explain()
    assert off.status == "success", off.explain()
    assert [t["procedure"] for t in timing] == [P + "optimize", P + "optimize", P + "photo",
                                                P + "optimize", P + "optimize"]
    # iterations 2, 4, 6 of 8 are sent (the 8th is the result itself); one that comes while the
    # plug-in still draws the last is replaced by a newer one, never queued: 2 or 3 are shown
    assert 2 <= timing[0]["intermediate_updates"] <= 3, timing[0]
    assert timing[1]["intermediate_updates"] == 0, timing[1]
    for result in (live, off):
        names = [layer["name"] for layer in result.layers]
        assert names == ["Optimise (Gatys): starry", "photo"], names   # one new layer, renamed
    ours = live.pixels(live.layers[0])
    assert ours.shape[:2] == CONTENT.shape[:2]
    assert not np.array_equal(ours[..., :3], CONTENT)
    # updating the layer on the way changes nothing in the result
    np.testing.assert_array_equal(ours, off.pixels(off.layers[0]))


def test_the_photo_filter_updates_too(run):
    results, timing = run
    result = results["photo"]
    assert result.status == "success", result.explain()
    assert 1 <= timing[2]["intermediate_updates"] <= 2, timing[2]  # iterations 2 and 4 of 5
    assert [layer["name"] for layer in result.layers] == ["Photo Style (Deep Photo): starry",
                                                          "photo"]


def test_updates_inside_a_selection_end_as_without_them(run):
    """Each update writes the pixels again and makes the selection the alpha again: the final
    layer equals a run without updates, alpha (feathered edge) included."""
    results, timing = run
    live, off = results["selection"], results["selection_off"]
    assert live.status == "success", live.explain()
    assert off.status == "success", off.explain()
    # iterations 1, 2, 3 of 4, a quarter second apart: drawing the first (inserting the layer,
    # the selection as its alpha) can take longer than the rest of the run
    assert 1 <= timing[3]["intermediate_updates"] <= 3, timing[3]
    ours, theirs = live.pixels(live.layers[0]), off.pixels(off.layers[0])
    assert ours.shape[2] == 4 and ours[..., 3].min() == 0 and ours[..., 3].max() == 255
    assert len(np.unique(ours[..., 3])) > 2                        # the feathered edge
    np.testing.assert_array_equal(ours, theirs)


def test_a_cancelled_run_keeps_the_last_image_it_showed(session):
    """GIMP's Cancel kills the plug-in: done here the same way (SIGKILL) once the daemon's job
    is past a few updates. The result layer stays, with the last image so far and a name that
    says which iteration it shows; the daemon drops the job."""
    models = make_models_dir(session.shared / "models-cancel")
    style = session.shared / "cancel-style.png"
    Image.fromarray(photo(32, 32, seed=23)).save(style)
    handle = start_daemon(models, runtime_dir=session.shared / "run")
    outcome: dict = {}
    try:
        case = session.case("cancel", P + "optimize", ImageSpec(40, 32).add("photo", CONTENT),
                            args={"style-file": {"file": str(style)}, "size": 40,
                                  "iterations": 400, "update-every": 3,
                                  "endpoint": handle.endpoint})
        runner = threading.Thread(target=lambda: outcome.update(
            session.run([case], tag="cancel")), daemon=True)
        runner.start()
        with handle.client() as client:
            deadline = time.monotonic() + 240
            shown = 0
            while time.monotonic() < deadline and shown < 10:
                running = client.status().get("running") or {}
                match = re.match(r"iteration (\d+) of", running.get("text") or "")
                shown = int(match.group(1)) if match else 0
                time.sleep(0.1)
            assert shown >= 10, "the job never got going"
            pids = _plugin_pids()
            assert pids, "no plug-in process found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            runner.join(180)
            assert not runner.is_alive(), "GIMP did not come back after the plug-in died"
            deadline = time.monotonic() + 30
            while client.status().get("running") is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.status().get("running") is None, "the daemon kept the job"
    finally:
        handle.stop()
    result = outcome["cancel"]
    assert result.status != "success", result.explain()
    names = [layer["name"] for layer in result.layers]
    assert len(names) == 2 and names[1] == "photo", names
    assert re.fullmatch(r"Optimise \(Gatys\): cancel-style \(iteration (\d+) of 400 so far\)",
                        names[0]), names
    kept = result.pixels(result.layers[0])
    assert kept.shape[:2] == CONTENT.shape[:2]
    assert not np.array_equal(kept[..., :3], CONTENT)
