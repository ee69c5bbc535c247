"""The shared training options: engine defaults, flags, validation (no torch needed)."""

from __future__ import annotations

import argparse

import pytest

from backend.commands import train as train_command
from backend.training import adain, cyclegan, pix2pix
from backend.training.options import TrainOptions, change_text, options_from_args
from stclient.errors import BAD_REQUEST, StyleTransferError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend")
    train_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_flags_override_the_engine_defaults_and_are_recorded_as_given():
    args = _parse("cyclegan", "--domain-a", "a", "--domain-b", "b", "--name", "n",
                  "--steps", "10", "--no-flip", "--lambda-cycle", "5")
    options, given = options_from_args("cyclegan", args, cyclegan.DEFAULTS)
    assert (options.steps, options.epochs, options.flip) == (10, None, False)
    assert options.lambda_cycle == 5.0 and options.lambda_identity == 0.5
    assert (options.lr, options.beta1, options.load_size, options.pool_size) == (2e-4, 0.5, 286, 50)
    assert {"steps", "flip", "lambda_cycle", "name", "domain_a"} <= given
    assert "lr" not in given and "pool_size" not in given


def test_each_engine_has_its_published_defaults():
    ada, _ = options_from_args("adain", _parse("adain", "--name", "d"), adain.DEFAULTS)
    assert (ada.batch, ada.steps, ada.lr, ada.beta1, ada.load_size, ada.size, ada.flip) == \
           (8, 160000, 1e-4, 0.9, 512, 256, False)
    assert (ada.style_weight, ada.content_weight, ada.lr_decay) == (10.0, 1.0, 5e-5)
    p2p, _ = options_from_args("pix2pix", _parse("pix2pix", "--name", "p", "--epochs", "3"),
                               pix2pix.DEFAULTS)
    assert (p2p.arch, p2p.lambda_l1, p2p.dropout, p2p.epochs, p2p.steps) == \
           ("unet_256", 100.0, True, 3.0, None)
    cyc, _ = options_from_args("cyclegan", _parse("cyclegan", "--name", "c"), cyclegan.DEFAULTS)
    assert (cyc.arch, cyc.epochs, cyc.batch, cyc.decay_fraction) == \
           ("resnet_9blocks", 200.0, 1, 0.5)


def test_steps_and_epochs_exclude_each_other():
    with pytest.raises(SystemExit):
        _parse("pix2pix", "--name", "p", "--steps", "3", "--epochs", "2")


@pytest.mark.parametrize("change, fragment", [
    ({"name": "../escape"}, "--name"),
    ({"size": 30}, "multiple of 4"),
    ({"size": 256, "load_size": 200}, "at least --size"),
    ({"batch": 0}, "--batch"),
    ({"lr": 0.0}, "--lr"),
    ({"device": "tpu"}, "--device"),
])
def test_invalid_values_are_refused_with_the_flag_named(change, fragment):
    options = TrainOptions(engine="pix2pix", name="ok")
    for key, value in change.items():
        setattr(options, key, value)
    with pytest.raises(StyleTransferError) as caught:
        options.validate()
    assert caught.value.code == BAD_REQUEST and fragment in caught.value.message


def test_refused_changes_on_resume_are_said_in_flags_that_exist():
    assert change_text("lr", 1e-3, 2e-4) == "--lr 0.001 (the run used 0.0002)"
    assert change_text("flip", False, True) == "--no-flip (the run used no --no-flip)"
    assert change_text("extra", {"reverse_name": "b2a"}, {}) == \
        "--reverse-name b2a (the run used no extra flag)"
