"""Batch spec validation, folder scan and the output path-safety rules (no models needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from backend.batch import scan as scanning
from backend.batch.spec import (BatchReport, BatchSpec, ItemResult, parse_progress_text,
                                progress_text)
from stclient.errors import BAD_REQUEST, UNREADABLE, StyleTransferError


def make_spec(input_dir: Path, output_dir: Path, **fields) -> BatchSpec:
    return BatchSpec(input_dir=str(input_dir), output_dir=str(output_dir), engine="cyclegan",
                     **fields)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------ spec

def test_spec_round_trips_through_json(tmp_path):
    spec = make_spec(tmp_path / "in", tmp_path / "out", options={"working_size": 64},
                     recursive=True, patterns=["*.JPG"], format="webp", quality=80,
                     overwrite=True, report="r.json", files=["a/b.png"])
    again = BatchSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec


@pytest.mark.parametrize("change, words", [
    ({"input_dir": "relative/in"}, "absolute"),
    ({"output_dir": ""}, "folder path"),
    ({"engine": "dalle"}, "Unknown engine"),
    ({"files": ["../etc/passwd"]}, "'..'"),
    ({"files": ["/etc/passwd"]}, "absolute"),
    ({"files": ["a\\..\\b.png"]}, "relative name"),
    ({"files": ["C:/x.png"]}, "absolute"),
    ({"patterns": ["../*.png"]}, "'..'"),
    ({"report": "../report.json"}, "without folders"),
    ({"report": "/tmp/report.json"}, "without folders"),
    ({"quality": 0}, "quality"),
    ({"quality": 101}, "quality"),
    ({"quality": True}, "quality"),
    ({"format": "gif"}, "format"),
    ({"recursive": "yes"}, "recursive"),
    ({"styles": ["style.png"]}, "absolute"),
    ({"checkpoints": {"generator": "rel.pth"}}, "checkpoints"),
    ({"max_pixels": -5}, "max_pixels"),
    ({"surprise": 1}, "Unknown batch field"),
])
def test_spec_from_json_rejects_bad_fields(tmp_path, change, words):
    data = make_spec(tmp_path / "in", tmp_path / "out").to_json()
    data.update(change)
    with pytest.raises(StyleTransferError) as caught:
        BatchSpec.from_json(data)
    assert caught.value.code == BAD_REQUEST
    assert words in caught.value.message


def test_spec_from_json_needs_the_folders_and_engine():
    with pytest.raises(StyleTransferError, match="Missing batch field"):
        BatchSpec.from_json({"input_dir": "/a", "engine": "cyclegan"})
    with pytest.raises(StyleTransferError, match="JSON object"):
        BatchSpec.from_json(["/a", "/b"])


def test_progress_text_round_trip():
    assert parse_progress_text(progress_text(3, 20, "sub dir/a b.png")) == (3, 20, "sub dir/a b.png")
    assert parse_progress_text("loading model") is None


def test_report_counts_and_exit_status(tmp_path):
    spec = make_spec(tmp_path, tmp_path / "o")
    report = BatchReport(spec=spec, items=[ItemResult("a.png", "ok"), ItemResult("b.png", "skipped")],
                         elapsed_s=2.0)
    assert report.exit_status() == 0 and report.images_per_s == 0.5
    report.items.append(ItemResult("c.png", "failed", code="bad_image", message="corrupt"))
    assert report.exit_status() == 1
    data = json.loads(json.dumps(report.to_json()))
    assert data["counts"] == {"ok": 1, "skipped": 1, "failed": 1, "cancelled": 0}
    assert data["items"][2] == {"input": "c.png", "status": "failed", "output": None,
                                "code": "bad_image", "message": "corrupt", "seconds": 0.0}
    assert BatchReport.from_json(data).to_json() == data


# ------------------------------------------------------------------------------- the roots

def test_output_equal_to_input_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(StyleTransferError, match="same folder") as caught:
        scanning.resolve_roots(make_spec(tmp_path / "in", tmp_path / "in"))
    assert caught.value.code == BAD_REQUEST


def test_output_equal_to_input_through_a_symlink_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    os.symlink(tmp_path / "in", tmp_path / "alias")
    with pytest.raises(StyleTransferError, match="same folder"):
        scanning.resolve_roots(make_spec(tmp_path / "in", tmp_path / "alias"))


def test_output_inside_input_is_refused_when_recursive(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(StyleTransferError, match="inside INPUT_DIR"):
        scanning.resolve_roots(make_spec(tmp_path / "in", tmp_path / "in" / "out",
                                         recursive=True))


def test_output_inside_input_is_allowed_when_not_recursive(tmp_path):
    """Without recursion the scan never looks into OUTPUT_DIR, so no input can be replaced."""
    (tmp_path / "in").mkdir()
    roots = scanning.resolve_roots(make_spec(tmp_path / "in", tmp_path / "in" / "out"))
    assert roots == ((tmp_path / "in").resolve(), (tmp_path / "in" / "out").resolve())


def test_missing_input_and_file_output_are_refused(tmp_path):
    with pytest.raises(StyleTransferError, match="not a folder"):
        scanning.resolve_roots(make_spec(tmp_path / "nope", tmp_path / "out"))
    (tmp_path / "in").mkdir()
    touch(tmp_path / "out.png")
    with pytest.raises(StyleTransferError, match="not a folder"):
        scanning.resolve_roots(make_spec(tmp_path / "in", tmp_path / "out.png"))


# -------------------------------------------------------------------------------- the scan

def _scan(spec: BatchSpec) -> scanning.ScanResult:
    return scanning.scan(spec, *scanning.resolve_roots(spec))


def test_scan_finds_images_sorted_and_ignores_the_rest(tmp_path):
    inp = tmp_path / "in"
    for name in ["b.png", "a.JPG", "c.tiff", "d.webp", "notes.txt", ".hidden.png",
                 "sub/e.jpeg", "sub/deeper/f.png", ".thumbs/g.png"]:
        touch(inp / name)
    flat = _scan(make_spec(inp, tmp_path / "out"))
    assert [i.rel.as_posix() for i in flat.items] == ["a.JPG", "b.png", "c.tiff", "d.webp"]
    assert flat.ignored == 3      # notes.txt, .hidden.png, .thumbs
    deep = _scan(make_spec(inp, tmp_path / "out", recursive=True))
    assert [i.rel.as_posix() for i in deep.items] == [
        "a.JPG", "b.png", "c.tiff", "d.webp", "sub/deeper/f.png", "sub/e.jpeg"]
    assert deep.items[-2].source == inp.resolve() / "sub" / "deeper" / "f.png"


def test_scan_patterns_are_case_insensitive_and_may_name_folders(tmp_path):
    inp = tmp_path / "in"
    for name in ["a.JPG", "b.jpg", "c.png", "sub/d.jpg", "sub/e.png"]:
        touch(inp / name)
    spec = make_spec(inp, tmp_path / "out", recursive=True, patterns=["*.jpg"])
    assert [i.rel.as_posix() for i in _scan(spec).items] == ["a.JPG", "b.jpg", "sub/d.jpg"]
    spec = make_spec(inp, tmp_path / "out", recursive=True, patterns=["sub/*"])
    assert [i.rel.as_posix() for i in _scan(spec).items] == ["sub/d.jpg", "sub/e.png"]


def test_scan_output_names_follow_the_format(tmp_path):
    inp = tmp_path / "in"
    touch(inp / "x.tar.JPG")
    touch(inp / "sub" / "y.png")
    spec = make_spec(inp, tmp_path / "out", recursive=True, format="webp")
    assert [i.output_rel.as_posix() for i in _scan(spec).items] == ["sub/y.webp", "x.tar.webp"]
    spec = make_spec(inp, tmp_path / "out", recursive=True)
    assert [i.output_rel.as_posix() for i in _scan(spec).items] == ["sub/y.png", "x.tar.JPG"]


def test_two_inputs_with_one_output_name_are_reported_not_overwritten(tmp_path):
    inp = tmp_path / "in"
    touch(inp / "a.png")
    touch(inp / "a.jpg")
    result = _scan(make_spec(inp, tmp_path / "out", format="png"))
    assert [i.rel.as_posix() for i in result.items] == ["a.jpg"]
    assert len(result.problems) == 1
    assert result.problems[0].input == "a.png" and result.problems[0].code == BAD_REQUEST
    assert "also be the output of a.jpg" in result.problems[0].message


def test_symlink_loop_folders_are_reported_and_not_followed(tmp_path):
    inp = tmp_path / "in"
    touch(inp / "sub" / "a.png")
    os.symlink("..", inp / "sub" / "loop")           # back to the input root
    os.symlink(inp / "sub", inp / "sub" / "self")    # to its own folder
    os.symlink(tmp_path / "elsewhere", inp / "linked")   # a fine link to another folder
    touch(tmp_path / "elsewhere" / "b.png")
    result = _scan(make_spec(inp, tmp_path / "out", recursive=True))
    assert [i.rel.as_posix() for i in result.items] == ["linked/b.png", "sub/a.png"]
    assert sorted((p.input, p.code) for p in result.problems) == [
        ("sub/loop", UNREADABLE), ("sub/self", UNREADABLE)]
    assert all("Symlink loop" in p.message for p in result.problems)


def test_explicit_file_lists_are_used_as_given(tmp_path):
    inp = tmp_path / "in"
    touch(inp / "a.png")
    touch(inp / "sub" / "b.dat")
    result = _scan(make_spec(inp, tmp_path / "out", files=["sub/b.dat", "a.png"]))
    assert [i.rel.as_posix() for i in result.items] == ["a.png", "sub/b.dat"]


def test_check_readable_explains_what_cannot_be_read(tmp_path):
    assert scanning.check_readable(touch(tmp_path / "ok.png")) is None
    (tmp_path / "dir.png").mkdir()
    assert "folder" in scanning.check_readable(tmp_path / "dir.png")
    os.mkfifo(tmp_path / "pipe.png")                 # opening it for reading must not block
    assert "not a regular file" in scanning.check_readable(tmp_path / "pipe.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    assert "Symlink loop" in scanning.check_readable(tmp_path / "loop.png")
    os.symlink("missing.png", tmp_path / "dangling.png")
    assert "Cannot open" in scanning.check_readable(tmp_path / "dangling.png")


# ------------------------------------------------------------------------- output targets

def _item(rel: str, source: Path) -> scanning.BatchItem:
    return scanning.BatchItem(rel=PurePosixPath(rel), source=source, output_rel=PurePosixPath(rel))


def test_output_target_creates_folders_inside_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = scanning.output_target(out, tmp_path / "in", _item("a/b/c.png", tmp_path / "x"),
                                    create=True)
    assert target == out / "a" / "b" / "c.png" and (out / "a" / "b").is_dir()
    assert not target.exists()


def test_symlinked_output_folder_pointing_outside_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim").mkdir()
    os.symlink(tmp_path / "victim", out / "sub")
    with pytest.raises(StyleTransferError, match="outside OUTPUT_DIR") as caught:
        scanning.output_target(out, tmp_path / "in", _item("sub/a.png", tmp_path / "x"),
                               create=True)
    assert caught.value.code == BAD_REQUEST
    assert list((tmp_path / "victim").iterdir()) == []
    (out / "real").mkdir()                            # a link that stays inside is fine
    os.symlink(out / "real", out / "alias")
    target = scanning.output_target(out, tmp_path / "in", _item("alias/a.png", tmp_path / "x"))
    assert target == out / "real" / "a.png"


def test_output_target_never_names_an_input(tmp_path):
    """INPUT_DIR inside OUTPUT_DIR: an output that lands in the input tree is refused."""
    out = tmp_path / "photos"
    inp = out / "raw"
    source = touch(inp / "raw" / "a.png")
    touch(inp / "a.png")
    with pytest.raises(StyleTransferError, match="INPUT_DIR|input file"):
        scanning.output_target(out.resolve(), inp.resolve(), _item("raw/a.png", source))


def test_output_target_refuses_a_folder_in_the_way(tmp_path):
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    with pytest.raises(StyleTransferError, match="folder of that name"):
        scanning.output_target(out, tmp_path / "in", _item("a.png", tmp_path / "x"))
