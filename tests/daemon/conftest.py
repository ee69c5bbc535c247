"""Fixtures shared by the daemon tests."""

from __future__ import annotations

import pytest

from tests.helpers.checkpoints import make_models_dir


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Random-weight models of every engine in released layouts, one folder per test module
    (a module may define its own instead)."""
    return make_models_dir(tmp_path_factory.mktemp("models"))
