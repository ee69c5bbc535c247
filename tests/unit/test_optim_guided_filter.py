"""The guided filter (backend/optim/guided_filter.py) against its definition: a ridge
least-squares fit q = aᵀI + b in every clipped window, solved window by window, then each pixel
averaging the fits of the windows that contain it (He et al.)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.optim.guided_filter import box_mean, guided_filter


def reference(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """guide H x W x G, src H x W x C -> H x W x C, by an explicit least squares per window."""
    height, width, g = guide.shape
    channels = src.shape[2]
    a = np.zeros((height, width, g, channels))
    b = np.zeros((height, width, channels))
    for y in range(height):
        for x in range(width):
            y0, y1 = max(0, y - radius), min(height, y + radius + 1)
            x0, x1 = max(0, x - radius), min(width, x + radius + 1)
            colours = guide[y0:y1, x0:x1].reshape(-1, g)
            values = src[y0:y1, x0:x1].reshape(-1, channels)
            count = colours.shape[0]
            # minimise Σ_i (aᵀI_i + b - p_i)² + count·ε|a|²: ridge rows appended to the design
            design = np.vstack([np.hstack([colours, np.ones((count, 1))]),
                                np.hstack([np.sqrt(count * eps) * np.eye(g), np.zeros((g, 1))])])
            target = np.vstack([values, np.zeros((g, channels))])
            solution = np.linalg.lstsq(design, target, rcond=None)[0]
            a[y, x], b[y, x] = solution[:g], solution[g]
    out = np.zeros((height, width, channels))
    for y in range(height):
        for x in range(width):
            y0, y1 = max(0, y - radius), min(height, y + radius + 1)
            x0, x1 = max(0, x - radius), min(width, x + radius + 1)
            a_bar = a[y0:y1, x0:x1].mean(axis=(0, 1))
            b_bar = b[y0:y1, x0:x1].mean(axis=(0, 1))
            out[y, x] = guide[y, x] @ a_bar + b_bar
    return out


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None]


@pytest.mark.parametrize("guide_channels,radius,eps", [(3, 2, 1e-2), (3, 1, 1e-4), (1, 3, 1e-3),
                                                       (3, 20, 1e-2)])
def test_equals_per_window_least_squares(guide_channels, radius, eps):
    rng = np.random.default_rng(radius)
    guide = rng.random((11, 13, guide_channels))
    src = rng.random((11, 13, 3))
    ours = guided_filter(nchw(guide), nchw(src), radius, eps)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, reference(guide, src, radius, eps), atol=1e-9)


def test_box_mean_is_the_clipped_window_average():
    x = torch.rand(1, 2, 7, 9, dtype=torch.float64)
    got = box_mean(x, 2)
    for y, xx in [(0, 0), (3, 4), (6, 8), (1, 7)]:
        window = x[..., max(0, y - 2):y + 3, max(0, xx - 2):xx + 3]
        assert torch.allclose(got[..., y, xx], window.mean(dim=(-2, -1)))


def test_keeps_guide_edges_and_dtype():
    """A step edge in the guide survives in a blurred-across-the-edge input."""
    guide = torch.zeros(1, 3, 32, 32)
    guide[..., 16:] = 1.0
    src = torch.nn.functional.avg_pool2d(guide, 9, 1, 4, count_include_pad=False) * 0.8 + 0.1
    out = guided_filter(guide, src, radius=4, eps=1e-4)
    assert out.dtype == torch.float32 and out.shape == src.shape
    left, right = out[..., 14].mean(), out[..., 17].mean()
    src_jump = src[..., 17].mean() - src[..., 14].mean()
    assert right - left > 1.5 * src_jump                     # sharper than the input


def test_strips_give_the_whole_image_result(monkeypatch):
    """Tall images go in strips with a 2r halo: still the per-window definition, exactly."""
    import importlib
    module = importlib.import_module("backend.optim.guided_filter")
    rng = np.random.default_rng(5)
    guide, src = rng.random((150, 12, 3)), rng.random((150, 12, 3))
    monkeypatch.setattr(module, "STRIP_PIXELS", 64 * 12)      # strips of 64 rows
    fractions: list[float] = []
    ours = module.guided_filter(nchw(guide), nchw(src), 3, 1e-3, progress=fractions.append)
    assert fractions == [64 / 150, 128 / 150, 1.0]
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), reference(guide, src, 3, 1e-3),
                               atol=1e-9)


def test_the_fast_variant_stays_close_to_the_exact_filter():
    """He & Sun's subsampled filter at s = r / 4 on a real photo guiding a real texture (the
    hardest input: full of detail the coarse fit cannot follow): within ~2 levels on average."""
    from tests.helpers.examples import example
    guide = torch.from_numpy(example("content/city.jpg", (200, 160)) / 255.0)
    guide = guide.permute(2, 0, 1)[None]
    src = torch.from_numpy(example("styles/swirls.jpg", (200, 160)) / 255.0).permute(2, 0, 1)[None]
    for radius, subsample, mean_levels in ((8, 2, 2.0), (16, 4, 3.0)):
        exact = guided_filter(guide, src, radius, 1e-2)
        fast = guided_filter(guide, src, radius, 1e-2, subsample=subsample)
        assert fast.shape == exact.shape and fast.dtype == exact.dtype
        difference = (fast - exact).abs() * 255
        assert difference.mean() < mean_levels, (radius, float(difference.mean()))
        # the exact filter moved the input far more than the two differ
        assert (exact - src).abs().mean() * 255 > 5 * difference.mean()
    with pytest.raises(ValueError, match="subsampling"):
        guided_filter(guide, src, 4, 1e-2, subsample=0)
