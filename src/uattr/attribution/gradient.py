"""Gradient-based attributions of the uncertainty (papers/001 A.2, DESIGN §3.3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Saliency
from torch import Tensor, nn

from ..uq import Posterior, UncertaintySpec
from .base import UncertaintyAttribution

__all__ = ["Grad", "IntegratedGradients"]


class Grad(UncertaintyAttribution):
    """Plain gradient magnitude ``|∂U/∂x|``, channels aggregated by their mean.

    One forward and one backward pass for the whole batch (Captum's ``Saliency``
    on ``x -> U(x) [B]``).
    """

    name = "grad"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``|∂U/∂x|`` averaged over channels, ``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x)
        saliency = Saliency(self.uncertainty_of).attribute(x.detach().requires_grad_(), abs=True)
        return saliency.mean(1)  # [B, C, H, W] -> [B, H, W]


class IntegratedGradients(UncertaintyAttribution):
    """Integrated Gradients of U from a reference image to x (papers/001 A.2).

    ``(x - x₀) ⊙ ∫₀¹ ∂U/∂x(x₀ + α(x - x₀)) dα`` with Captum's Gauss-Legendre rule and
    ``n_steps`` points; the reference ``x₀`` is a white image by default (the papers'
    setting). Completeness: the map summed over pixels and channels is
    ``U(x) - U(x₀)`` up to the quadrature error. The map is the channel mean of the
    signed attributions' absolute values, so that a region counts whichever way it pushes.

    ``internal_batch_size`` bounds how many images go through the posterior at once
    (``n_steps × B`` in all).
    """

    name = "integrated gradients"

    def __init__(
        self,
        posterior: Posterior | Sequence[nn.Module] | Callable[[Tensor], Tensor],
        uncertainty: UncertaintySpec = "total",
        *,
        n_steps: int = 100,
        reference: float = 1.0,
        internal_batch_size: int = 1000,
    ) -> None:
        super().__init__(posterior, uncertainty)
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
        if not 0.0 <= reference <= 1.0:
            raise ValueError(f"reference must be an intensity in [0, 1], got {reference}")
        self.n_steps, self.reference = n_steps, reference
        self.internal_batch_size = internal_batch_size

    def attribute_signed(self, x: Tensor) -> Tensor:
        """The signed attributions ``[B, C, H, W]`` (they sum to ``U(x) - U(x₀)``)."""
        x = self._check(x).detach()
        return CaptumIG(self.uncertainty_of).attribute(
            x, baselines=torch.full_like(x, self.reference), n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size)

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``|IG|`` averaged over channels, ``[B, H, W]``; ``segments`` is ignored."""
        return self.attribute_signed(x).abs().mean(1)

    def __repr__(self) -> str:
        return (f"IntegratedGradients(uncertainty={self.uncertainty!r}, n_steps={self.n_steps}, "
                f"reference={self.reference})")
