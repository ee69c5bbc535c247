"""The matting Laplacian (backend/optim/matting.py) is Levin et al.'s matrix: compared entry by
entry with a dense construction written straight from the formula, window by window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.optim.matting import matting_laplacian


def dense_reference(image: np.ndarray, eps: float, radius: int = 1) -> np.ndarray:
    """L = Σ_k over windows fully inside the image of δ_ij - (1 + (I_i-μ)ᵀ(Σ+ε/|w| U)⁻¹(I_j-μ))/|w|."""
    height, width, _ = image.shape
    side = 2 * radius + 1
    size = side * side
    result = np.zeros((height * width, height * width))
    for cy in range(radius, height - radius):
        for cx in range(radius, width - radius):
            ys, xs = np.mgrid[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1]
            index = (ys * width + xs).reshape(-1)
            colours = image[ys, xs].reshape(size, 3)
            mean = colours.mean(axis=0)
            cov = (colours - mean).T @ (colours - mean) / size
            inverse = np.linalg.inv(cov + eps / size * np.eye(3))
            centred = colours - mean
            block = np.eye(size) - (1.0 + centred @ inverse @ centred.T) / size
            result[np.ix_(index, index)] += block
    return result


def photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((1, 1, 3)) * 0.5 + rng.random((height, width, 1)) * 0.4
    return np.clip(base + rng.random((height, width, 3)) * 0.1, 0, 1)


@pytest.mark.parametrize("shape,eps,radius", [((6, 7), 1e-7, 1), ((5, 9), 1e-3, 1),
                                              ((8, 8), 1e-7, 2)])
def test_equals_dense_construction(shape, eps, radius):
    image = photo(*shape, seed=shape[0] + radius)
    lap = matting_laplacian(torch.from_numpy(image).permute(2, 0, 1)[None], eps=eps,
                            radius=radius, dtype=torch.float64)
    ours = lap.to_dense().numpy()
    reference = dense_reference(image, eps, radius)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)
    assert np.abs(reference).max() > 0.1           # a real matrix, not an empty one


def test_matvec_quadratic_and_gradient_match_the_matrix():
    image = torch.from_numpy(photo(9, 11, seed=3)).permute(2, 0, 1)[None]
    lap = matting_laplacian(image, dtype=torch.float64)
    dense = lap.to_dense()
    v = torch.rand(1, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    flat = v.detach().reshape(3, -1)
    np.testing.assert_allclose(lap.matvec(v.detach()).reshape(3, -1).numpy(),
                               (dense @ flat.T).T.numpy(), atol=1e-10)
    value = lap.quadratic(v)
    expected = sum(float(flat[c] @ dense @ flat[c]) for c in range(3))
    assert value.item() == pytest.approx(expected, rel=1e-10)
    value.backward()
    np.testing.assert_allclose(v.grad.numpy(), lap.gradient(v.detach()).numpy(), atol=1e-10)
    assert torch.autograd.gradcheck(lambda x: lap.quadratic(x), (v.detach().requires_grad_(),))


def test_properties_symmetric_psd_and_affine_null_space():
    image = torch.from_numpy(photo(7, 8, seed=5)).permute(2, 0, 1)[None]
    dense = matting_laplacian(image, dtype=torch.float64).to_dense()
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    assert torch.linalg.eigvalsh(dense).min() > -1e-8
    # constants cost nothing; the guide's own channels (locally affine in themselves) nearly so
    assert dense.sum(dim=1).abs().max() < 1e-9
    guide = image.reshape(3, -1).double()
    random = torch.rand_like(guide)
    affine = sum(float(guide[c] @ dense @ guide[c]) for c in range(3))
    other = sum(float(random[c] @ dense @ random[c]) for c in range(3))
    assert affine < 1e-3 * other
