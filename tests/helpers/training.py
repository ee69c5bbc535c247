"""Helpers for the training tests.

`one_thread`: tiny training steps are dominated by thread synchronisation, and on a shared
machine two OpenMP threads can be ten times slower than one; the tests pin torch to one thread
and restore the previous count afterwards.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(message: str) -> None:
    """A warn callback that drops data warnings (tests that check warnings collect them)."""
