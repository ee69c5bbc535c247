"""MIXGAN training, a recipe of the shared loop: losses go down, runs resume exactly, the
finished model is registered; its command line has the shared flags and the old spellings."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.commands import train as train_command
from backend.data.domains import load_domain
from backend.engines.job import StylizeJob
from backend.modelstore import list_models
from backend.networks.mixgan import load_model
from backend.runtime import Runtime
from backend.training import mixgan as training
from backend.training.common import TrainResult, load_checkpoint, run_training
from backend.training.mixgan_model import MixganRecipe, structure_correlation
from backend.training.options import (TrainOptions, add_common_arguments, engine_options,
                                      options_from_args)
from stclient.errors import StyleTransferError
from tests.helpers.mixgan import MixganSteps, one_torch_thread
from tests.helpers.training import assert_same_state, train_cli


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


# ---------------------------------------------------------------------------- the shared stack

def _parse_train(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend")
    train_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def _visible_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions if action.help != argparse.SUPPRESS
            for flag in action.option_strings}


def _train_subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="python -m backend")
    train_command.register(parser.add_subparsers(dest="command"))
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    engines = next(a for a in train._actions if isinstance(a, argparse._SubParsersAction))
    return dict(engines.choices)


def test_train_mixgan_has_the_shared_flags_and_hides_the_old_spellings(capsys):
    shared = argparse.ArgumentParser()
    add_common_arguments(shared, {})
    common = _visible_flags(shared) - {"-h", "--help"}
    trainers = _train_subparsers()
    for engine, parser in trainers.items():         # one set of flag names for every trainer
        assert common - {"--load-size"} <= _visible_flags(parser), engine
    with pytest.raises(SystemExit):
        _parse_train("mixgan", "--help")
    text = capsys.readouterr().out
    for flag in ("--runs-dir", "--resume", "--overwrite", "--epochs", "--quiet", "--amp",
                 "--ngf", "--restart-mixture"):
        assert flag in text
    for old in ("--width", "--out", "--restart"):
        assert not re.search(re.escape(old) + r"(?![\w-])", text), old
    assert "--load-size" not in text                  # MIXGAN's domains scale themselves
    with pytest.raises(SystemExit):
        _parse_train("mixgan", "--name", "n", "--load-size", "80")


def test_old_flag_spellings_set_the_shared_options():
    base = ("mixgan", "--content", "builtin:glyphs", "--style", "builtin:textures", "--name", "n")
    old, old_given = options_from_args("mixgan", _parse_train(
        *base, "--width", "8", "--out", "runs/x", "--restart"), training.DEFAULTS)
    new, new_given = options_from_args("mixgan", _parse_train(
        *base, "--ngf", "8", "--overwrite"), training.DEFAULTS)
    assert (old.ngf, old.overwrite, old.run_folder) == (8, True, "runs/x")
    assert (new.ngf, new.overwrite, new.run_folder) == (8, True, "")
    assert old.run_dir == Path("runs/x") and new.run_dir.name == "n"
    assert old_given - {"run_folder"} == new_given
    restart = options_from_args("mixgan", _parse_train(*base, "--restart-mixture"),
                                training.DEFAULTS)[0]
    assert restart.restart_phase == "mixture"


def test_resume_through_the_shared_loop_restores_every_state(tmp_path):
    """Stopped in the autoencoder phase and again in the mixture phase, then finished: the
    checkpoint equals an uninterrupted run's to the bit (networks, the average, optimizers,
    random states)."""
    changes = dict(steps=6, mix_fraction=0.5, ema=0.9, content_weight=1.0, sample_every=0)
    straight = train(_options(tmp_path / "a", **changes))
    assert (straight.step, straight.stopped) == (6, False)
    assert train(_options(tmp_path / "b", **changes), stop_after=2).stopped      # autoencoder
    second = train(_options(tmp_path / "b", **changes, resume=True), given={"resume"},
                   stop_after=4)                                                  # mixture
    assert (second.step, second.stopped) == (4, True)
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["step"] == 4
    assert train(_options(tmp_path / "b", **changes, resume=True), given={"resume"}).step == 6
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    assert set(a["recipe"]["networks"]) == {"E", "Gc", "Gm", "Dz", "Dp", "Gm_ema"}
    assert set(a["recipe"]["optimizers"]) == {"ae", "dz", "gm", "dp"}
    assert_same_state(a["recipe"], b["recipe"], "recipe")
    assert_same_state(a["rng"], b["rng"], "rng")


def test_a_resumed_run_refuses_other_networks_and_restarts_only_the_mixture(tmp_path):
    train(_options(tmp_path, steps=4, mix_fraction=0.5, sample_every=0))
    wider = _options(tmp_path, steps=4, mix_fraction=0.5, latent=16, resume=True)
    with pytest.raises(StyleTransferError, match="--latent 16 \\(the run used 8\\)"):
        train(wider, given={"resume", "latent"})
    # the mixture phase's own options may change when it restarts; the autoencoder's may not
    restarted = _options(tmp_path, steps=4, mix_fraction=0.5, ema=0.9, content_weight=2.0,
                         restart_phase="mixture", sample_every=0)
    result = train(restarted, given={"restart_phase", "ema", "content_weight"})
    stored = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["options"]
    assert (stored["ema"], stored["content_weight"], stored["restart_phase"]) == (0.9, 2.0, "")
    assert "Gm_ema" in result.recipe.networks
    again = _options(tmp_path, steps=4, mix_fraction=0.5, n_res=2, restart_phase="mixture")
    with pytest.raises(StyleTransferError, match="--n-res 2"):
        train(again, given={"restart_phase", "n_res"})
    other = _options(tmp_path, restart_phase="autoencoder")
    with pytest.raises(StyleTransferError, match="restartable: mixture"):
        train(other, given={"restart_phase"})


def test_progress_is_the_shared_bar_with_the_phase(tmp_path):
    stream = io.StringIO()
    train(_options(tmp_path, steps=4, mix_fraction=0.5, sample_every=0, quiet=False),
          stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("mixgan tiny: 4 steps (2 autoencoder, then 2 mixture) on cpu")
    bars = [line for line in lines if line.startswith("mixgan tiny [")]
    assert re.search(r"\] 1/4 +25% autoencoder rec [\d.]+ adv_z [\d.]+ d_z [\d.]+ \| ", bars[0])
    # a line where the autoencoder phase ends: the mixture's lines average its own losses only
    assert any(re.search(r"\] 2/4 +50% autoencoder rec ", line) for line in bars)
    assert re.search(r"\] 4/4 100% mixture g_p [\d.]+ d_p [\d.]+ \| .* ETA ", bars[-1])
    assert lines[-1].startswith("Registered tiny in ")


def test_registered_model_has_its_sidecar_is_listed_and_runs(tmp_path):
    result = train(_options(tmp_path, steps=2, mix_fraction=0.5, sample_every=0))
    models = tmp_path / "models"
    sidecar = json.loads((models / "tiny.json").read_text())
    assert {k: sidecar[k] for k in ("engine", "arch", "display_name", "trained_steps",
                                    "content", "style", "license")} == {
        "engine": "mixgan", "arch": "conv", "display_name": "tiny (MIXGAN)",
        "trained_steps": 2, "content": "builtin:glyphs", "style": "builtin:textures",
        "license": "trained by the user"}
    listed = {m.name: m for m in list_models(models) if m.source == "user"}
    assert listed["tiny"].engine == "mixgan" and listed["tiny"].installed
    copy = load_model(tmp_path / "run" / "generator.pth")       # the run folder's copy
    registered = load_model(models / "tiny.pth")
    assert_same_state(copy.state_dict(), registered.state_dict())
    glyph = load_domain("builtin:glyphs", 32, True, 4, 9).batch(1, np.random.default_rng(0))
    image = np.repeat(((glyph[0, 0].numpy() + 1) / 2)[..., None], 3, axis=2).astype(np.float32)
    out = Runtime(device="cpu", models_dir=models).stylize(
        StylizeJob(engine="mixgan", content=image, model="tiny"))
    with torch.no_grad():
        _, mixture = result.recipe.generator().eval()(glyph)
    expected = ((mixture[0].clamp(-1, 1) + 1) / 2).numpy().transpose(1, 2, 0)
    assert out.shape == (32, 32, 3) and np.abs(out - expected).max() < 2e-3


def test_mixed_precision_and_channels_last_train_mixgan(tmp_path):
    """--amp on and --channels-last on (bfloat16 on the CPU): finite losses in both phases,
    float32 weights, sheets written."""
    result = train(_options(tmp_path, steps=4, mix_fraction=0.5, amp="on", channels_last="on",
                            sample_every=2))
    assert result.recipe.accel.amp_dtype == torch.bfloat16
    assert {"g_p", "d_p"} <= set(result.last_losses)
    assert all(np.isfinite(v) for v in result.last_losses.values())
    for net in result.recipe.networks.values():
        assert all(p.dtype == torch.float32 for p in net.parameters())
    assert (tmp_path / "run" / "samples" / "step_0000004.png").is_file()


def test_command_line_with_the_shared_flags_and_the_old_spellings(tmp_path):
    tiny = ["--content", "builtin:glyphs", "--style", "builtin:textures", "--size", "32",
            "--batch", "4", "--latent", "8", "--n-res", "1", "--pool", "8", "--threads", "1",
            "--models-dir", str(tmp_path / "models")]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    done = train_cli("mixgan", *tiny, *runs, "--name", "cli_mix", "--ngf", "4", "--steps", "2",
                     "--sample-every", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2/2" in done.stderr and "mixture g_p" in done.stderr
    assert "Registered: cli_mix" in done.stderr
    assert (tmp_path / "runs" / "cli_mix" / "samples" / "step_0000002.png").is_file()
    resumed = train_cli("mixgan", "--name", "cli_mix", "--resume", "--steps", "3", *runs,
                        "--models-dir", str(tmp_path / "models"), "--threads", "1",
                        cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "3/3" in resumed.stderr
    old = train_cli("mixgan", *tiny, "--name", "old_mix", "--width", "4", "--steps", "1",
                    "--out", "old_run", "--restart", cwd=tmp_path)
    assert old.returncode == 0, old.stderr
    assert (tmp_path / "old_run" / "checkpoint.pt").is_file()
    assert load_model(tmp_path / "models" / "old_mix.pth").config.width == 4


def test_data_worker_processes_draw_the_same_batches(tmp_path):
    """The GPU default (worker processes) and the CPU default (none) train the same weights:
    each step's batch follows from (seed, step) wherever it is drawn."""
    changes = dict(steps=2, mix_fraction=0.5, sample_every=0)    # one step of each phase
    train(_options(tmp_path / "none", **changes, workers=0))
    train(_options(tmp_path / "two", **changes, workers=2))
    assert_same_state(load_checkpoint(tmp_path / "none" / "run" / "checkpoint.pt")["recipe"],
                      load_checkpoint(tmp_path / "two" / "run" / "checkpoint.pt")["recipe"])
