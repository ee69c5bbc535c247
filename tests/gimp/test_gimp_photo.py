"""Colour Transfer and the photorealistic smoothing in the real GIMP 3 (headless, trixie chroot)
against the real daemon: Filters > Style Transfer > Colour Transfer... exists (from its card, with
no model argument), gives a new layer whose colour statistics moved to the style's (the daemon's
own answer, bit for bit), with a selection only inside it (its statistics matched, the rest
kept); the feed-forward filters take photo-radius/photo-eps; and the dialogs (Xvfb) show those
fields, a model box that says Colour Transfer uses none, and a preview; the batch procedure runs
it over a folder and takes the smoothing (photo-radius, photo-eps)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.gimp.harness import ImageSpec, gimp_session
from stclient.protocol import ImageFrame
from tests.gimp.test_gimp_dialogs import (daemon_answer, dialogs, keep_screenshots,
                                          no_mnemonic_trouble, own_arguments)
from tests.gimp.test_gimp_plugin import expected, new_layer, ok
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon
from tests.helpers.examples import example

pytestmark = pytest.mark.gimp

P = "python-fu-style-transfer-"
PHOTO = example("content/city.jpg", (64, 48))
STYLE = example("styles/mosaic.jpg", (48, 48))
RECT = (8, 6, 32, 24)                         # x, y, w, h


@pytest.fixture(scope="module")
def session():
    with gimp_session() as gimp:
        yield gimp


@pytest.fixture(scope="module")
def daemon(session):
    handle = start_daemon(make_models_dir(session.shared / "models"),
                          runtime_dir=session.shared / "run")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def style_file(session) -> str:
    path = session.shared / "style.png"
    Image.fromarray(STYLE).save(path)
    return str(path)


@pytest.fixture(scope="module")
def runs(session, daemon, style_file):
    endpoint = daemon.endpoint
    case = session.case
    cases = [
        case("colour", P + "colortransfer", ImageSpec(64, 48).add("photo", PHOTO),
             args={"style-file": {"file": style_file}, "endpoint": endpoint}),
        case("colour_selection", P + "colortransfer", ImageSpec(64, 48).add("photo", PHOTO),
             selection={"rect": list(RECT)},
             args={"style-file": {"file": style_file}, "alpha": 0.8, "endpoint": endpoint}),
        case("adain_smooth", P + "adain", ImageSpec(64, 48).add("photo", PHOTO),
             args={"style-file": {"file": style_file}, "photo-radius": 4, "photo-eps": 0.001,
                   "endpoint": endpoint}),
    ]
    batch_in = session.shared / "batch_in"
    batch_in.mkdir()
    for name in ("city", "still_life"):
        Image.fromarray(example(f"content/{name}.jpg", (40, 32))).save(batch_in / f"{name}.png")
    cases.append(case("colour_batch", P + "batch",
                      args={"input-folder": {"file": str(batch_in)},
                            "output-folder": {"file": str(session.shared / "batch_out")},
                            "engine": "colortransfer", "style-file": {"file": style_file},
                            "alpha": 0.5, "endpoint": endpoint}))
    cases.append(case("smooth_batch", P + "batch",
                      args={"input-folder": {"file": str(batch_in)},
                            "output-folder": {"file": str(session.shared / "smooth_out")},
                            "engine": "adain", "style-file": {"file": style_file},
                            "photo-radius": 4, "photo-eps": 0.001, "endpoint": endpoint}))
    results = session.run(cases)
    display = session.gimp.start_display()
    shots = session.shared / "shots"
    shots.mkdir()
    # a 640x480 layer: the preview is half its size, so radius 8 is 4 there
    interactive = [own_arguments(case(name, P + engine, ImageSpec(640, 480).add(
        "photo", example("content/landscape.jpg", (640, 480))),
        args={"style-file": {"file": style_file}, "endpoint": endpoint, **extra},
        run_mode="interactive")) for name, engine, extra in (
            ("colour_dialog", "colortransfer", {}),
            ("adain_dialog", "adain", {"photo-radius": 8, "photo-eps": 0.001}))]
    env = {"DISPLAY": display, "STYLE_TRANSFER_TEST_DIALOG_RESPONSE": "ok",
           "STYLE_TRANSFER_TEST_SCREENSHOTS": str(shots)}
    results.update(session.run(interactive, env=env, tag="dialogs"))
    shown = dialogs(session.last_run)
    no_mnemonic_trouble(session.last_run, shown)
    keep_screenshots(shown)                    # STYLE_TRANSFER_DOC_IMAGES=1: into docs/images
    results["shown"] = {c["name"]: report for c, report in zip(interactive, shown)}
    return results


def lab_mean(pixels: np.ndarray) -> np.ndarray:
    import torch

    from backend.optim.color import pixel_stats, rgb_to_lab
    tensor = torch.from_numpy(pixels[..., :3].astype(np.float64) / 255).permute(2, 0, 1)[None]
    return pixel_stats(rgb_to_lab(tensor))[0].numpy()


def test_colour_transfer_menu_gives_the_styles_colours(runs, daemon, style_file):
    result = ok(runs["colour"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "Colour Transfer: style α=1"
    got = result.pixels(layer)
    np.testing.assert_array_equal(got, expected(daemon, PHOTO, "colortransfer",
                                                style_paths=[style_file]))
    before = np.abs(lab_mean(PHOTO) - lab_mean(STYLE)).max()
    after = np.abs(lab_mean(got) - lab_mean(STYLE)).max()
    assert after < before / 5, (before, after)


def test_colour_transfer_with_a_selection_matches_only_the_selection(runs, daemon, style_file):
    result = ok(runs["colour_selection"])
    got = result.pixels(new_layer(result, "photo"))
    x, y, w, h = RECT
    mask = result.selection(64, 48)
    assert mask[y:y + h, x:x + w].min() == 1.0 and mask.sum() == w * h
    np.testing.assert_array_equal(got[mask == 0], PHOTO[mask == 0])
    want = expected(daemon, PHOTO, "colortransfer", style_paths=[style_file], mask=mask,
                    options={"alpha": 0.8})
    np.testing.assert_array_equal(got, want)
    inside, style = got[y:y + h, x:x + w], STYLE
    assert np.abs(lab_mean(inside) - lab_mean(style)).max() < \
        np.abs(lab_mean(PHOTO[y:y + h, x:x + w]) - lab_mean(style)).max() / 2


def test_feed_forward_filters_take_the_smoothing(runs, daemon, style_file):
    result = ok(runs["adain_smooth"])
    got = result.pixels(new_layer(result, "photo"))
    want = expected(daemon, PHOTO, "adain", style_paths=[style_file],
                    options={"photo_radius": 4, "photo_eps": 0.001})
    np.testing.assert_array_equal(got, want)
    plain = expected(daemon, PHOTO, "adain", style_paths=[style_file])
    assert np.abs(got.astype(int) - plain.astype(int)).mean() > 1


def test_the_dialogs_show_the_new_fields(runs):
    colour, adain = runs["shown"]["colour_dialog"], runs["shown"]["adain_dialog"]
    assert {"style-file", "alpha", "histogram-method", "color-space", "keep-luminance",
            "use-selection"} <= set(colour["fields"]), colour
    assert "model" not in colour["fields"] and colour["problem"] is None
    assert colour["preview"]["width"] == 320, colour
    assert {"photo-radius", "photo-eps"} <= set(adain["fields"]), adain


def test_the_preview_smooths_at_its_own_scale(runs, daemon, style_file):
    """The dialog's preview is the daemon's answer for the small copy with the radius scaled
    to it (8 px of the layer are 4 px of the half-size preview)."""
    files = runs["shown"]["adain_dialog"]["preview_files"]
    source = np.fromfile(files["in"], np.uint8).reshape(240, 320, 3)
    shown = np.fromfile(files["out"], np.uint8).reshape(240, 320, 3)
    frame = ImageFrame(320, 240, 3, "uint8", source.tobytes())
    want = daemon_answer(daemon, frame, "adain", style_paths=[style_file],
                         options={"photo_radius": 4, "photo_eps": 0.001})
    np.testing.assert_array_equal(shown, want)
    unscaled = daemon_answer(daemon, frame, "adain", style_paths=[style_file],
                             options={"photo_radius": 8, "photo_eps": 0.001})
    assert not np.array_equal(shown, unscaled)
    assert ok(runs["adain_dialog"])


def batch_results(runs, session, case: str, folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(source, output) pixels of a batch case that must have done both images."""
    result = ok(runs[case])
    done, skipped, failed, summary = result.raw["returned"]
    assert (done, skipped, failed) == (2, 0, 0), summary
    return [(np.asarray(Image.open(session.shared / "batch_in" / name)),
             np.asarray(Image.open(session.shared / folder / name)))
            for name in ("city.png", "still_life.png")]


def test_the_batch_procedure_runs_colour_transfer(runs, daemon, session, style_file):
    for source, got in batch_results(runs, session, "colour_batch", "batch_out"):
        np.testing.assert_array_equal(got, expected(daemon, source, "colortransfer",
                                                    style_paths=[style_file],
                                                    options={"alpha": 0.5}))
        assert np.abs(got.astype(int) - source.astype(int)).mean() > 2


def test_the_batch_procedure_takes_the_photorealistic_smoothing(runs, daemon, session,
                                                                 style_file):
    smoothing = {"photo_radius": 4, "photo_eps": 0.001}
    for source, got in batch_results(runs, session, "smooth_batch", "smooth_out"):
        np.testing.assert_array_equal(got, expected(daemon, source, "adain",
                                                    style_paths=[style_file], options=smoothing))
        assert not np.array_equal(got, expected(daemon, source, "adain",
                                                style_paths=[style_file]))
