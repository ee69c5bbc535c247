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

import torch

RADIUS = 8
EPS = 1e-2


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r + 1)² window clipped to the image, for every pixel of N x C x H x W,
    by cumulative sums (cost independent of r)."""
    height, width = x.shape[-2:]
    return _box_sum(x, radius) / _box_sum(torch.ones(1, 1, height, width, dtype=x.dtype,
                                                     device=x.device), radius)


def _box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    for dim in (-2, -1):
        length = x.shape[dim]
        padded = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)
        index = torch.arange(length, device=x.device)
        upper = (index + radius + 1).clamp(max=length)
        lower = (index - radius).clamp(min=0)
        x = padded.index_select(dim, upper) - padded.index_select(dim, lower)
    return x


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = RADIUS,
                  eps: float = EPS) -> torch.Tensor:
    """Filter `src` (1 x C x H x W) guided by `guide` (1 x 3 x H x W colour or 1 x 1 x H x W
    grey), both 0..1 on the same grid; the result has src's shape, dtype and device, unclamped.

    float64 throughout (except on MPS) so the cumulative sums stay exact on large images."""
    if guide.shape[-2:] != src.shape[-2:]:
        raise ValueError("the guide and the image must have the same size")
    if radius < 0 or eps <= 0:
        raise ValueError("the radius must be >= 0 and eps > 0")
    work = torch.float32 if src.device.type == "mps" else torch.float64
    image = guide.to(work)
    p = src.to(work)
    mean_i = box_mean(image, radius)                               # 1 x G x H x W
    mean_p = box_mean(p, radius)                                   # 1 x C x H x W
    g = image.shape[1]
    # cov(I, p)[g, c] and cov(I, I)[g, h] per pixel
    cov_ip = box_mean(image[:, :, None] * p[:, None], radius) - mean_i[:, :, None] * mean_p[:, None]
    cov_ii = box_mean(image[:, :, None] * image[:, None], radius) \
        - mean_i[:, :, None] * mean_i[:, None]
    eye = torch.eye(g, dtype=work, device=image.device).reshape(1, g, g, 1, 1)
    system = (cov_ii + eps * eye).permute(0, 3, 4, 1, 2)           # 1 x H x W x G x G
    rhs = cov_ip.permute(0, 3, 4, 1, 2)                            # 1 x H x W x G x C
    a = torch.linalg.solve(system, rhs).permute(0, 3, 4, 1, 2)     # 1 x G x C x H x W
    b = mean_p - (a * mean_i[:, :, None]).sum(dim=1)               # 1 x C x H x W
    a_bar = box_mean(a.flatten(1, 2), radius).reshape(a.shape)
    b_bar = box_mean(b, radius)
    q = (a_bar * image[:, :, None]).sum(dim=1) + b_bar
    return q.to(src.dtype)
