"""Gradient-based attributions of the uncertainty (papers/001 A.2, DESIGN §3.3)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import Saliency
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor, nn

from ..ops.checks import check_positive, check_positive_ints
from ..ops.chunks import images_per_pass, saved_bytes, within_memory
from ..ops.perturb import gaussian_blur
from ..ops.rng import GeneratorArg, draw_normal, make_generators
from ..uq import PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution, require_layers

__all__ = ["IG_RULES", "BlurIG", "Grad", "GuidedBackprop", "IntegratedGradients", "SmoothGrad"]

# Captum's quadrature rules for Integrated Gradients
IG_RULES = ("gausslegendre", "riemann_middle", "riemann_left", "riemann_right",
            "riemann_trapezoid")


def input_gradients(
    uncertainty_of: Callable[[Tensor], Tensor], images: Tensor, at_28px: int, unit: int = 1
) -> Tensor:
    """``∂U/∂x`` ``[N, C, H, W]`` of many images, ``at_28px`` images of 28×28 (as many
    pixels: :func:`~uattr.ops.chunks.images_per_pass`) at a time, and never more than
    fit in memory: the first chunk is one image, whose saved activations size the rest
    (:func:`~uattr.ops.chunks.within_memory`). Every chunk holds whole groups of ``unit``
    consecutive images (Integrated Gradients: one step of the path for each image of the
    batch, as Captum's chunks do, since a posterior per sample maps whole batches)."""
    step = max(unit, images_per_pass(at_28px, *images.shape[-2:]) // unit * unit)
    grads, start = [], 0
    if step > unit and images.shape[0] > unit:  # measure one group before chunks of many
        first = images[:unit].detach().requires_grad_()
        with saved_bytes() as saved:
            u = uncertainty_of(first).sum()
        (grad,) = torch.autograd.grad(u, first)
        grads.append(grad)
        groups = within_memory(step // unit, saved[0], images.device)
        step, start = groups * unit, unit
    for i in range(start, images.shape[0], step):
        chunk = images[i : i + step].detach().requires_grad_()
        (grad,) = torch.autograd.grad(uncertainty_of(chunk).sum(), chunk)
        grads.append(grad)
    return torch.cat(grads)


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

    ``(x - x₀) ⊙ ∫₀¹ ∂U/∂x(x₀ + α(x - x₀)) dα`` with ``n_steps`` points of Captum's
    ``rule`` (Gauss-Legendre by default; ``"riemann_middle"`` is the midpoint rule); the
    reference ``x₀`` is a white image by default (the papers' setting). Completeness: the
    map summed over pixels and channels is ``U(x) - U(x₀)`` up to the quadrature error.
    The map is the channel mean of the signed attributions' absolute values, so that a
    region counts whichever way it pushes.

    ``internal_batch_size`` bounds how many images go through the posterior at once, in
    images of 28×28 (fewer, as many pixels, on larger ones: :mod:`uattr.ops.chunks`)
    (``n_steps × B`` in all).
    """

    name = "integrated gradients"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_steps: int = 100, reference: float = 1.0, rule: str = "gausslegendre",
                 internal_batch_size: int = 1000) -> None:
        super().__init__(posterior, uncertainty)
        check_positive_ints(n_steps=n_steps)
        if not 0.0 <= reference <= 1.0:
            raise ValueError(f"reference must be an intensity in [0, 1], got {reference}")
        if rule not in IG_RULES:
            raise ValueError(f"rule must be one of {IG_RULES}, got {rule!r}")
        self.n_steps, self.reference, self.rule = n_steps, reference, rule
        self.internal_batch_size = internal_batch_size

    def attribute_signed(self, x: Tensor) -> Tensor:
        """The signed attributions ``[B, C, H, W]`` (they sum to ``U(x) - U(x₀)``)."""
        x = self._check(x).detach()
        reference = torch.full_like(x, self.reference)
        # Captum's quadrature (its points α_k and weights w_k for the rule), with the
        # gradients taken here in chunks that fit in memory, which Captum's
        # internal_batch_size, a count of images, cannot promise on large networks
        weights_of, alphas_of = approximation_parameters(self.rule)
        weights = torch.tensor(weights_of(self.n_steps), dtype=x.dtype, device=x.device)
        alphas = torch.tensor(alphas_of(self.n_steps), dtype=x.dtype, device=x.device)
        path = x - reference  # [B, C, H, W]
        points = reference + alphas[:, None, None, None, None] * path  # [n, B, C, H, W]
        grads = input_gradients(self.uncertainty_of, points.flatten(0, 1),
                                self.internal_batch_size, unit=x.shape[0]).view_as(points)
        return path * (grads * weights[:, None, None, None, None]).sum(0)

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``|IG|`` averaged over channels, ``[B, H, W]``; ``segments`` is ignored."""
        return self.attribute_signed(x).abs().mean(1)


class SmoothGrad(UncertaintyAttribution):
    """SmoothGrad of U: ``|mean_n ∂U/∂x (x + ε_n)|``, ``ε_n ~ N(0, stdev²)`` (papers/001 A.2:
    100 samples, stdev 0.1), channels averaged.

    Written here rather than with Captum's ``NoiseTunnel``, which draws its noise from the
    global RNG: with ``generator`` one generator per image, an image's map does not depend
    on the batch it is in. ``samples_batch_size`` bounds the images per forward pass (in
    images of 28×28: :mod:`uattr.ops.chunks`).
    """

    name = "smoothgrad"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_samples: int = 100, stdev: float = 0.1, seed: int = 0,
                 samples_batch_size: int = 2000) -> None:
        super().__init__(posterior, uncertainty)
        check_positive_ints(n_samples=n_samples)
        check_positive(stdev=stdev, allow_zero=True)
        self.n_samples, self.stdev, self.seed = n_samples, stdev, seed
        self.samples_batch_size = samples_batch_size

    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach()
        batch, channels, height, width = x.shape
        generators = make_generators(generator, self.seed, batch, x.device)
        noise = draw_normal(generators, (batch, self.n_samples, channels, height, width),
                            x.device, x.dtype) * self.stdev  # [B, N, C, H, W]
        noisy = (x[:, None] + noise).flatten(0, 1)  # [B·N, C, H, W]
        grads = input_gradients(self.uncertainty_of, noisy, self.samples_batch_size)
        mean_grad = grads.view(batch, self.n_samples, channels, height, width).mean(1)
        return mean_grad.abs().mean(1)


class _UncertaintyModule(nn.Module):
    """``x -> U(x) [B]`` as a module, so that Captum finds the posterior's ReLU modules."""

    def __init__(self, method: UncertaintyAttribution) -> None:
        super().__init__()
        self.posterior = method.posterior if isinstance(method.posterior, nn.Module) else None
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return self.method.uncertainty_of(x)


class GuidedBackprop(UncertaintyAttribution):
    """Guided Backpropagation of U (used by papers/004): the gradient of U where every
    ``nn.ReLU`` module of the posterior passes back only positive signals; channels
    averaged by absolute value.

    ReLUs called as functions (``F.relu``) are not guided: Captum can only hook modules.
    """

    name = "guided backprop"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach().requires_grad_()
        require_layers(self.posterior, "Guided Backprop", "nn.ReLU modules", nn.ReLU)
        with warnings.catch_warnings():  # Captum announces its (temporary) ReLU hooks
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            try:
                guided = CaptumGuidedBackprop(_UncertaintyModule(self)).attribute(x)
            except RuntimeError:
                # Captum's ReLU hooks fail first on a posterior without gradients: say why
                self.uncertainty_of(x)
                raise
        return guided.abs().mean(1)


class BlurIG(UncertaintyAttribution):
    """Blur Integrated Gradients of U (Xu et al. 2020): integrate ``∂U/∂x`` along the path
    from a strongly blurred image ``blur(x, σ_max)`` to ``x`` through ever lighter blurs.

    ``Σ_k ∇U(p_k') ⊙ (p_{k+1} - p_k)``, with ``p_k = blur(x, σ_max (1 - k/n))`` and
    ``p_k'`` the path at the midpoint width: completeness ``Σ ≈ U(x) - U(blur(x, σ_max))``.
    ``sigma_max`` defaults to 0.2 of the image side (the paper's 50 px on 224 px).
    Written here because Captum has no blur path; ``internal_batch_size`` (in images of
    28×28: :mod:`uattr.ops.chunks`) bounds the
    images per forward pass (``n_steps × B`` in all).
    """

    name = "blur ig"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_steps: int = 100, sigma_max: float | None = None,
                 internal_batch_size: int = 1000) -> None:
        super().__init__(posterior, uncertainty)
        check_positive_ints(n_steps=n_steps)
        if sigma_max is not None:
            check_positive(sigma_max=sigma_max)
        self.n_steps, self.sigma_max = n_steps, sigma_max
        self.internal_batch_size = internal_batch_size

    def attribute_signed(self, x: Tensor) -> Tensor:
        """Signed attributions ``[B, C, H, W]`` summing to ``≈ U(x) - U(blur(x, σ_max))``."""
        x = self._check(x).detach()
        batch, channels, height, width = x.shape
        sigma_max = self.sigma_max or 0.2 * min(height, width)
        fractions = torch.linspace(1.0, 0.0, self.n_steps + 1, device=x.device, dtype=x.dtype)
        widths = sigma_max * fractions  # [n+1], from σ_max down to 0
        middles = (widths[:-1] + widths[1:]) / 2  # [n]

        def path(sigmas: Tensor) -> Tensor:  # [B, len(sigmas), C, H, W]
            repeated = x.repeat_interleave(len(sigmas), dim=0)  # [B·k, C, H, W]
            blurred = gaussian_blur(repeated, sigmas.repeat(batch), radius=_radius(sigma_max, x))
            return blurred.view(batch, len(sigmas), channels, height, width)

        steps = path(widths).diff(dim=1)  # [B, n, C, H, W]: p_{k+1} - p_k
        points = path(middles).flatten(0, 1)  # [B·n, C, H, W]
        grads = input_gradients(self.uncertainty_of, points, self.internal_batch_size)
        return (grads.view_as(steps) * steps).sum(1)  # [B, C, H, W]

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``|Blur IG|`` averaged over channels, ``[B, H, W]``; ``segments`` is ignored."""
        return self.attribute_signed(x).abs().mean(1)


def _radius(sigma_max: float, x: Tensor) -> int:
    """One kernel radius for the whole path, so every width is blurred alike."""
    return min(max(1, math.ceil(3 * sigma_max)), x.shape[-1] - 1, x.shape[-2] - 1)
