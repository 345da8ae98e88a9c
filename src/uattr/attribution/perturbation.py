"""Perturbation-based attributions of the uncertainty (papers/001 A.2, DESIGN §3.3).

A perturbation replaces part of the image by the same part of the Gaussian-blurred image
(5×5 kernel, σ = 2), and a part's attribution is ``U(x) - U(x with that part blurred)``:
positive where blurring lowers the uncertainty. Perturbations are batched along dim 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor, nn

from ..perturb import gaussian_blur
from ..uq import Posterior, UncertaintySpec
from .base import UncertaintyAttribution

__all__ = ["Occlusion", "blurred_reference"]


def blurred_reference(x: Tensor, sigma: float = 2.0, kernel: int = 5) -> Tensor:
    """The image every perturbation draws from: ``x`` blurred with a ``kernel × kernel``
    Gaussian of width ``sigma`` (papers/001 A.2)."""
    return gaussian_blur(x, sigma, radius=kernel // 2)


class Occlusion(UncertaintyAttribution):
    """Slide a window over the image, blur what it covers, record ``U(x) - U(x')`` on its
    pixels, and average where windows overlap (Captum's ``Occlusion`` with the blurred
    image as baseline).

    ``window``/``stride`` default to 5/2 on images up to 64 px and 10/10 on larger ones
    (papers/001 A.2). ``perturbations_per_eval`` windows of every image go through the
    posterior together.
    """

    name = "occlusion"

    def __init__(
        self,
        posterior: Posterior | Sequence[nn.Module] | Callable[[Tensor], Tensor],
        uncertainty: UncertaintySpec = "total",
        *,
        window: int | None = None,
        stride: int | None = None,
        perturbations_per_eval: int = 32,
    ) -> None:
        super().__init__(posterior, uncertainty)
        for arg, value in (("window", window), ("stride", stride)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.window, self.stride = window, stride
        self.perturbations_per_eval = perturbations_per_eval

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach()
        channels, height, width = x.shape[1:]
        large = min(height, width) > 64
        window = self.window or (10 if large else 5)
        stride = self.stride or (10 if large else 2)
        if window > min(height, width):
            raise ValueError(f"window must fit in the image ({height}×{width}), got {window}")
        occlusion = CaptumOcclusion(self.uncertainty_of)
        maps = occlusion.attribute(
            x, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
            baselines=blurred_reference(x), perturbations_per_eval=self.perturbations_per_eval)
        return maps.mean(1)  # every channel of a pixel gets the same value

    def __repr__(self) -> str:
        return (f"Occlusion(uncertainty={self.uncertainty!r}, window={self.window}, "
                f"stride={self.stride})")
