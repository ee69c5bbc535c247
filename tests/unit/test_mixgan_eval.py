"""The starter model's measurements: the helpers must measure what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.data.domains import to_tensor
from backend.data.glyphs import render_glyphs
from backend.data.textures import render_textures
from backend.training.mixgan_eval import (colour_distances, principal_grey, rgb_histogram,
                                          saturation, standardise)
from tests.helpers.mixgan import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def test_principal_grey_recovers_a_glyph_painted_in_any_two_colours() -> None:
    images, _ = render_glyphs(4, size=32, seed=0)
    ink = to_tensor(images).float() * 0.5 + 0.5            # 0..1, 1 = ink
    ink_colour = torch.tensor([0.9, 0.1, 0.4])[None, :, None, None]
    paper_colour = torch.tensor([0.1, 0.8, 0.3])[None, :, None, None]
    painted = ink * ink_colour + (1 - ink) * paper_colour
    recovered = standardise(principal_grey(painted))
    reference = standardise(ink)
    for got, want in zip(recovered, reference):
        correlation = float((got * want).mean())
        assert abs(correlation) > 0.99          # same picture, up to polarity


def test_colour_distances_rank_sets_by_colour() -> None:
    textures = render_textures(40, size=32, seed=0)
    more_textures = render_textures(40, size=32, seed=1)
    glyphs, _ = render_glyphs(40, size=32, seed=0)
    grey = np.repeat(glyphs[..., None], 3, axis=-1)
    same = colour_distances(textures, textures)
    assert same.histogram_tv == pytest.approx(0.0) and abs(same.frechet) < 1e-6
    near = colour_distances(more_textures, textures)
    far = colour_distances(more_textures, grey)
    assert near.histogram_tv < far.histogram_tv and near.frechet < far.frechet
    assert rgb_histogram(textures).sum() == pytest.approx(1.0)
    assert saturation(grey) == 0.0 and saturation(textures) > 0.3
