"""Training data: folder scans, bad data errors before training, pairing, augmentation, order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.training import data, synthetic
from backend.training.common import run_training
from backend.training.cyclegan_model import CycleGANRecipe
from backend.training.options import TrainOptions
from backend.training.pix2pix_model import Pix2PixRecipe
from stclient.errors import BAD_REQUEST, StyleTransferError
from tests.helpers.training import one_thread  # noqa: F401  (autouse fixture)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _noise(rng: np.random.Generator, h: int = 24, w: int = 24) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _options(tmp_path: Path, engine: str, **kw) -> TrainOptions:
    base = dict(engine=engine, name="t", size=32, load_size=36, steps=1, ngf=4, ndf=4,
                sample_every=0, checkpoint_every=0, quiet=True, runs_dir=str(tmp_path / "runs"),
                models_dir=str(tmp_path / "models"))
    if engine == "pix2pix":
        base.update(arch="unet_128", size=128, load_size=132)
    if engine == "cyclegan":
        base.update(arch="resnet_6blocks")
    base.update(kw)
    return TrainOptions(**base)


def test_unreadable_images_are_skipped_with_a_warning_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "a"
    good = [_png(folder / f"ok{i}.png", _noise(rng)) for i in range(3)]
    (folder / "garbage.png").write_bytes(b"this is not a png")
    truncated = folder / "cut.jpg"
    Image.fromarray(_noise(rng, 64, 64)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:200])
    _png(folder / "tiny.png", _noise(rng, 3, 3))
    (folder / "notes.txt").write_text("ignored: not an image type")
    warnings: list[str] = []
    report = data.scan_folder(folder, "domain A", warnings.append)
    assert report.files == sorted(good)
    assert sorted(p.name for p, _ in report.skipped) == ["cut.jpg", "garbage.png", "tiny.png"]
    assert sum("skipping" in w for w in warnings) == 3
    assert any("3 of 6 images" in w for w in warnings)


@pytest.mark.parametrize("case", ["missing", "empty", "only_garbage", "too_few"])
def test_bad_folders_fail_before_training(tmp_path, case):
    rng = np.random.default_rng(1)
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(3):
        _png(b / f"{i}.png", _noise(rng))
    if case == "empty":
        a.mkdir()
    elif case == "only_garbage":
        a.mkdir()
        (a / "x.png").write_bytes(b"\x89PNG broken")
    elif case == "too_few":
        _png(a / "one.png", _noise(rng))
    options = _options(tmp_path, "cyclegan", domain_a=str(a), domain_b=str(b), batch=2)
    with pytest.raises(StyleTransferError) as caught:
        run_training(CycleGANRecipe, options, warn=lambda m: None)
    assert caught.value.code == BAD_REQUEST
    message = caught.value.message
    assert str(a) in message
    expected = {"missing": "does not exist", "empty": "no usable images",
                "only_garbage": "1 unreadable file(s) skipped", "too_few": "only 1 usable"}[case]
    assert expected in message
    assert not (tmp_path / "runs").exists()     # nothing was started


def test_unpaired_pix2pix_names_are_an_error_listing_them(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("a", "b", "c"):
        _png(tmp_path / "in" / f"{name}.png", _noise(rng))
    for name in ("a", "b", "d"):
        _png(tmp_path / "out" / f"{name}.jpg", _noise(rng))
    options = _options(tmp_path, "pix2pix", input_dir=str(tmp_path / "in"),
                       target_dir=str(tmp_path / "out"))
    with pytest.raises(StyleTransferError) as caught:
        run_training(Pix2PixRecipe, options, warn=lambda m: None)
    assert caught.value.code == BAD_REQUEST
    assert "1 input image(s) without a target (c)" in caught.value.message
    assert "1 target image(s) without an input (d)" in caught.value.message
    assert not (tmp_path / "runs").exists()


def test_pairs_match_by_name_and_skip_unreadable_pairs(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        _png(tmp_path / "in" / f"{name}.png", _noise(rng))
        _png(tmp_path / "out" / f"{name}.jpg", _noise(rng))
    (tmp_path / "out" / "b.jpg").write_bytes(b"broken")
    warnings: list[str] = []
    pairs, skipped = data.pairs_from_folders(tmp_path / "in", tmp_path / "out", warnings.append)
    assert skipped == 1
    assert [p.first.stem for p in pairs] == ["a", "c"]
    assert all(p.second is not None and p.second.stem == p.first.stem for p in pairs)
    assert any("1 of 3 pairs" in w for w in warnings)


def test_aligned_pairs_split_left_right_with_one_crop_for_both(tmp_path):
    left = np.zeros((40, 40, 3), np.uint8)
    left[:, :, 0] = np.arange(40, dtype=np.uint8)[None, :] * 6      # a horizontal ramp
    right = 255 - left
    _png(tmp_path / "pairs" / "p.png", np.concatenate([left, right], axis=1))
    pairs, _ = data.pairs_from_aligned(tmp_path / "pairs")
    dataset = data.PairedDataset(pairs, data.Augment(32, 40, flip=True), seed=0)
    flipped_seen = set()
    for sample in range(12):
        item = dataset[sample]
        a, b = item["A"], item["B"]
        assert a.shape == b.shape == (3, 32, 32)
        assert float(a.min()) >= -1 and float(a.max()) <= 1
        # B is the negative of A pixel for pixel: the same crop and flip were applied to both
        assert torch.allclose(a + b, torch.zeros_like(a), atol=2 / 255)
        flipped_seen.add(bool(a[0, 0, 0] > a[0, 0, -1]))
    assert flipped_seen == {True, False}
    reversed_set = data.PairedDataset(pairs, data.Augment(32, 40), seed=0, direction="BtoA")
    assert torch.equal(reversed_set[0]["A"], dataset[0]["B"])


def test_items_follow_from_seed_and_sample_number_only(tmp_path):
    a, b = synthetic.write_unpaired(tmp_path, 5, 32, seed=0)
    files_a, files_b = data.list_image_files(a), data.list_image_files(b)
    one = data.UnpairedDataset(files_a, files_b, data.Augment(24, 32), seed=7)
    two = data.UnpairedDataset(files_a, files_b, data.Augment(24, 32), seed=7)
    other = data.UnpairedDataset(files_a, files_b, data.Augment(24, 32), seed=8)
    for sample in (0, 3, 11):
        assert torch.equal(one[sample]["A"], two[sample]["A"])
        assert torch.equal(one[sample]["B"], two[sample]["B"])
    assert any(not torch.equal(one[s]["A"], other[s]["A"]) for s in range(5))


def test_run_order_visits_every_item_once_per_epoch():
    order = data.RunOrder(7, seed=3, salt=1)
    for epoch in range(3):
        assert sorted(order(epoch * 7 + i) for i in range(7)) == list(range(7))
    assert [order(i) for i in range(7)] != [order(7 + i) for i in range(7)]


def test_sixteen_bit_and_grey_images_are_read_as_rgb(tmp_path):
    grey16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    image = data.load_rgb(tmp_path / "g16.png")
    assert image.mode == "RGB" and image.size == (32, 32)
    pixels = np.asarray(image)
    assert pixels[..., 0].max() > 200 and np.array_equal(pixels[..., 0], pixels[..., 2])


def test_worker_processes_load_exactly_the_batches_of_the_main_process(tmp_path):
    a, b = synthetic.write_unpaired(tmp_path, 4, 32, seed=0)
    dataset = data.UnpairedDataset(data.list_image_files(a), data.list_image_files(b),
                                   data.Augment(24, 32), seed=3)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=data.RunSampler(1, 4, 2), num_workers=workers,
            generator=torch.Generator().manual_seed(0))
        return list(loader)

    inline, parallel = batches(0), batches(2)
    assert len(inline) == len(parallel) == 3
    for x, y in zip(inline, parallel):
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    # step 1 of a run is the same batch whether the run started at step 0 or resumed at 1
    assert torch.equal(inline[0]["A"], torch.stack([dataset[2]["A"], dataset[3]["A"]]))
