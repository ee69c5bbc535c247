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

from typing import Callable, Optional, Sequence

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

class _Moments:
    """Weighted mean and covariance of 3-vectors accumulated slice by slice, in float64, about
    a reference point (the first slice's mean) so the sums stay small: no cancellation."""

    def __init__(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64)
        self.sum = torch.zeros(3, dtype=torch.float64)
        self.outer = torch.zeros(3, 3, dtype=torch.float64)
        self.reference: Optional[torch.Tensor] = None

    def add(self, flat: torch.Tensor, weights: Optional[torch.Tensor]) -> None:
        if self.reference is None:
            self.reference = flat.mean(dim=1)
        centred = flat - self.reference[:, None]
        weighted = centred if weights is None else centred * weights
        self.total += flat.shape[1] if weights is None else weights.sum()
        self.sum += weighted.sum(dim=1)
        self.outer += weighted @ centred.T

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reference is None or self.total <= 0:
            raise ValueError("a colour region is empty")
        offset = self.sum / self.total
        cov = self.outer / self.total - torch.outer(offset, offset)
        return self.reference + offset, cov


def pixel_stats(image: torch.Tensor, weights: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3) and covariance (3 x 3, divided by the weight total) of a 1 x 3 x H x W image's
    pixels, each pixel weighted by a 1 x 1 x H x W mask if given; float64 on the CPU."""
    moments = _Moments()
    moments.add(image.detach().reshape(3, -1).to("cpu", torch.float64),
                None if weights is None else weights.detach().reshape(-1).to("cpu", torch.float64))
    return moments.result()


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


CHUNK_PIXELS = 1 << 18        # pixels per slice of rows: ~6 MB per float64 temporary


def _row_slices(height: int, width: int) -> list[slice]:
    rows = max(1, CHUNK_PIXELS // max(width, 1))
    return [slice(top, min(height, top + rows)) for top in range(0, height, rows)]


def _space_stats(image: torch.Tensor, to_space, weights: Sequence[Optional[torch.Tensor]],
                 after_slice: Callable[[], None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """pixel_stats of to_space(image) for each weight mask (1 x 1 x H x W or None), one slice of
    rows at a time: the float64 copy of a 12-megapixel image is never made whole."""
    moments = [_Moments() for _ in weights]
    for rows in _row_slices(image.shape[-2], image.shape[-1]):
        flat = to_space(image[..., rows, :].detach().to("cpu", torch.float64)).reshape(3, -1)
        for moment, mask in zip(moments, weights):
            moment.add(flat, None if mask is None
                       else mask[..., rows, :].reshape(-1).to(torch.float64))
        after_slice()
    return [moment.result() for moment in moments]


def color_transfer(content: torch.Tensor, style: torch.Tensor, method: str = "symmetric",
                   space: str = "lab",
                   regions: Sequence[tuple[torch.Tensor, Optional[torch.Tensor]]] = (),
                   strength: float = 1.0, clip: bool = True, eps: float = EPS,
                   progress: Optional[Callable[[float], None]] = None) -> torch.Tensor:
    """`content` (1 x 3 x H x W RGB 0..1) with the colour mean and covariance of `style`.

    regions: (content mask, style mask or None for the whole style) pairs; each content region
    takes its style region's statistics; soft masks blend, and pixels outside every region keep
    their colour. strength blends the original (0) and the full transfer (1). clip=False returns
    the unclamped result (for checking the statistics). Computed in float64 on the CPU (a few
    operations per pixel), a slice of rows at a time, so memory stays ~2x the float32 image
    whatever its size; `progress` hears the fraction done after each slice (it may raise to
    stop: a cancelled job). The result has content's dtype and device."""
    if space not in SPACES:
        raise ValueError(f"unknown colour space {space!r}; use one of {SPACES}")
    to_space = rgb_to_lab if space == "lab" else (lambda x: x)
    from_space = lab_to_rgb if space == "lab" else (lambda x: x)
    height, width = content.shape[-2:]
    pairs = list(regions) or [(None, None)]
    grid = (height, width)
    masks = [None if m is None else mask_to_grid(_as_mask(m), grid) for m, _ in pairs]
    style_masks = [None if m is None else mask_to_grid(_as_mask(m), tuple(style.shape[-2:]))
                   for _, m in pairs]
    slices = _row_slices(height, width)
    # work units: a statistics slice 1, an applied slice 2 (both conversions)
    units = [0, 3 * len(slices) + len(_row_slices(*style.shape[-2:]))]

    def after_slice(weight: int = 1) -> None:
        units[0] += weight
        if progress is not None:
            progress(units[0] / units[1])
    content_stats = _space_stats(content, to_space, masks, after_slice)
    style_stats = _space_stats(style, to_space, style_masks, after_slice)
    maps = [(linear_map(c_cov, s_cov, method, eps), c_mean, s_mean)
            for (c_mean, c_cov), (s_mean, s_cov) in zip(content_stats, style_stats)]
    out = torch.empty(content.shape, dtype=content.dtype)
    for rows in slices:
        x = to_space(content[..., rows, :].detach().to("cpu", torch.float64))
        weights = [torch.ones_like(x[:, :1]) if m is None else m[..., rows, :].to(torch.float64)
                   for m in masks]
        coverage = sum(weights)
        over = coverage.clamp_min(1.0)          # overlapping regions share a pixel
        result = x * (1.0 - coverage / over)
        for weight, (matrix, c_mean, s_mean) in zip(weights, maps):
            result = result + weight / over * _apply(x, matrix, c_mean, s_mean)
        if strength != 1.0:
            result = x + float(strength) * (result - x)
        rgb = from_space(result)
        out[..., rows, :] = rgb.clamp(0.0, 1.0) if clip else rgb
        after_slice(2)
    return out.to(content.device)


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    """H x W or 1 x 1 x H x W mask as 1 x 1 x H x W float32 on the CPU, clamped to 0..1."""
    m = mask.reshape(1, 1, *mask.shape[-2:]) if mask.dim() != 4 else mask
    return m.detach().to("cpu", torch.float32).clamp(0, 1)
