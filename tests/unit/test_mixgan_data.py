"""Seeded synthetic domains for MIXGAN: glyphs (content) and textures (style)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.data.domains import folder_domain, load_domain, to_tensor, to_uint8
from backend.data.glyphs import (BUILTIN_FONT, DEFAULT_CHARSET, GlyphRenderer, find_fonts,
                                 render_glyphs, save_glyphs)
from backend.data.textures import render_textures
from tests.helpers.mixgan import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def test_glyphs_are_deterministic_per_seed_and_differ_between_seeds() -> None:
    images, labels = render_glyphs(12, size=32, seed=5)
    again, labels_again = render_glyphs(12, size=32, seed=5)
    other, _ = render_glyphs(12, size=32, seed=6)
    assert images.shape == (12, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(images, other)
    assert labels.min() >= 0 and labels.max() < len(DEFAULT_CHARSET)
    # sample i does not depend on how many were asked for
    assert np.array_equal(render_glyphs(3, size=32, seed=5)[0], images[:3])


def test_every_glyph_has_ink_inside_the_frame() -> None:
    images, _ = render_glyphs(40, size=32, seed=1)
    for image in images:
        assert image.max() > 200                     # white ink
        assert image[0].mean() < 60 and image[:, 0].mean() < 60  # mostly black borders
        assert 0.03 < (image > 127).mean() < 0.6


def test_builtin_font_fallback_renders_distinct_glyphs() -> None:
    renderer = GlyphRenderer(size=32, fonts=(BUILTIN_FONT,))
    a = renderer.render_char("A", BUILTIN_FONT, 0.8, 0.0)
    b = renderer.render_char("B", BUILTIN_FONT, 0.8, 0.0)
    assert a.max() > 200 and not np.array_equal(a, b)
    images, _ = render_glyphs(4, size=32, seed=0, fonts=(BUILTIN_FONT,))
    assert (images.reshape(4, -1).max(axis=1) > 200).all()


def test_found_fonts_render_the_charset() -> None:
    fonts = find_fonts()
    assert fonts and all(isinstance(f, str) for f in fonts)


def test_textures_are_colourful_deterministic_and_varied() -> None:
    patches = render_textures(10, size=32, seed=2)
    assert patches.shape == (10, 32, 32, 3) and patches.dtype == np.uint8
    assert np.array_equal(patches, render_textures(10, size=32, seed=2))
    assert not np.array_equal(patches, render_textures(10, size=32, seed=3))
    rgb = patches.astype(np.float32) / 255
    saturation = rgb.max(-1) - rgb.min(-1)
    assert saturation.mean() > 0.3          # colourful, unlike grey glyphs
    assert len({p.mean(axis=(0, 1)).round(2).tobytes() for p in patches}) == 10


def test_domains_give_seeded_batches_in_range(tmp_path) -> None:
    content = load_domain("builtin:glyphs", 32, grey=True, pool=20, seed=0)
    style = load_domain("builtin:textures", 32, grey=False, pool=20, seed=1)
    a = content.batch(4, np.random.default_rng(7))
    assert a.shape == (4, 1, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a.numpy(), content.batch(4, np.random.default_rng(7)).numpy())
    assert style.batch(3, np.random.default_rng(7)).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="content"):
        load_domain("builtin:glyphs", 32, grey=False, pool=4, seed=0)
    save_glyphs(tmp_path / "glyphs", 5, size=40)
    (tmp_path / "glyphs" / "notes.txt").write_text("not an image")
    Image.new("RGB", (50, 70), (200, 10, 10)).save(tmp_path / "glyphs" / "red.jpg")
    folder = folder_domain(tmp_path / "glyphs", 32, grey=True)
    assert folder.images.shape == (6, 40, 40) and folder.channels == 1
    with pytest.raises(ValueError, match="no images"):
        folder_domain(_empty(tmp_path), 32, grey=True)


def _empty(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path


def test_tensor_conversion_round_trips() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_tensor(images)), images)
