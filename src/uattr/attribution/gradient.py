"""Gradient-based attributions of the uncertainty (papers/001 A.2, DESIGN §3.3)."""

from __future__ import annotations

from captum.attr import Saliency
from torch import Tensor

from .base import UncertaintyAttribution

__all__ = ["Grad"]


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
