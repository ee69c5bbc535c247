"""Training works, measured against a known ground truth (fast versions of bench/train_proof.py).

pix2pix and CycleGAN learn synthetic tasks whose true mapping is known; their error to it on
held-out images must end far below the identity map's. The AdaIN decoder's loss must fall and
its outputs' VGG feature statistics must move toward the style's. Small widths (--ngf 8) and
tiny images keep each run to seconds; the recipe (losses, optimiser, schedule) is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backend.training import data, synthetic
from backend.training.adain_model import AdaINRecipe, style_loss
from backend.training.common import run_training, select_accelerator, seed_everything
from backend.training.cyclegan_model import CycleGANRecipe
from backend.training.options import TrainOptions
from backend.training.pix2pix_model import Pix2PixRecipe
from tests.helpers.checkpoints import make_adain_files
from tests.helpers.training import one_thread  # noqa: F401  (autouse fixture)


def _common(tmp_path: Path, **kw) -> dict:
    return dict(sample_every=0, checkpoint_every=0, quiet=True, seed=0,
                runs_dir=str(tmp_path / "runs"), models_dir=str(tmp_path / "models"), **kw)


def test_pix2pix_learns_the_known_mapping(tmp_path):
    root = synthetic.write_paired(tmp_path / "data", 16, 128, seed=0)
    options = TrainOptions(engine="pix2pix", name="proof", input_dir=str(root / "input"),
                           target_dir=str(root / "target"), arch="unet_128", ngf=8, ndf=8,
                           size=128, load_size=144, steps=120, **_common(tmp_path))
    result = run_training(Pix2PixRecipe, options, warn=lambda m: None)
    held_out = synthetic.scenes(6, 128, seed=999)
    learned, identity = synthetic.mapping_error(result.recipe.generate, held_out,
                                                synthetic.pix2pix_target)
    assert identity > 0.2
    assert learned < 0.6 * identity, (learned, identity)


def test_cyclegan_learns_the_known_unpaired_mapping(tmp_path):
    domain_a, domain_b = synthetic.write_unpaired(tmp_path / "data", 16, 32, seed=0)
    options = TrainOptions(engine="cyclegan", name="proof", domain_a=str(domain_a),
                           domain_b=str(domain_b), arch="resnet_6blocks", ngf=8, ndf=8,
                           size=32, load_size=36, steps=80, **_common(tmp_path))
    result = run_training(CycleGANRecipe, options, warn=lambda m: None)
    held_out = synthetic.scenes(6, 32, seed=999)
    generator = result.recipe.G_A.eval()
    learned, identity = synthetic.mapping_error(generator, held_out, synthetic.hue_rotate)
    assert identity > 0.25
    assert learned < 0.6 * identity, (learned, identity)
    # and B -> A inverts it
    back, back_identity = synthetic.mapping_error(
        result.recipe.G_B.eval(), [synthetic.hue_rotate(x) for x in held_out],
        lambda y: y[..., [1, 2, 0]])
    assert back < 0.6 * back_identity, (back, back_identity)


def _held_out_stats(recipe: AdaINRecipe, folder: Path) -> tuple[float, float]:
    """(total loss, style distance) on held-out pairs; the distance is the style loss: squared
    differences of the per-channel mean and std at relu1_1..relu4_1, output vs style."""
    content = torch.stack([data.to_tensor(data.load_rgb(p), False)
                           for p in sorted((folder / "content").iterdir())])
    style = torch.stack([data.to_tensor(data.load_rgb(p), False)
                         for p in sorted((folder / "style").iterdir())])
    with torch.no_grad():
        parts = recipe.losses(content, style)
        output, _, style_feats = recipe.stylize(content, style)
        distance = float(style_loss(recipe.encode_levels(output), style_feats))
    total = float(parts["content"]) + recipe.options.style_weight * float(parts["style"])
    return total, distance


def test_adain_decoder_loss_falls_and_statistics_move_toward_the_style(tmp_path):
    content, style = synthetic.write_styles(tmp_path / "data", 12, 40, seed=0)
    held = tmp_path / "held"
    synthetic.write_styles(held, 3, 32, seed=77)
    vgg, _ = make_adain_files(tmp_path / "vgg")
    options = TrainOptions(engine="adain", name="proof", content=str(content),
                           style=str(style), vgg=str(vgg), size=32, load_size=40, flip=False,
                           batch=4, steps=30, lr=1e-4, beta1=0.9, **_common(tmp_path))
    seed_everything(options.seed)                 # the same initial decoder as the run's
    before = AdaINRecipe(options, select_accelerator(options), options.steps)
    loss_before, distance_before = _held_out_stats(before, held)
    result = run_training(AdaINRecipe, options, warn=lambda m: None)
    loss_after, distance_after = _held_out_stats(result.recipe, held)
    assert loss_after < 0.7 * loss_before, (loss_before, loss_after)
    assert distance_after < 0.7 * distance_before, (distance_before, distance_after)
