"""`python -m backend batch` as a user runs it (--in-process, in a subprocess): exit codes,
console summary, JSON report, SIGKILL half-way then resume, Ctrl-C, unreadable files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend import PROJECT_ROOT, imageio
from backend.batch.progressbar import ProgressBar, format_duration
from backend.engines.job import StylizeJob

from tests.helpers.batch_folders import (image_files, make_bad_files, make_plain_folder,
                                         wait_for_outputs)
from tests.helpers.checkpoints import make_models_dir

BASE = ["--engine", "cyclegan", "--model", "style_monet", "--in-process", "--device", "cpu",
        "--threads", "1"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_models_dir(tmp_path_factory.mktemp("models"))


def run_cli(args, models_dir, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir), PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "backend", "batch", *map(str, args)],
                          cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def start_cli(args, models_dir) -> subprocess.Popen:
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "backend", "batch", *map(str, args)],
                            cwd=str(PROJECT_ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def hidden_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*") if p.is_file())


# ------------------------------------------------------------------------ exit codes, report

def test_success_exit_0_and_report(models_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 2, 24)
    result = run_cli([inp, out, *BASE, "--report", tmp_path / "r.json"], models_dir)
    assert result.returncode == 0, result.stderr
    assert "2 written" in result.stdout and "0 failed" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"ok": 2, "skipped": 0, "failed": 0, "cancelled": 0}
    assert image_files(out) == ["img_0000.png", "img_0001.png"]


def test_bad_files_exit_1_with_console_and_json_report(models_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    expected = make_bad_files(inp)
    result = run_cli([inp, out, *BASE, "--recursive", "--report", tmp_path / "r.json"], models_dir)
    assert result.returncode == 1, result.stderr
    assert "1 written" in result.stdout and f"{len(expected)} failed" in result.stdout
    for rel, code in expected.items():
        assert f"failed: {rel}: [{code}]" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    failures = {i["input"]: i for i in report["items"] if i["status"] == "failed"}
    assert {rel: item["code"] for rel, item in failures.items()} == expected
    assert all(item["message"] for item in failures.values())
    assert image_files(out) == ["good.png"]


@pytest.mark.parametrize("extra, words", [
    (["--recursive", "--output-inside"], "inside INPUT_DIR"),
    (["--same-output"], "same folder"),
    (["--quality", "0"], "quality"),
    (["--alpha", "0.5"], "--alpha is an option of adain"),
    (["--working-size", "-3"], "working_size"),
    (["--threads", "0"], "--threads"),
])
def test_usage_errors_exit_2(models_dir, tmp_path, extra, words):
    inp = tmp_path / "in"
    make_plain_folder(inp, 1, 24)
    out = tmp_path / "out"
    if "--output-inside" in extra:
        extra, out = [e for e in extra if e != "--output-inside"], inp / "styled"
    if "--same-output" in extra:
        extra, out = [], inp
    result = run_cli([inp, out, *BASE, *extra], models_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert words in result.stderr
    assert image_files(inp) == ["img_0000.png"]


def test_batch_flags_build_the_spec(tmp_path, monkeypatch):
    """The engine flags come from stclient.options (shared with stylize); paths become absolute."""
    from backend.cli import build_parser
    from backend.commands.batch import build_spec

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args([
        "batch", "in", "out", "--engine", "adain", "--style", "s1.png", "--style", "s2.png",
        "--style-weights", "0.7,0.3", "--alpha", "0.5", "--preserve-color", "-r",
        "--pattern", "*.JPG", "--format", "webp", "--quality", "80", "--overwrite",
        "--checkpoint", "decoder=dec.pth"])
    spec = build_spec(args)
    assert spec.input_dir == str(tmp_path / "in") and spec.output_dir == str(tmp_path / "out")
    assert spec.styles == [str(tmp_path / "s1.png"), str(tmp_path / "s2.png")]
    assert spec.options == {"style_weights": [0.7, 0.3], "alpha": 0.5, "preserve_color": True}
    assert spec.checkpoints == {"decoder": str(tmp_path / "dec.pth")}
    assert (spec.recursive, spec.patterns, spec.format, spec.quality, spec.overwrite) == (
        True, ["*.JPG"], "webp", 80, True)
    plain = build_spec(build_parser().parse_args(["batch", "a", "b", "--engine", "cyclegan"]))
    assert plain.options == {} and not plain.overwrite and plain.format == "same"


def test_argparse_usage_error_exit_2(models_dir, tmp_path):
    result = run_cli([tmp_path, tmp_path / "out", "--in-process"], models_dir)   # no --engine
    assert result.returncode == 2 and "--engine" in result.stderr


# --------------------------------------------------------------------------- kill, resume

def _expected(runtime, source: Path) -> np.ndarray:
    pixels = runtime.stylize(StylizeJob("cyclegan", imageio.read_image(source).pixels,
                                        model="style_monet"))
    return imageio.decode_image_bytes(imageio.encode_image_bytes(pixels, "PNG")).pixels


def test_sigkill_half_way_leaves_only_complete_files_and_rerun_finishes(models_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = make_plain_folder(inp, 10, 48)
    process = start_cli([inp, out, *BASE, "--quiet"], models_dir)
    wait_for_outputs(process, out)
    assert process.poll() is None, "the batch ended before the test could kill it"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    done_before = image_files(out)
    assert 2 <= len(done_before) < len(names)
    for name in done_before:                       # every visible file is a complete image
        assert imageio.read_image(out / name).pixels.shape == (48, 48, 3)
    stamps = {name: (out / name).stat().st_mtime_ns for name in done_before}

    rerun = run_cli([inp, out, *BASE, "--report", tmp_path / "r.json"], models_dir)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    status = {item["input"]: item["status"] for item in report["items"]}
    assert sorted(n for n, s in status.items() if s == "skipped") == done_before
    assert sorted(n for n, s in status.items() if s == "ok") == sorted(
        set(names) - set(done_before))
    assert image_files(out) == names
    assert hidden_files(out) == []                 # a temp file the kill left is gone
    assert {name: (out / name).stat().st_mtime_ns for name in done_before} == stamps
    from backend.runtime import Runtime
    runtime = Runtime(device="cpu", models_dir=models_dir, threads=1)
    for name in (done_before[0], sorted(set(names) - set(done_before))[0]):
        np.testing.assert_array_equal(imageio.read_image(out / name).pixels,
                                      _expected(runtime, inp / name))


def test_ctrl_c_stops_after_the_current_image(models_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = make_plain_folder(inp, 12, 48)
    process = start_cli([inp, out, *BASE, "--report", tmp_path / "r.json"], models_dir)
    wait_for_outputs(process, out)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Stopping after the current image" in stderr
    report = json.loads((tmp_path / "r.json").read_text())
    done = sorted(i["input"] for i in report["items"] if i["status"] == "ok")
    assert report["cancelled"] and 2 <= len(done) < len(names)
    assert image_files(out) == done and hidden_files(out) == []
    assert "not done (cancelled)" in stdout


def _without_root_file_access() -> list[str]:
    """A command prefix under which even root gets EACCES on a chmod-000 file: setpriv drops the
    capabilities that let root ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_permission_denied_file_is_reported(models_dir, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_plain_folder(inp, 2, 24)
    os.chmod(inp / "img_0001.png", 0)
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models_dir), OMP_NUM_THREADS="1")
    command = [*_without_root_file_access(), sys.executable, "-m", "backend", "batch",
               str(inp), str(out), *BASE, "--report", str(tmp_path / "r.json")]
    result = subprocess.run(command, cwd=str(PROJECT_ROOT), env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    failures = [(i["input"], i["code"]) for i in report["items"] if i["status"] == "failed"]
    assert failures == [("img_0001.png", "unreadable")]
    assert "Permission denied" in result.stderr
    assert image_files(out) == ["img_0000.png"]


# ----------------------------------------------------------------------------- progress bar

class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_progress_bar_shows_count_rate_and_eta():
    clock = _Clock()
    bar = ProgressBar(_Stream(), clock=clock, interactive=False)
    clock.now += 20.0
    line = bar.render(0.25, "10/40 sub/a.jpg")
    assert line.startswith("10/40  [#####...............]  25%")
    assert "0.50 img/s" in line and "ETA 1:00" in line and line.endswith("sub/a.jpg")
    assert format_duration(3725) == "1:02:05"


def test_progress_bar_logs_sparsely_when_not_a_terminal():
    clock, stream = _Clock(), _Stream()
    bar = ProgressBar(stream, clock=clock, interactive=False, log_every=10.0)
    for step in range(1, 40):
        clock.now += 1.0
        bar.update(step / 40, f"{step}/40 x.png")
    bar.update(1.0, "40/40 done")
    lines = stream.text.splitlines()
    assert 4 <= len(lines) <= 6 and lines[-1].startswith("40/40")
