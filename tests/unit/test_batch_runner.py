"""run_batch on real files with real (random-weight) models: formats, bad files, resume, cancel,
path safety. Images are tiny (24-40 px) so the whole file runs in seconds."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import imageio
from backend.batch import runner as batch_runner
from backend.batch.runner import run_batch, temp_target_name
from backend.batch.spec import BatchSpec, parse_progress_text
from backend.engines.job import StylizeJob
from stclient.errors import (BAD_REQUEST, BUSY, UNKNOWN_MODEL, StyleTransferError)
from stclient.registry import resolve_options

from tests.helpers.batch_folders import (EXIF_ORIENTATION, make_bad_files, make_mixed_folder,
                                         make_plain_folder, smooth_image)
from tests.helpers.checkpoints import make_models_dir

ENGINE, MODEL = "cyclegan", "style_monet"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def runtime(models_dir):
    from backend.runtime import Runtime
    return Runtime(device="cpu", models_dir=models_dir, threads=1)


def spec_for(inp: Path, out: Path, **fields) -> BatchSpec:
    fields.setdefault("engine", ENGINE)
    fields.setdefault("model", MODEL)
    return BatchSpec(input_dir=str(inp), output_dir=str(out), **fields)


def expected_output(runtime, source: Path, out_format: str, quality: int = 95,
                    engine: str = ENGINE, model: str = MODEL, styles=(), options=None) -> np.ndarray:
    """What `stylize` gives for one file: read, run, encode the same way, decode again."""
    loaded = imageio.read_image(source)
    pixels = runtime.stylize(StylizeJob(engine=engine, content=loaded.pixels, model=model,
                                        styles=list(styles),
                                        options=resolve_options(engine, options or {})))
    data = imageio.encode_image_bytes(pixels, out_format, icc_profile=loaded.icc_profile,
                                      exif=loaded.exif, quality=quality)
    return imageio.decode_image_bytes(data).pixels


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------- formats and layout

def test_mixed_folder_matches_per_file_stylize(runtime, models_dir, tmp_path, monkeypatch):
    """Every output equals what `python -m backend stylize FILE -o OUT` gives for that file."""
    from backend.cli import main as cli_main
    inp, out, single = tmp_path / "in", tmp_path / "out", tmp_path / "single"
    made = make_mixed_folder(inp, side=24)
    report = run_batch(spec_for(inp, out, recursive=True, quality=90), runtime)
    assert report.exit_status() == 0, report.to_json()
    assert report.count("ok") == len(made)
    outputs = {item.input: item.output for item in report.items}
    assert outputs["old.bmp"] == "old.png"               # BMP cannot be written: PNG instead
    assert files_under(out) == sorted(outputs.values())  # structure kept, nothing else written
    monkeypatch.setenv("STYLE_TRANSFER_MODELS_DIR", str(models_dir))
    for rel, out_rel in outputs.items():
        (single / out_rel).parent.mkdir(parents=True, exist_ok=True)
        assert cli_main(["stylize", str(inp / rel), "-o", str(single / out_rel), "--engine",
                         ENGINE, "--model", MODEL, "--device", "cpu", "--threads", "1",
                         "--quality", "90", "--quiet"]) == 0
        source_image = imageio.read_image(inp / rel)
        result = imageio.read_image(out / out_rel)
        want = imageio.read_image(single / out_rel).pixels
        assert result.pixels.shape == source_image.pixels.shape, rel     # upright, channels kept
        assert result.pixels.dtype == want.dtype, rel
        np.testing.assert_array_equal(result.pixels, want, err_msg=rel)
        if source_image.pixels.shape[2] in (2, 4):                       # alpha untouched
            np.testing.assert_array_equal(result.pixels[..., -1], source_image.pixels[..., -1])
    assert imageio.read_image(out / "deep16.png").pixels.dtype == np.uint16
    photo = Image.open(out / "sub" / "photo.jpg")
    assert Image.open(inp / "sub" / "photo.jpg").size == (24, 32)    # stored sideways
    assert photo.size == (32, 24)                                    # written upright
    assert photo.getexif().get(EXIF_ORIENTATION, 1) == 1
    assert photo.getexif().get(0x010F) == "TestCam"
    assert photo.info.get("icc_profile") == Image.open(inp / "sub" / "photo.jpg").info["icc_profile"]


def test_format_conversion_and_quality(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_mixed_folder(inp, side=24)
    report = run_batch(spec_for(inp, out, format="jpg", quality=70), runtime)
    assert sorted(files_under(out)) == ["alpha.jpg", "deep16.jpg", "grey.jpg", "old.jpg"]
    assert report.exit_status() == 0
    want = expected_output(runtime, inp / "alpha.png", "JPEG", quality=70)
    np.testing.assert_array_equal(imageio.read_image(out / "alpha.jpg").pixels, want)


def test_adain_style_is_encoded_once_per_batch(models_dir, tmp_path):
    from backend.runtime import Runtime
    rt = Runtime(device="cpu", models_dir=models_dir, threads=1)
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 3, 32)
    style = tmp_path / "style.png"
    Image.fromarray(smooth_image(77, 40, 40)).save(style)
    report = run_batch(spec_for(inp, out, engine="adain", model="adain", styles=[str(style)],
                                options={"alpha": 0.7}), rt)
    assert report.count("ok") == 3
    assert rt.stats["style_encodes"] == 1 and rt.stats["style_cache_hits"] == 2
    want = expected_output(rt, inp / "img_0001.png", "PNG", engine="adain", model="adain",
                           styles=[imageio.read_image(style).pixels], options={"alpha": 0.7})
    np.testing.assert_array_equal(imageio.read_image(out / "img_0001.png").pixels, want)


# ---------------------------------------------------------------------------- bad inputs

def test_bad_files_are_reported_and_the_rest_written(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    expected = make_bad_files(inp)
    report = run_batch(spec_for(inp, out, recursive=True), runtime)
    failed = {item.input: item for item in report.failures}
    assert {rel: item.code for rel, item in failed.items()} == expected
    assert all(item.message for item in failed.values())
    assert report.count("ok") == 1 and files_under(out) == ["good.png"]
    assert report.exit_status() == 1
    assert "megapixels" in failed["bomb.png"].message


def test_a_model_error_stops_the_batch_before_any_file(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 2, 24)
    with pytest.raises(StyleTransferError) as caught:
        run_batch(spec_for(inp, out, model="no_such_model"), runtime)
    assert caught.value.code == UNKNOWN_MODEL
    assert files_under(out) == []


def test_output_inside_input_is_refused_and_nothing_written(runtime, tmp_path):
    inp = tmp_path / "in"
    make_plain_folder(inp, 2, 24)
    with pytest.raises(StyleTransferError) as caught:
        run_batch(spec_for(inp, inp / "styled", recursive=True), runtime)
    assert caught.value.code == BAD_REQUEST
    assert files_under(inp) == ["img_0000.png", "img_0001.png"]


def test_inputs_are_never_modified(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_mixed_folder(inp, side=24)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in inp.rglob("*") if p.is_file()}
    run_batch(spec_for(inp, out, recursive=True, overwrite=True), runtime)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in inp.rglob("*") if p.is_file()}
    assert before == after


def test_symlinked_output_folder_pointing_elsewhere_is_refused(runtime, tmp_path):
    inp, out, victim = tmp_path / "in", tmp_path / "out", tmp_path / "victim"
    make_plain_folder(inp / "sub", 1, 24)
    make_plain_folder(inp, 1, 24)
    victim.mkdir()
    out.mkdir()
    os.symlink(victim, out / "sub")
    report = run_batch(spec_for(inp, out, recursive=True), runtime)
    assert [(i.input, i.code) for i in report.failures] == [("sub/img_0000.png", BAD_REQUEST)]
    assert "outside OUTPUT_DIR" in report.failures[0].message
    assert list(victim.iterdir()) == []
    assert (out / "img_0000.png").is_file()


# ------------------------------------------------------------------- resume and temp files

def test_rerun_skips_finished_outputs_and_overwrite_redoes_them(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 3, 24)
    first = run_batch(spec_for(inp, out), runtime)
    assert first.count("ok") == 3
    (out / "img_0001.png").unlink()
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("img_0000.png", "img_0002.png")}
    second = run_batch(spec_for(inp, out), runtime)
    assert [(i.input, i.status) for i in second.items] == [
        ("img_0000.png", "skipped"), ("img_0001.png", "ok"), ("img_0002.png", "skipped")]
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps
    assert second.exit_status() == 0
    third = run_batch(spec_for(inp, out, overwrite=True), runtime)
    assert third.count("ok") == 3


def test_temp_name_rule_matches_what_write_image_creates(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(imageio.os, "replace", spy)
    imageio.write_image(tmp_path / "some.name.png", np.zeros((4, 4, 3), np.uint8))
    assert len(seen) == 1
    temp, final = seen[0]
    assert temp_target_name(temp) == final == "some.name.png"
    assert temp_target_name("some.name.png") is None
    assert temp_target_name(".hidden.png") is None


def test_stale_temp_files_of_a_killed_run_are_removed(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 2, 24)
    out.mkdir()
    stale = out / ".img_0000.png.ab12cd34.tmp"
    stale.write_bytes(b"half a png")
    unrelated = [out / ".other.png.ab12cd34.tmp", out / ".keep"]
    for path in unrelated:
        path.write_bytes(b"not ours")
    report = run_batch(spec_for(inp, out), runtime)
    assert report.count("ok") == 2
    assert not stale.exists()
    assert all(path.exists() for path in unrelated)
    assert files_under(out) == sorted([".keep", ".other.png.ab12cd34.tmp", "img_0000.png",
                                       "img_0001.png"])


def test_a_second_batch_into_the_same_output_is_refused(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 1, 24)
    out.mkdir()
    with batch_runner._exclusive(out.resolve()):
        with pytest.raises(StyleTransferError) as caught:
            run_batch(spec_for(inp, out), runtime)
    assert caught.value.code == BUSY
    assert run_batch(spec_for(inp, out), runtime).count("ok") == 1   # lock released


def test_report_written_into_output_dir(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_bad_files(inp)
    run_batch(spec_for(inp, out, report="report.json"), runtime)
    data = json.loads((out / "report.json").read_text())
    assert data["counts"]["ok"] == 1 and data["counts"]["failed"] == 8
    by_input = {item["input"]: item for item in data["items"]}
    assert by_input["empty.png"]["code"] == "bad_image"
    assert set(by_input["empty.png"]) >= {"input", "status", "code", "message"}


# ----------------------------------------------------------------------- cancel and hooks

def test_cancel_stops_after_the_image_in_hand(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 5, 24)
    stop = threading.Event()

    def progress(fraction: float, text: str) -> None:
        parsed = parse_progress_text(text)
        if parsed is not None and parsed[0] >= 2:
            stop.set()

    report = run_batch(spec_for(inp, out), runtime, progress, stop.is_set)
    assert [i.status for i in report.items] == ["ok", "ok", "cancelled", "cancelled", "cancelled"]
    assert report.cancelled and report.exit_status() == 1
    assert files_under(out) == ["img_0000.png", "img_0001.png"]
    resumed = run_batch(spec_for(inp, out), runtime)
    assert [i.status for i in resumed.items] == ["skipped", "skipped", "ok", "ok", "ok"]


def test_abort_drops_the_image_in_hand(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 3, 24)
    calls = {"n": 0}

    def abort() -> bool:          # polled by the runtime inside the second image
        return calls["n"] >= 2

    def progress(fraction: float, text: str) -> None:
        parsed = parse_progress_text(text)
        if parsed is not None and parsed[0] == 1:
            calls["n"] += 1

    report = run_batch(spec_for(inp, out), runtime, progress, abort=abort)
    assert [i.status for i in report.items] == ["ok", "cancelled", "cancelled"]
    assert files_under(out) == ["img_0000.png"]


def test_between_images_runs_before_each_computed_image(runtime, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 3, 24)
    (inp / "broken.png").write_bytes(b"nope")
    events = []
    report = run_batch(spec_for(inp, out), runtime,
                       progress=lambda f, t: events.append(("progress", t)),
                       between_images=lambda: events.append(("between", None)))
    assert report.count("ok") == 3
    assert sum(1 for kind, _ in events if kind == "between") == 3   # not for the broken file
    finals = [parse_progress_text(t) for kind, t in events if kind == "progress"]
    finals = [p for p in finals if p is not None]
    assert finals[-1] == (4, 4, "done")
