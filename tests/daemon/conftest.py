"""Fixtures shared by the daemon tests."""

from __future__ import annotations

import os

import pytest

from tests.helpers.checkpoints import make_models_dir


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Random-weight models of every engine in released layouts, one folder per test module
    (a module may define its own instead)."""
    return make_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def daemon(models_dir):
    """A real daemon on those models (a module may define its own with other arguments)."""
    from tests.helpers.daemon import start_daemon
    with start_daemon(models_dir) as handle:
        yield handle


@pytest.fixture(scope="module")
def runtime(models_dir):
    """The in-process Runtime on the same models, to compare the daemon's answers with."""
    from backend.runtime import Runtime
    return Runtime(device="cpu", models_dir=models_dir)


@pytest.fixture()
def env(daemon, models_dir):
    """The environment of a CLI process that should find this module's daemon and models."""
    from stclient import paths
    environment = dict(os.environ)
    environment[paths.RUNTIME_DIR_ENV] = str(daemon.runtime_dir)   # "this user's" daemon
    environment["STYLE_TRANSFER_MODELS_DIR"] = str(models_dir)
    return environment
