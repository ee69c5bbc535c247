"""MIXGAN training, a recipe of the shared loop: losses go down, runs resume exactly, the
finished model is registered; its command line has the shared flags and the old spellings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.data.domains import load_domain
from backend.networks.mixgan import load_model
from backend.training import mixgan as training
from backend.training.common import TrainResult, load_checkpoint, run_training
from backend.training.mixgan_model import MixganRecipe, structure_correlation
from backend.training.options import TrainOptions, engine_options, options_from_args
from stclient.errors import StyleTransferError
from tests.helpers.mixgan import MixganSteps, one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def _options(tmp_path, **changes) -> TrainOptions:
    values = dict(content="builtin:glyphs", style="builtin:textures", name="tiny", size=32,
                  batch=8, steps=6, mix_fraction=0.5, ngf=4, latent=8, n_res=1, pool=24,
                  device="cpu", run_folder=str(tmp_path / "run"),
                  models_dir=str(tmp_path / "models"), sample_every=3, checkpoint_every=2,
                  quiet=True)
    values.update(changes)
    return engine_options("mixgan", values.pop("name"), training.DEFAULTS, **values)


def train(options: TrainOptions, **kwargs) -> TrainResult:
    return run_training(MixganRecipe, options, warn=lambda message: None, **kwargs)


def _model_path(result: TrainResult) -> Path:
    assert not result.stopped and len(result.registered) == 1
    return result.registered[0]


def _reconstruction_error(trainer: MixganSteps, x: torch.Tensor) -> float:
    model = trainer.recipe.model
    model.eval()
    with torch.no_grad():
        reconstruction, _ = model.content_decoder(model.encoder(x))
    return float((reconstruction - x).abs().mean())


def test_a_few_autoencoder_steps_reduce_the_reconstruction_loss(tmp_path) -> None:
    options = _options(tmp_path, steps=1000, lr=2e-3)
    trainer = MixganSteps(options)
    x = trainer.data.content.batch(16, np.random.default_rng(99))
    before = _reconstruction_error(trainer, x)
    for step in range(25):
        trainer.step(step)
    after = _reconstruction_error(trainer, x)
    assert after < 0.8 * before, (before, after)


def test_mixture_steps_train_only_the_mixture_decoder(tmp_path) -> None:
    trainer = MixganSteps(_options(tmp_path, steps=4, mix_fraction=1.0))
    model = trainer.recipe.model
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if not k.startswith("mixture_decoder.")}
    gm = {k: v.clone() for k, v in model.mixture_decoder.state_dict().items()}
    values = trainer.step(0)
    assert set(values) == {"g_p", "d_p"}
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    changed = model.mixture_decoder.state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in gm.items())


def test_resumed_run_matches_an_uninterrupted_one(tmp_path) -> None:
    whole = _options(tmp_path / "a", steps=4, mix_fraction=0.5)
    train(whole)
    reference = load_model(tmp_path / "a" / "models" / "tiny.pth")

    stopped = _options(tmp_path / "b", steps=4, mix_fraction=0.5)
    calls = iter([False, True])                  # polled after each step: stop after step 2
    assert train(stopped, should_stop=lambda: next(calls)).stopped
    checkpoint = tmp_path / "b" / "run" / "checkpoint.pt"
    assert load_checkpoint(checkpoint)["step"] == 2
    train(_options(tmp_path / "b", steps=4, mix_fraction=0.5, resume=True))
    resumed = load_model(tmp_path / "b" / "models" / "tiny.pth")
    for key, value in reference.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_training_writes_sheets_checkpoint_and_registers_the_model(tmp_path) -> None:
    path = _model_path(train(_options(tmp_path, display_name="Tiny test")))
    assert path == tmp_path / "models" / "tiny.pth"
    sidecar = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert sidecar["engine"] == "mixgan" and sidecar["arch"] == "conv"
    assert sidecar["display_name"] == "Tiny test"
    sheets = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert [p.name for p in sheets] == ["step_0000003.png", "step_0000006.png"]
    sheet = np.asarray(Image.open(sheets[-1]))
    assert sheet.shape == (5 * 34 + 2, 8 * 34 + 2, 3) and sheet.std() > 5
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


def test_paper_architecture_trains_too(tmp_path) -> None:
    path = _model_path(train(_options(tmp_path, arch="paper", size=64, steps=2, batch=4)))
    assert load_model(path).config.arch == "paper"


def test_command_line_registers_its_options(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    training.register(parser.add_subparsers())
    args = parser.parse_args(["mixgan", "--content", "builtin:glyphs", "--style",
                              "builtin:textures", "--name", "x", "--size", "32", "--steps", "7"])
    options, _ = options_from_args("mixgan", args, training.DEFAULTS)
    assert (options.size, options.steps, options.arch) == (32, 7, "conv")
    assert args.func is training.run


def test_bad_training_requests_are_clear_errors(tmp_path) -> None:
    with pytest.raises(StyleTransferError, match="multiple of 16"):
        train(_options(tmp_path, size=40))
    with pytest.raises(StyleTransferError, match="name"):
        train(_options(tmp_path, name="../evil"))
    parser = argparse.ArgumentParser()
    training.register(parser.add_subparsers())
    args = parser.parse_args(["mixgan", "--content", str(tmp_path / "nowhere"), "--style",
                              "builtin:textures", "--name", "x", "--size", "32"])
    with pytest.raises(StyleTransferError) as error:
        args.func(args)
    assert error.value.code == "bad_request" and "nowhere" in error.value.message


def test_restart_mixture_keeps_the_autoencoder_and_retrains_the_mixture(tmp_path) -> None:
    options = _options(tmp_path, steps=4, mix_fraction=0.5)
    first = load_model(_model_path(train(options)))
    again = _options(tmp_path, steps=4, mix_fraction=0.5, restart_phase="mixture", seed=0)
    second = load_model(_model_path(train(again)))
    a, b = first.state_dict(), second.state_dict()
    for key in a:
        if key.startswith("mixture_decoder."):
            continue
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mixture_decoder."))
    too_early = _options(tmp_path / "early", steps=4, mix_fraction=0.5, restart_phase="mixture")
    with pytest.raises(StyleTransferError, match="autoencoder phase"):
        train(too_early)


def test_structure_term_sees_shape_in_any_colours_but_not_noise() -> None:
    content = load_domain("builtin:glyphs", 32, True, 4, 0).batch(4, np.random.default_rng(0))
    ink = (content + 1) / 2
    painted = ink * torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1) + \
        (1 - ink) * torch.tensor([0.9, 0.8, 0.1]).view(1, 3, 1, 1)      # dark ink, light paper
    correlation = structure_correlation(painted * 2 - 1, content)
    assert (correlation < -0.99).all()                                  # same shape, inverted
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert (structure_correlation(noise, content).abs() < 0.2).all()


def test_content_weight_adds_the_structure_term(tmp_path) -> None:
    trainer = MixganSteps(_options(tmp_path, steps=2, mix_fraction=1.0, content_weight=1.0))
    values = trainer.step(0)
    assert set(values) == {"g_p", "d_p", "struct"} and 0.0 <= values["struct"] <= 1.0


def test_moving_average_of_the_mixture_decoder_is_registered_and_resumes(tmp_path) -> None:
    options = _options(tmp_path, steps=8, mix_fraction=0.75, ema=0.9)
    trainer = MixganSteps(options)
    for step in range(5):
        trainer.step(step)
    recipe = trainer.recipe
    live = recipe.model.mixture_decoder.state_dict()
    average = recipe.gm_ema.state_dict()
    # after the autoencoder steps and 3 mixture steps the average trails the live weights
    assert any(not torch.equal(live[k], average[k]) for k in live)
    registered = recipe.generator().mixture_decoder.state_dict()
    assert all(torch.equal(registered[k], average[k]) for k in average)
    assert all(torch.equal(recipe.model.mixture_decoder.state_dict()[k], live[k]) for k in live)

    whole = _model_path(train(_options(tmp_path / "a", steps=6, mix_fraction=0.5, ema=0.9)))
    stopped = _options(tmp_path / "b", steps=6, mix_fraction=0.5, ema=0.9)
    calls = iter([False, False, False, True])     # polled after each step: stop after step 4
    assert train(stopped, should_stop=lambda: next(calls)).stopped
    saved = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    assert "Gm_ema" in saved["recipe"]["networks"]        # the moving average ("gm_ema")
    resumed = load_model(_model_path(train(
        _options(tmp_path / "b", steps=6, mix_fraction=0.5, ema=0.9, resume=True))))
    reference = load_model(whole)
    for key, value in reference.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
    plain = load_model(_model_path(train(_options(tmp_path / "c", steps=6, mix_fraction=0.5))))
    assert any(not torch.allclose(plain.state_dict()[k], v) for k, v in reference.state_dict()
               .items() if k.startswith("mixture_decoder."))
