"""Helpers for the training tests.

`one_thread`: tiny training steps are dominated by thread synchronisation, and on a shared
machine two OpenMP threads can be ten times slower than one; the tests pin torch to one thread
and restore the previous count afterwards. `assert_same_state`: two checkpoints' states are
equal to the bit (exact resume). `train_cli`: `python -m backend train ...` in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend import PROJECT_ROOT


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(message: str) -> None:
    """A warn callback that drops data warnings (tests that check warnings collect them)."""


def assert_same_state(left, right, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values are equal, tensors to the bit."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), where
        assert left.dtype == right.dtype and left.shape == right.shape, where
        assert torch.equal(left, right), f"{where} differs"
    elif isinstance(left, dict):
        assert set(left) == set(right), where
        for key in left:
            assert_same_state(left[key], right[key], f"{where}/{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for i, (x, y) in enumerate(zip(left, right)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"


def train_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m backend train ARGS` on one thread; stdout and stderr captured as text."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "backend", "train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
