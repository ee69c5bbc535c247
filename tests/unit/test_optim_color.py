"""Colour control (backend/optim/color.py): the affine maps reproduce the target mean and
covariance, colour transfer does so in its working space and per region, and luminance-only
recombination keeps the content's chroma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.networks.adain import rgb_to_yiq
from backend.optim import color


def image(seed: int, height: int = 40, width: int = 48, low: float = 0.0,
          high: float = 1.0) -> torch.Tensor:
    """Smooth random colours with correlated channels (like a photo), within low..high."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 5, 6, generator=gen)
    mixing = torch.rand(3, 3, generator=gen) + torch.eye(3)
    mixed = torch.einsum("ij,njhw->nihw", mixing / mixing.sum(1, keepdim=True), coarse)
    smooth = torch.nn.functional.interpolate(mixed, size=(height, width), mode="bilinear",
                                             align_corners=False)
    noisy = smooth + 0.05 * torch.rand(1, 3, height, width, generator=gen)
    span = noisy.amax() - noisy.amin()
    return (low + (noisy - noisy.amin()) / span * (high - low)).double()


@pytest.mark.parametrize("method", color.HISTOGRAM_METHODS)
def test_linear_maps_reproduce_the_target_covariance(method):
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, generator=gen, dtype=torch.float64), \
        torch.rand(3, 3, generator=gen, dtype=torch.float64)
    source, target = a @ a.T * 0.1, b @ b.T * 0.1
    matrix = color.linear_map(source, target, method, eps=1e-5)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(matrix @ (source + 1e-5 * eye) @ matrix.T, target + 1e-5 * eye,
                          atol=1e-10)
    if method == "symmetric":
        assert torch.allclose(matrix, matrix.T, atol=1e-10)
        assert torch.linalg.eigvalsh(matrix).min() > 0


@pytest.mark.parametrize("method", color.HISTOGRAM_METHODS)
def test_histogram_matching_gives_the_style_the_content_statistics(method):
    style = image(2, low=0.35, high=0.6)          # narrow, so the mapped colours stay in 0..1
    content = image(3, low=0.2, high=0.8)
    matched = color.match_histogram(style, content, method)
    assert 0.0 <= matched.min() and matched.max() <= 1.0
    m_mean, m_cov = color.pixel_stats(matched)
    c_mean, c_cov = color.pixel_stats(content)
    s_mean, s_cov = color.pixel_stats(style)
    assert torch.allclose(m_mean, c_mean, atol=1e-9)
    # exactly Σ_c up to the eps both covariances carry: A (Σ_s + εI) Aᵀ = Σ_c + εI
    matrix = color.linear_map(s_cov, c_cov, method)
    expected = c_cov + color.EPS * (torch.eye(3, dtype=torch.float64) - matrix @ matrix.T)
    assert torch.allclose(m_cov, expected, atol=1e-9)
    assert torch.allclose(m_cov, c_cov, rtol=0.02)
    assert (s_mean - c_mean).abs().max() > 0.01    # there was something to change


@pytest.mark.parametrize("space", color.SPACES)
def test_color_transfer_reproduces_the_style_mean_and_covariance(space):
    content, style = image(4, low=0.1, high=0.9), image(5, low=0.2, high=0.7)
    out = color.color_transfer(content, style, space=space, clip=False)
    to_space = color.rgb_to_lab if space == "lab" else (lambda x: x)
    o_mean, o_cov = color.pixel_stats(to_space(out))
    s_mean, s_cov = color.pixel_stats(to_space(style))
    assert torch.allclose(o_mean, s_mean, atol=1e-6)
    assert torch.allclose(o_cov, s_cov, rtol=1e-3, atol=1e-5)
    assert torch.allclose(color.lab_to_rgb(color.rgb_to_lab(content)), content, atol=1e-9)


def test_color_transfer_per_region_follows_each_region():
    content, style = image(6, low=0.1, high=0.9), image(7, low=0.1, high=0.9)
    left = torch.zeros(1, 1, 40, 48, dtype=torch.float64)
    left[..., :24] = 1.0
    style_top = torch.zeros(1, 1, 40, 48, dtype=torch.float64)
    style_top[..., :20, :] = 1.0
    regions = [(left, style_top), (1.0 - left, 1.0 - style_top)]
    out = color.color_transfer(content, style, space="rgb", regions=regions, clip=False)
    for c_mask, s_mask in regions:
        o_mean, o_cov = color.pixel_stats(out, c_mask)
        s_mean, s_cov = color.pixel_stats(style, s_mask)
        assert torch.allclose(o_mean, s_mean, atol=1e-6)
        assert torch.allclose(o_cov, s_cov, rtol=1e-3, atol=1e-5)
    # pixels outside every region keep their colour
    only_left = color.color_transfer(content, style, regions=[(left, None)])
    assert torch.allclose(only_left[..., 24:], content[..., 24:], atol=1e-9)
    assert (only_left[..., :24] - content[..., :24]).abs().max() > 0.05


def test_strength_blends_original_and_transfer():
    content, style = image(8), image(9)
    assert torch.allclose(color.color_transfer(content, style, strength=0.0), content, atol=1e-9)


def test_combine_luminance_keeps_content_chroma_within_one_level():
    content = image(10).float()
    gen = torch.Generator().manual_seed(11)
    new_y = torch.rand(1, 1, 40, 48, generator=gen) * 1.4 - 0.2   # also out of range
    out = color.combine_luminance(new_y, content)
    assert out.min() >= 0 and out.max() <= 1
    as_bytes = (out * 255).round() / 255
    chroma_out = rgb_to_yiq(as_bytes)[:, 1:]
    chroma_in = rgb_to_yiq(content)[:, 1:]
    assert (chroma_out - chroma_in).abs().max() * 255 <= 1.0
    # and where the new luminance is reachable it is the output's luminance
    inside = (new_y > 0.3) & (new_y < 0.7)
    y_out = color.luminance(out)
    assert (y_out - new_y)[inside].abs().max() < 0.35          # not clamped away wholesale


def test_slices_of_rows_give_the_whole_image_result_and_report_progress(monkeypatch):
    """Colour transfer works a slice of rows at a time (bounded memory on large images): any
    slicing gives the one-slice result, and progress rises to 1 slice by slice."""
    content, style = image(7, 61, 47).float(), image(8, 33, 70).float()
    soft = torch.rand(1, 1, 61, 47, generator=torch.Generator().manual_seed(1))
    regions = [((soft > 0.5).float()[0, 0], None), (soft, torch.rand(33, 70))]
    kwargs = {"regions": regions, "strength": 0.7, "method": "pca"}
    monkeypatch.setattr(color, "CHUNK_PIXELS", 10 ** 9)
    whole = color.color_transfer(content, style, **kwargs)
    monkeypatch.setattr(color, "CHUNK_PIXELS", 900)       # 19 rows: 4 content, 3 style slices
    seen: list[float] = []
    sliced = color.color_transfer(content, style, progress=seen.append, **kwargs)
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-6)
    assert sliced.dtype == torch.float32 and sliced.shape == content.shape
    assert len(seen) == 4 + 3 + 4 and seen == sorted(seen) and seen[-1] == 1.0

    def cancel(done: float) -> None:
        if done > 0.5:
            raise InterruptedError("cancelled")
    with pytest.raises(InterruptedError):
        color.color_transfer(content, style, progress=cancel, **kwargs)


def test_an_empty_region_is_a_clear_error():
    content, style = image(9).float(), image(10).float()
    with pytest.raises(ValueError, match="region is empty"):
        color.color_transfer(content, style, regions=[(torch.zeros(40, 48), None)])
