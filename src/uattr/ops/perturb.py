"""The blur every perturbation of uattr uses: a differentiable Gaussian blur with its own
width for every image, and the fixed blurred reference of papers/001 A.2."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["blurred_reference", "gaussian_blur", "gaussian_kernel1d"]

_MIN_SIGMA = 1e-4


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

    Separable convolution with reflect padding, so a constant image stays constant and
    the kernel preserves mass (weights sum to 1). ``radius`` defaults to
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
    # One group per (image, channel), so each image is blurred with its own kernel.
    kernel = kernel.repeat_interleave(channels, dim=0)  # [B·C, K]
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=batch * channels)  # along W
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=batch * channels)  # along H
    return flat.view(batch, channels, height, width)


def blurred_reference(x: Tensor, sigma: float = 2.0, kernel: int = 5) -> Tensor:
    """The image every perturbation draws from: ``x`` blurred with a ``kernel × kernel``
    Gaussian of width ``sigma`` (papers/001 A.2)."""
    return gaussian_blur(x, sigma, radius=kernel // 2)
