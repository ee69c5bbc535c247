"""He et al.'s guided filter: edge-aware smoothing of a stylized result with the content as guide.

In every (2r + 1)² window the output is an affine function of the guide's colours, q = aᵀI + b,
fitted by ridge least squares to the input p (ridge ε on a); each pixel averages the (a, b) of
the windows that contain it. So the result keeps the content's edges and the input's local
colours: a fast photorealistic clean-up for feed-forward results (AdaIN and the like). Windows are
clipped at the borders, as in He et al.'s box-filter implementation.

Defaults (radius 8, ε 1e-2 on 0..1 pixels, i.e. guide edges with a standard deviation above about
0.1 survive) are a judgement for 512-1024 px results, not a measurement; both are options.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

RADIUS = 8
EPS = 1e-2


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r + 1)² window clipped to the image, for every pixel of N x C x H x W,
    by cumulative sums (cost independent of r)."""
    height, width = x.shape[-2:]
    return _box_sum(x, radius) / _box_sum(torch.ones(1, 1, height, width, dtype=x.dtype,
                                                     device=x.device), radius)


def _box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Window sums along H then W from cumulative sums T: sum[i] = T[min(i + r, L - 1)] -
    T[i - r - 1] (0 before the start), written with slices in place (no gathers, no padded
    copies: memory traffic is what this costs)."""
    for dim in (x.dim() - 2, x.dim() - 1):
        length = x.shape[dim]
        total = x.cumsum(dim)
        r = min(radius, length - 1)
        out = torch.empty_like(total)
        out.narrow(dim, 0, length - r).copy_(total.narrow(dim, r, length - r))
        if r:
            out.narrow(dim, length - r, r).copy_(total.narrow(dim, length - 1, 1)
                                                 .expand_as(out.narrow(dim, length - r, r)))
        below = length - radius - 1                   # rows i >= r + 1 lose T[i - r - 1]
        if below > 0:
            out.narrow(dim, radius + 1, below).sub_(total.narrow(dim, 0, below))
        x = out
    return x


# rows of a strip: its pixels (with the 2r halo) times ~70 float64 values stay below ~0.5 GB
STRIP_PIXELS = 1 << 20


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = RADIUS,
                  eps: float = EPS, progress: Optional[Callable[[float], None]] = None,
                  subsample: int = 1) -> torch.Tensor:
    """Filter `src` (1 x C x H x W) guided by `guide` (1 x 3 x H x W colour or 1 x 1 x H x W
    grey), both 0..1 on the same grid; the result has src's shape, dtype and device, unclamped.

    float64 throughout (except on MPS) so the cumulative sums stay exact on large images. Large
    images go in strips of rows with a 2r halo: an output row depends on the guide and input
    within 2r rows of it only (windows of windows), so the strips give exactly the whole-image
    result with bounded memory. `progress(fraction done)` is called after each strip.

    subsample s > 1: He & Sun's fast guided filter (2015): the coefficients (a, b) are fitted on
    the images scaled down by s with radius r / s, scaled back up bilinearly and applied to the
    full-size guide, q = āᵀI + b̄; about s² times less work, close to the exact filter for
    s <= r / 4 (the coefficients vary slowly; the edges come from the full-size guide)."""
    if guide.shape[-2:] != src.shape[-2:]:
        raise ValueError("the guide and the image must have the same size")
    if radius < 0 or eps <= 0 or subsample < 1:
        raise ValueError("the radius must be >= 0, eps > 0 and the subsampling >= 1")
    if subsample > 1:
        return _fast(guide, src, radius, eps, subsample, progress)
    return _strips(lambda g, p: _apply(g, *_coefficients(g, p, radius, eps)).to(src.dtype),
                   guide, src, radius, progress)


def _strips(work: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], guide: torch.Tensor,
            src: torch.Tensor, radius: int,
            progress: Optional[Callable[[float], None]]) -> torch.Tensor:
    """`work(guide, src)` on strips of rows with a 2r halo, the parts put back together."""
    height, width = src.shape[-2:]
    rows = max(64, STRIP_PIXELS // max(width, 1) - 4 * radius)
    if rows >= height:
        result = work(guide, src)
        if progress is not None:
            progress(1.0)
        return result
    halo = 2 * radius
    parts = []
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        start, stop = max(0, top - halo), min(height, bottom + halo)
        part = work(guide[..., start:stop, :], src[..., start:stop, :])
        parts.append(part[..., top - start:top - start + bottom - top, :])
        if progress is not None:
            progress(bottom / height)
    return torch.cat(parts, dim=-2)


def _fast(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float, subsample: int,
          progress: Optional[Callable[[float], None]]) -> torch.Tensor:
    height, width = src.shape[-2:]
    small = (max(1, -(-height // subsample)), max(1, -(-width // subsample)))

    def down(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), size=small, mode="bilinear", antialias=True,
                             align_corners=False)

    g, c = guide.shape[1], src.shape[1]
    coarse = _strips(lambda gg, pp: torch.cat(
        [coefficient.flatten(1, -3) for coefficient in _coefficients(gg, pp, max(
            1, round(radius / subsample)), eps)], 1).float(), down(guide), down(src),
        max(1, round(radius / subsample)),
        None if progress is None else (lambda fraction: progress(0.9 * fraction)))
    fine = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    image = guide.float()
    q = _apply(image, fine[:, :g * c].reshape(1, g, c, height, width), fine[:, g * c:])
    if progress is not None:
        progress(1.0)
    return q.to(src.dtype)


def _apply(image: torch.Tensor, a_bar: torch.Tensor, b_bar: torch.Tensor) -> torch.Tensor:
    """q = āᵀI + b̄ per pixel (ā: 1 x G x C x H x W, b̄: 1 x C x H x W)."""
    return (a_bar * image.to(a_bar.dtype)[:, :, None]).sum(dim=1) + b_bar


def _coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The window-averaged fits (ā 1 x G x C x H x W, b̄ 1 x C x H x W), float64 (MPS: 32)."""
    work = torch.float32 if src.device.type == "mps" else torch.float64
    image = guide.to(work)
    p = src.to(work)
    g, c = image.shape[1], p.shape[1]
    # one pass of box means over I, p, I·p and the upper triangle of I·Iᵀ
    upper = [(i, j) for i in range(g) for j in range(i, g)]
    products = torch.cat([image, p, (image[:, :, None] * p[:, None]).flatten(1, 2),
                          torch.stack([image[:, i] * image[:, j] for i, j in upper], 1)], 1)
    means = box_mean(products, radius)
    del products
    mean_i, mean_p = means[:, :g], means[:, g:g + c]
    cov_ip = means[:, g + c:g + c + g * c].reshape(1, g, c, *means.shape[-2:]) \
        - mean_i[:, :, None] * mean_p[:, None]                     # 1 x G x C x H x W
    ii = means[:, g + c + g * c:]
    cov_ii = torch.empty(1, g, g, *means.shape[-2:], dtype=work, device=image.device)
    for index, (i, j) in enumerate(upper):
        cov_ii[:, i, j] = ii[:, index] - mean_i[:, i] * mean_i[:, j] + (eps if i == j else 0.0)
        cov_ii[:, j, i] = cov_ii[:, i, j]
    system = cov_ii.permute(0, 3, 4, 1, 2)                         # 1 x H x W x G x G
    rhs = cov_ip.permute(0, 3, 4, 1, 2)                            # 1 x H x W x G x C
    a = torch.linalg.solve(system, rhs).permute(0, 3, 4, 1, 2)     # 1 x G x C x H x W
    b = mean_p - (a * mean_i[:, :, None]).sum(dim=1)               # 1 x C x H x W
    smoothed = box_mean(torch.cat([a.flatten(1, 2), b], 1), radius)
    return smoothed[:, :g * c].reshape(a.shape), smoothed[:, g * c:]
