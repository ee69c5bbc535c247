"""`sample --sheet`: the default sheet is large enough to read; --scale still sets the factor."""

from __future__ import annotations

import numpy as np
from PIL import Image

from backend.cli import main
from backend.commands.sample import SHEET_SIDE, _sheet
from tests.helpers.mixgan import make_mixgan_model


def test_default_sheet_is_enlarged_to_a_readable_width():
    images = [np.full((32, 32, 3), i, np.uint8) for i in range(16)]
    assert _sheet(images, scale=1).shape == (138, 138, 3)         # 4 x (32 + 2) + 2
    sheet = _sheet(images)
    assert sheet.shape == (552, 552, 3) and sheet.shape[1] >= SHEET_SIDE   # x4
    assert _sheet(images, scale=2).shape == (276, 276, 3)
    large = [np.zeros((256, 256, 3), np.uint8)] * 4
    assert _sheet(large).shape == (518, 518, 3)                  # already wide enough


def test_sample_command_writes_the_enlarged_sheet(tmp_path):
    make_mixgan_model(tmp_path / "models", name="tiny_mix")
    sheet = tmp_path / "sheet.png"
    assert main(["sample", "--model", "tiny_mix", "--models-dir", str(tmp_path / "models"),
                 "--device", "cpu", "-n", "16", "--sheet", str(sheet)]) == 0
    with Image.open(sheet) as image:
        assert image.size == (552, 552)
