"""The training loop: exact resume, Ctrl-C, run folders, schedules, pool, PatchGAN, progress."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.training import synthetic
from backend.training.adain_model import AdaINRecipe
from backend.training.common import Progress, linear_decay, load_checkpoint, run_training
from backend.training.cyclegan_model import CycleGANRecipe
from backend.training.discriminators import PatchDiscriminator, init_normal, receptive_field
from backend.training.options import TrainOptions
from backend.training.pix2pix_model import Pix2PixRecipe
from backend.training.pool import ImagePool
from stclient.errors import BAD_REQUEST, StyleTransferError
from tests.helpers.training import assert_same_state, one_thread  # noqa: F401  (autouse)
from tests.helpers.checkpoints import make_adain_files

RECIPES = {"cyclegan": CycleGANRecipe, "pix2pix": Pix2PixRecipe, "adain": AdaINRecipe}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("training-data")
    a, b = synthetic.write_unpaired(root / "unpaired", 4, 36, seed=0)
    pairs = synthetic.write_paired(root / "paired", 3, 132, seed=0, aligned=True)
    content, style = synthetic.write_styles(root / "styles", 3, 40, seed=0)
    vgg, _ = make_adain_files(root / "vgg")
    return {"cyclegan": {"domain_a": str(a), "domain_b": str(b)},
            "pix2pix": {"pairs": str(pairs)},
            "adain": {"content": str(content), "style": str(style), "vgg": str(vgg)}}


def _options(tmp_path: Path, engine: str, data: dict[str, str], **kw) -> TrainOptions:
    base = dict(engine=engine, name=f"{engine}_run", steps=4, sample_every=0,
                checkpoint_every=0, quiet=True, runs_dir=str(tmp_path / "runs"),
                models_dir=str(tmp_path / "models"), seed=5, **data)
    if engine == "cyclegan":
        base.update(arch="resnet_6blocks", ngf=4, ndf=4, size=32, load_size=36, pool_size=3,
                    batch=2)
    elif engine == "pix2pix":
        base.update(arch="unet_128", ngf=4, ndf=4, size=128, load_size=132, batch=2)
    else:
        base.update(size=32, load_size=40, batch=2, lr=1e-3, beta1=0.9)
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.parametrize("engine", ["cyclegan", "pix2pix", "adain"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, datasets, engine):
    straight = _options(tmp_path / "straight", engine, datasets[engine])
    done = run_training(RECIPES[engine], straight, warn=lambda m: None)
    assert (done.step, done.stopped) == (4, False)

    halves = _options(tmp_path / "halves", engine, datasets[engine])
    first = run_training(RECIPES[engine], halves, warn=lambda m: None, stop_after=2)
    assert (first.step, first.stopped) == (2, True)
    assert first.registered == []
    assert load_checkpoint(halves.checkpoint_path)["step"] == 2
    resumed = _options(tmp_path / "halves", engine, datasets[engine], resume=True)
    second = run_training(RECIPES[engine], resumed, given={"resume"}, warn=lambda m: None)
    assert (second.step, second.stopped) == (4, False)

    a = load_checkpoint(straight.checkpoint_path)
    b = load_checkpoint(halves.checkpoint_path)
    assert a["step"] == b["step"] == 4
    # weights, Adam moments, schedulers, pools
    assert_same_state(a["recipe"], b["recipe"], "recipe")
    assert_same_state(a["rng"], b["rng"], "rng")
    # and the weights really moved during the run
    fresh = _options(tmp_path / "fresh", engine, datasets[engine], steps=1)
    one = run_training(RECIPES[engine], fresh, warn=lambda m: None)
    first_net = next(iter(a["recipe"]["networks"]))
    key = next(iter(a["recipe"]["networks"][first_net]))
    assert not torch.equal(a["recipe"]["networks"][first_net][key],
                           one.recipe.networks[first_net].state_dict()[key].cpu())


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path, datasets):
    options = _options(tmp_path, "cyclegan", datasets["cyclegan"], steps=6)
    calls = []

    def press_ctrl_c() -> bool:
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return False

    result = run_training(CycleGANRecipe, options, warn=lambda m: None, should_stop=press_ctrl_c)
    assert result.stopped and 2 <= result.step < 6
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    saved = load_checkpoint(options.checkpoint_path)
    assert saved["step"] == result.step
    again = _options(tmp_path, "cyclegan", datasets["cyclegan"], steps=6, resume=True)
    finished = run_training(CycleGANRecipe, again, given={"resume"}, warn=lambda m: None)
    assert (finished.step, finished.stopped) == (6, False)


def test_existing_run_needs_resume_or_overwrite(tmp_path, datasets):
    options = _options(tmp_path, "pix2pix", datasets["pix2pix"], steps=1)
    run_training(Pix2PixRecipe, options, warn=lambda m: None)
    with pytest.raises(StyleTransferError) as caught:
        run_training(Pix2PixRecipe, _options(tmp_path, "pix2pix", datasets["pix2pix"], steps=1),
                     warn=lambda m: None)
    assert caught.value.code == BAD_REQUEST and "--resume" in caught.value.message
    again = _options(tmp_path, "pix2pix", datasets["pix2pix"], steps=1, overwrite=True)
    assert run_training(Pix2PixRecipe, again, warn=lambda m: None).step == 1


def test_resume_refuses_a_changed_recipe_and_a_missing_checkpoint(tmp_path, datasets):
    missing = _options(tmp_path, "pix2pix", datasets["pix2pix"], resume=True)
    with pytest.raises(StyleTransferError, match="no checkpoint to resume"):
        run_training(Pix2PixRecipe, missing, given={"resume"}, warn=lambda m: None)
    run_training(Pix2PixRecipe, _options(tmp_path, "pix2pix", datasets["pix2pix"], steps=1),
                 warn=lambda m: None, stop_after=1)
    changed = _options(tmp_path, "pix2pix", datasets["pix2pix"], resume=True, lr=1e-3, steps=3)
    with pytest.raises(StyleTransferError) as caught:
        run_training(Pix2PixRecipe, changed, given={"resume", "lr", "steps"}, warn=lambda m: None)
    assert "--lr 0.001 (the run used 0.0002)" in caught.value.message
    longer = _options(tmp_path, "pix2pix", datasets["pix2pix"], resume=True, steps=2)
    assert run_training(Pix2PixRecipe, longer, given={"resume", "steps"},
                        warn=lambda m: None).step == 2


def test_sample_grids_are_written_as_png(tmp_path, datasets):
    options = _options(tmp_path, "cyclegan", datasets["cyclegan"], steps=2, sample_every=1)
    run_training(CycleGANRecipe, options, warn=lambda m: None)
    samples = sorted((options.run_dir / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["final.png", "step_0000001.png", "step_0000002.png"]
    with Image.open(samples[1]) as grid:
        # 4 unpaired examples per row? 4 rows (fixed examples) x 6 cells of 32 px, 2 px gaps
        assert grid.size == (6 * 32 + 5 * 2, 4 * 32 + 3 * 2)
        pixels = np.asarray(grid)
    assert pixels.std() > 5        # real images, not a blank canvas


def test_linear_decay_is_constant_then_linear():
    rule = linear_decay(10, 0.5)
    factors = [rule(s) for s in range(10)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:] == pytest.approx([1 - k / 6 for k in range(1, 6)])
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == lrs[4] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(2e-4 / 6)


def test_image_pool_fills_then_mixes_history_and_round_trips():
    pool = ImagePool(size=3, seed=0)
    batches = [torch.full((1, 3, 2, 2), float(i)) for i in range(40)]
    outputs = [float(pool.query(b)[0, 0, 0, 0]) for b in batches[:3]]
    assert outputs == [0.0, 1.0, 2.0]                     # filling: passed through
    later = [float(pool.query(b)[0, 0, 0, 0]) for b in batches[3:20]]
    assert any(v < i + 3 for i, v in enumerate(later))     # some older images come back
    assert any(v == i + 3 for i, v in enumerate(later))    # and some new ones go straight on
    copy = ImagePool(size=3, seed=99)
    copy.load_state_dict(pool.state_dict())
    rest_a = [pool.query(b) for b in batches[20:]]
    rest_b = [copy.query(b) for b in batches[20:]]
    assert all(torch.equal(x, y) for x, y in zip(rest_a, rest_b))
    assert ImagePool(size=0).query(batches[5]) is batches[5]


def test_patchgan_is_the_70x70_reference_layout():
    assert receptive_field(3) == 70
    net = PatchDiscriminator(6, ndf=64, n_layers=3, norm="batch")
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert keys[:3] == ["model.0.weight", "model.0.bias", "model.2.weight"]
    assert "model.2.bias" not in keys                     # batch norm: no conv bias
    assert net(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    cyc = PatchDiscriminator(3, norm="instance")
    assert "model.2.bias" in cyc.state_dict() and len(cyc.state_dict()) == 10
    init_normal(cyc)
    weights = torch.cat([m.weight.detach().flatten() for m in cyc.modules()
                         if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(weights.std()) - 0.02) < 0.002 and abs(float(weights.mean())) < 0.001


def test_progress_line_shows_losses_speed_and_eta():
    stream = io.StringIO()
    progress = Progress("cyclegan demo", 0, 100, stream=stream, log_every=0.0)
    for step in range(1, 4):
        progress.update(step, {"G_A": torch.tensor(0.5), "D_A": torch.tensor(0.25)})
    text = stream.getvalue().splitlines()[-1]
    assert "3/100" in text and "G_A 0.500" in text and "D_A 0.250" in text and "ETA" in text
    with pytest.raises(StyleTransferError, match="diverged"):
        progress.update(4, {"G_A": torch.tensor(float("nan"))})


@pytest.mark.parametrize("engine", ["cyclegan", "pix2pix", "adain"])
def test_mixed_precision_and_channels_last_paths_train(tmp_path, datasets, engine):
    """The GPU settings (autocast, channels_last) on the CPU with bfloat16: losses stay finite
    and the weights stay float32."""
    options = _options(tmp_path, engine, datasets[engine], steps=2, amp="on",
                       channels_last="on", sample_every=2)
    result = run_training(RECIPES[engine], options, warn=lambda m: None)
    assert result.recipe.accel.amp_dtype == torch.bfloat16
    assert result.last_losses and all(np.isfinite(v) for v in result.last_losses.values())
    for net in result.recipe.networks.values():
        assert all(p.dtype == torch.float32 for p in net.parameters())
    assert (options.run_dir / "samples" / "final.png").is_file()
