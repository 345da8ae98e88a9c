"""The blur every perturbation of uattr uses: a differentiable Gaussian blur with its own
width for every image, and the fixed blurred reference of papers/001 A.2."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["blurred_reference", "gaussian_blur", "gaussian_kernel1d"]

_MIN_SIGMA = 1e-4
# A kernel at least this share of the side blurs by matrix products (below)
_MATRIX_FROM = 1 / 8


def gaussian_kernel1d(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1-d Gaussian kernels ``[B, 2·radius+1]`` for widths ``sigma [B]``.

    Differentiable in ``sigma``; as ``sigma -> 0`` the kernel tends to a unit impulse.
    """
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    sigma = sigma.clamp_min(_MIN_SIGMA)[:, None]  # [B, 1]
    logits = -0.5 * (offsets[None, :] / sigma) ** 2  # [B, K]
    return logits.softmax(-1)  # = exp(·) / Σ exp(·), stable for tiny sigma


def gaussian_blur(x: Tensor, sigma: Tensor | float, *, radius: int | None = None) -> Tensor:
    """Blur each image ``x[b]`` (``[B, C, H, W]``) with a Gaussian of width ``sigma[b]`` px.

    Separable convolution with reflect padding (as two matrix products where the kernel
    spans an eighth of the side or more), so a constant image stays constant and the
    kernel preserves mass (weights sum to 1). ``radius`` defaults to
    ``ceil(3 · max σ)``, capped at the image size. Differentiable in ``x`` and ``sigma``.
    """
    batch, channels, height, width = x.shape
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(batch)
    if sigma.shape != (batch,):
        raise ValueError(
            f"sigma must be a scalar or have shape [B] = [{batch}], got {tuple(sigma.shape)}"
        )
    if not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError("sigma must be finite and >= 0")
    if radius is None:
        radius = max(1, math.ceil(3 * float(sigma.detach().max())))
    radius = min(radius, height - 1, width - 1)
    if radius < 1:
        return x
    kernel = gaussian_kernel1d(sigma, radius)  # [B, K]
    if (2 * radius + 1) >= _MATRIX_FROM * max(height, width):
        # The separable blur as two batched matrix products, x ↦ B_H · x · B_Wᵀ, one
        # banded matrix per image with the reflect padding folded in: a wide kernel (the
        # optimization-based method's σ0 is 5% of the side) costs a few times the
        # convolution's multiplications, yet its gradient in σ is a matrix product too,
        # 2-4× faster on a CPU than the grouped convolution's weight gradient.
        rows = _blur_matrices(kernel, height, radius)[:, None]  # [B, 1, H, H]
        cols = _blur_matrices(kernel, width, radius)[:, None]  # [B, 1, W, W]
        return rows @ (x @ cols.transpose(-1, -2))
    # One group per (image, channel), so each image is blurred with its own kernel.
    kernel = kernel.repeat_interleave(channels, dim=0)  # [B·C, K]
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=batch * channels)  # along W
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=batch * channels)  # along H
    return flat.view(batch, channels, height, width)


@functools.lru_cache(maxsize=64)
def _taps(side: int, radius: int) -> Tensor:
    """``[side · K]``: for output pixel ``i`` and tap ``k`` (``K = 2·radius + 1``), the flat
    index ``i · side + j`` of the input pixel ``j`` that the tap reads under reflect
    padding (``radius < side``)."""
    padded = torch.arange(-radius, side + radius).abs()
    source = torch.where(padded > side - 1, 2 * (side - 1) - padded, padded)  # reflect
    window = torch.arange(side)[:, None] + torch.arange(2 * radius + 1)  # [side, K]
    return (torch.arange(side)[:, None] * side + source[window]).flatten()


def _blur_matrices(kernel: Tensor, side: int, radius: int) -> Tensor:
    """``[B, side, side]``: the 1-d blur along an axis of ``side`` pixels as a matrix per
    image, ``M[b, i, j]`` = the sum of ``kernel[b]``'s taps that output ``i`` reads from
    input ``j`` (two taps meet at a pixel near the border); differentiable in ``kernel``."""
    taps = _taps(side, radius).to(kernel.device)
    flat = kernel.new_zeros(kernel.shape[0], side * side)
    return flat.index_add(1, taps, kernel.repeat(1, side)).view(-1, side, side)


def blurred_reference(x: Tensor, sigma: float = 2.0, kernel: int = 5) -> Tensor:
    """The image every perturbation draws from: ``x`` blurred with a ``kernel × kernel``
    Gaussian of width ``sigma`` (papers/001 A.2)."""
    return gaussian_blur(x, sigma, radius=kernel // 2)
