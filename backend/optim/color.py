"""Colour control (Gatys et al. 2017) and instant colour transfer (no network).

- Luminance-only transfer: the optimiser works on the luminance Y (of YIQ) and the result takes
  the content's chroma (I, Q) back; Y is clamped into the range for which that chroma stays inside
  the RGB cube, so the chroma is kept exactly (up to 8-bit rounding).
- Histogram matching: an affine colour map x' = A (x - μ_s) + μ_t gives one image another's mean
  and covariance (eps 1e-5 is added to both covariances). Three choices of A, all with
  A Σ_s Aᵀ = Σ_t: "cholesky" (L_t L_s⁻¹), "pca" (Σ_t^½ Σ_s^-½, symmetric square roots from the
  eigen-decompositions: the Image Analogies variant Gatys et al. use) and "symmetric" (the one
  symmetric positive definite A, Σ_s^-½ (Σ_s^½ Σ_t Σ_s^½)^½ Σ_s^-½: the smallest colour shift).
- Colour transfer: the same map in Reinhard et al.'s decorrelated lαβ space (log LMS), matching
  the full mean and covariance, optionally per region (content mask -> style mask).

The 3x3 algebra runs in float64 on the CPU (MPS has no float64).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from backend.networks.adain import match_luminance, rgb_to_yiq, yiq_to_rgb
from backend.optim.losses import mask_to_grid

HISTOGRAM_METHODS = ("cholesky", "pca", "symmetric")
SPACES = ("lab", "rgb")
EPS = 1e-5
_LOG_OFFSET = 1.0 / 255.0      # log(LMS + offset): black stays finite, one 8-bit level of room

_RGB_TO_LMS = torch.tensor([[0.3811, 0.5783, 0.0402],
                            [0.1967, 0.7244, 0.0782],
                            [0.0241, 0.1288, 0.8444]], dtype=torch.float64)
_LMS_TO_LAB = torch.diag(torch.tensor([3 ** -0.5, 6 ** -0.5, 2 ** -0.5], dtype=torch.float64)) @ \
    torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]], dtype=torch.float64)

__all__ = ["luminance", "grey_input", "combine_luminance", "match_luminance", "match_histogram",
           "color_transfer", "linear_map", "rgb_to_lab", "lab_to_rgb", "pixel_stats"]


# ---------------------------------------------------------------- luminance-only

def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W RGB -> N x 1 x H x W luminance (Y of YIQ)."""
    return rgb_to_yiq(rgb)[:, :1]


def grey_input(y: torch.Tensor) -> torch.Tensor:
    """A luminance image as the 3-channel grey RGB the network reads."""
    return y.expand(-1, 3, -1, -1)


def combine_luminance(y: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """RGB with luminance `y` and the chroma (I, Q) of `content`, inside the RGB cube.

    For fixed chroma every RGB channel is Y + d_c, so Y is clamped to [max(-d_c), min(1 - d_c)];
    that interval holds the content's own Y, so it is never empty for an in-gamut content."""
    yiq = rgb_to_yiq(content)
    chroma_only = yiq_to_rgb(torch.cat([torch.zeros_like(yiq[:, :1]), yiq[:, 1:]], 1))
    low = (-chroma_only).amax(dim=1, keepdim=True)
    high = (1.0 - chroma_only).amin(dim=1, keepdim=True)
    clamped = torch.maximum(torch.minimum(y, high), low)
    return (chroma_only + clamped).clamp(0.0, 1.0)


# ---------------------------------------------------------------- affine colour maps

def pixel_stats(image: torch.Tensor, weights: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3) and covariance (3 x 3, divided by the weight total) of a 1 x 3 x H x W image's
    pixels, each pixel weighted by a 1 x 1 x H x W mask if given; float64 on the CPU."""
    flat = image.detach().reshape(3, -1).to("cpu", torch.float64)
    if weights is None:
        w = torch.ones(flat.shape[1], dtype=torch.float64)
    else:
        w = weights.detach().reshape(-1).to("cpu", torch.float64)
    total = w.sum()
    if total <= 0:
        raise ValueError("a colour region is empty")
    mean = (flat * w).sum(dim=1) / total
    centred = flat - mean[:, None]
    cov = (centred * w) @ centred.T / total
    return mean, cov


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def linear_map(source_cov: torch.Tensor, target_cov: torch.Tensor, method: str,
               eps: float = EPS) -> torch.Tensor:
    """A with A (Σ_s + εI) Aᵀ = Σ_t + εI, by the chosen variant (see the module docstring)."""
    eye = torch.eye(3, dtype=torch.float64)
    cs, ct = source_cov + eps * eye, target_cov + eps * eye
    if method == "cholesky":
        return torch.linalg.cholesky(ct) @ torch.linalg.inv(torch.linalg.cholesky(cs))
    if method == "pca":
        return _sqrtm(ct) @ torch.linalg.inv(_sqrtm(cs))
    if method == "symmetric":
        root_s = _sqrtm(cs)
        inv_root_s = torch.linalg.inv(root_s)
        return inv_root_s @ _sqrtm(root_s @ ct @ root_s) @ inv_root_s
    raise ValueError(f"unknown colour matching method {method!r}; use one of {HISTOGRAM_METHODS}")


def _apply(image: torch.Tensor, matrix: torch.Tensor, source_mean: torch.Tensor,
           target_mean: torch.Tensor) -> torch.Tensor:
    """x' = A (x - μ_s) + μ_t for every pixel, in the image's dtype and on its device."""
    flat = image.reshape(3, -1)
    like = {"device": flat.device, "dtype": flat.dtype}
    mapped = matrix.to(**like) @ (flat - source_mean.to(**like)[:, None]) \
        + target_mean.to(**like)[:, None]
    return mapped.reshape(image.shape)


def match_histogram(source: torch.Tensor, target: torch.Tensor, method: str = "pca",
                    eps: float = EPS) -> torch.Tensor:
    """`source` (1 x 3 x H x W RGB) recoloured to the mean and covariance of `target`'s pixels,
    clamped to 0..1. Gatys et al. recolour the style to the content before the transfer."""
    s_mean, s_cov = pixel_stats(source)
    t_mean, t_cov = pixel_stats(target)
    matrix = linear_map(s_cov, t_cov, method, eps)
    return _apply(source, matrix, s_mean, t_mean).clamp(0.0, 1.0)


# ---------------------------------------------------------------- lαβ and colour transfer

def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W RGB -> Reinhard's lαβ (log LMS, decorrelated), in the input's dtype."""
    dtype = rgb.dtype
    x = rgb.to(torch.float64)
    lms = torch.einsum("ij,njhw->nihw", _RGB_TO_LMS.to(x.device), x)
    log_lms = torch.log10(lms.clamp_min(0) + _LOG_OFFSET)
    return torch.einsum("ij,njhw->nihw", _LMS_TO_LAB.to(x.device), log_lms).to(dtype)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    dtype = lab.dtype
    x = lab.to(torch.float64)
    log_lms = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_LMS_TO_LAB).to(x.device), x)
    lms = torch.pow(10.0, log_lms) - _LOG_OFFSET
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_LMS).to(x.device), lms) \
        .to(dtype)


def color_transfer(content: torch.Tensor, style: torch.Tensor, method: str = "symmetric",
                   space: str = "lab",
                   regions: Sequence[tuple[torch.Tensor, Optional[torch.Tensor]]] = (),
                   strength: float = 1.0, clip: bool = True, eps: float = EPS) -> torch.Tensor:
    """`content` (1 x 3 x H x W RGB 0..1) with the colour mean and covariance of `style`.

    regions: (content mask, style mask or None for the whole style) pairs; each content region
    takes its style region's statistics; soft masks blend, and pixels outside every region keep
    their colour. strength blends the original (0) and the full transfer (1). clip=False returns
    the unclamped result (for checking the statistics). Computed in float64 on the CPU (it is
    a few operations per pixel); the result has content's dtype and device."""
    if space not in SPACES:
        raise ValueError(f"unknown colour space {space!r}; use one of {SPACES}")
    to_space = rgb_to_lab if space == "lab" else (lambda x: x)
    from_space = lab_to_rgb if space == "lab" else (lambda x: x)
    x = to_space(content.detach().to("cpu", torch.float64))
    s = to_space(style.detach().to("cpu", torch.float64))
    pairs = list(regions) or [(torch.ones_like(x[:, :1]), None)]
    masks = [mask_to_grid(_as_mask(m, x), tuple(x.shape[-2:])) for m, _ in pairs]
    coverage = sum(masks)
    over = coverage.clamp_min(1.0)          # overlapping regions share a pixel
    result = x * (1.0 - coverage / over)
    for mask, (_, style_mask) in zip(masks, pairs):
        s_weights = None if style_mask is None else \
            mask_to_grid(_as_mask(style_mask, s), tuple(s.shape[-2:]))
        c_mean, c_cov = pixel_stats(x, mask)
        s_mean, s_cov = pixel_stats(s, s_weights)
        mapped = _apply(x, linear_map(c_cov, s_cov, method, eps), c_mean, s_mean)
        result = result + mask / over * mapped
    if strength != 1.0:
        result = x + float(strength) * (result - x)
    rgb = from_space(result)
    rgb = rgb.clamp(0.0, 1.0) if clip else rgb
    return rgb.to(content.device, content.dtype)


def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """H x W or 1 x 1 x H x W mask as 1 x 1 x H x W in `like`'s dtype and device."""
    m = mask.reshape(1, 1, *mask.shape[-2:]) if mask.dim() != 4 else mask
    return m.to(like.device, like.dtype).clamp(0, 1)
