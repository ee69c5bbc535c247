"""Levin et al.'s closed-form matting Laplacian, the photorealism regulariser of Deep Photo Style
Transfer (Luan et al. 2017).

For every window w_k (3x3 by default) lying fully inside the image, with colour mean μ_k and
covariance Σ_k of the guide image I,

    L_ij += δ_ij - (1 + (I_i - μ_k)ᵀ (Σ_k + ε/|w_k| U)⁻¹ (I_j - μ_k)) / |w_k|   for i, j in w_k.

vᵀ L v is small exactly when v is locally an affine function of the guide's colours, so
Σ_c V_cᵀ L V_c penalises output colours that are not locally affine in the content's colours
(Luan et al.: "photorealism"). The matrix is sparse: pixel i couples only to pixels up to 2r away.
It is stored as its diagonals (one H x W plane per offset (dy, dx), |dy|, |dx| <= 2r), which makes
L·v 25 shifted multiply-adds for 3x3 windows; `to_sparse` gives the same matrix as torch sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-7


@dataclass
class MattingLaplacian:
    """L stored by offsets: band[o, y, x] = L[(y, x), (y + dy_o, x + dx_o)]."""

    band: torch.Tensor                  # (2·reach + 1)² x H x W
    reach: int                          # 2r: the largest coupling distance

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.band.shape[1]), int(self.band.shape[2])

    def offsets(self) -> list[tuple[int, int]]:
        span = range(-self.reach, self.reach + 1)
        return [(dy, dx) for dy in span for dx in span]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """L applied to each channel of an (N x) C x H x W tensor."""
        height, width = self.shape
        reach = self.reach
        band = self.band.to(v.device, v.dtype)
        padded = F.pad(v, (reach, reach, reach, reach))
        result = torch.zeros_like(v)
        for index, (dy, dx) in enumerate(self.offsets()):
            shifted = padded[..., reach + dy:reach + dy + height, reach + dx:reach + dx + width]
            result = result + band[index] * shifted
        return result

    def quadratic(self, v: torch.Tensor) -> torch.Tensor:
        """Σ_c v_cᵀ L v_c, differentiable in v (gradient 2 L v, L being symmetric)."""
        return _Quadratic.apply(v, self)

    def gradient(self, v: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.matvec(v)

    def to_sparse(self) -> torch.Tensor:
        """The N x N matrix (N = H·W, raster order) as a coalesced torch sparse COO tensor."""
        height, width = self.shape
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        rows, cols, values = [], [], []
        for index, (dy, dx) in enumerate(self.offsets()):
            inside = (ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
            rows.append((ys * width + xs)[inside])
            cols.append(((ys + dy) * width + xs + dx)[inside])
            values.append(self.band[index].cpu()[inside])
        indices = torch.stack([torch.cat(rows), torch.cat(cols)])
        size = height * width
        return torch.sparse_coo_tensor(indices, torch.cat(values), (size, size),
                                       check_invariants=True).coalesce()

    def to_dense(self) -> torch.Tensor:
        return self.to_sparse().to_dense()


class _Quadratic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor, laplacian: MattingLaplacian) -> torch.Tensor:
        product = laplacian.matvec(v)
        ctx.save_for_backward(product)
        return (v * product).sum()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (product,) = ctx.saved_tensors
        return 2.0 * grad_output * product, None


def matting_laplacian(image: torch.Tensor, eps: float = EPS, radius: int = 1,
                      dtype: torch.dtype = torch.float32) -> MattingLaplacian:
    """The matting Laplacian of a 1 x 3 x H x W guide (RGB 0..1), windows of side 2r + 1.

    Per-window statistics and the 3x3 inverses are computed in float64 on the CPU; the result is
    stored in `dtype` on the image's device."""
    guide = image.detach()[0].to("cpu", torch.float64)
    channels, height, width = guide.shape
    side = 2 * radius + 1
    size = side * side
    reach = 2 * radius
    band = torch.zeros((2 * reach + 1) ** 2, height, width, dtype=torch.float64)
    win_h, win_w = height - 2 * radius, width - 2 * radius
    if win_h > 0 and win_w > 0:
        # windows[c, a, y, x]: channel c of pixel a (raster order in the window) of the window
        # whose top-left corner is (y, x), i.e. centred at (y + r, x + r).
        windows = F.unfold(guide[None], side).reshape(channels, size, win_h, win_w)
        mean = windows.mean(dim=1, keepdim=True)
        centred = windows - mean                                   # C x |w| x h x w
        cov = torch.einsum("cayx,dayx->yxcd", centred, centred) / size
        inverse = torch.linalg.inv(cov + (eps / size) * torch.eye(channels, dtype=torch.float64))
        # a_k (I_a - μ_k) for every window position a: |w| x h x w x C
        projected = torch.einsum("yxcd,dayx->ayxc", inverse, centred)
        centred_t = centred.permute(1, 2, 3, 0)                     # |w| x h x w x C
        positions = [(ay, ax) for ay in range(side) for ax in range(side)]
        span = 2 * reach + 1
        for a, (ay, ax) in enumerate(positions):
            for b in range(a, size):           # the window's block is symmetric in (a, b)
                by, bx = positions[b]
                value = -(1.0 + (projected[a] * centred_t[b]).sum(-1)) / size
                if a == b:
                    value = value + 1.0
                # L[a, b]: stored at row a, offset b - a; L[b, a]: at row b, offset a - b
                forward = (by - ay + reach) * span + (bx - ax + reach)
                band[forward, ay:ay + win_h, ax:ax + win_w] += value
                if a != b:
                    backward = (ay - by + reach) * span + (ax - bx + reach)
                    band[backward, by:by + win_h, bx:bx + win_w] += value
    return MattingLaplacian(band.to(image.device, dtype), reach)
