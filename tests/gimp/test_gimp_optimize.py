"""The optimisation filters in the real GIMP 3 (headless), against the real daemon on the host:
with `update-every` the result layer is made at the first image so far and updated in place
(one layer, counted updates, the final name), and the result is the same pixels as a run with
updates off. Tiny images and few iterations on a random VGG in the released layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.gimp.harness import ImageSpec, gimp_session
from tests.helpers.checkpoints import make_models_dir
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
