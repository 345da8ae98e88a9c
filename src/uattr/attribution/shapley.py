"""Kernel SHAP of the uncertainty (Lundberg & Lee, NeurIPS 2017, Theorem 2).

The players are the image's features (pixels, or the segments given to ``attribute``); a
coalition ``z ∈ {0, 1}^M`` keeps the features it marks 1 and blurs the others (5×5
Gaussian, σ = 2, as every perturbation method of uattr), and the value of a coalition is
the uncertainty ``v(z) = U(x_z)``. The Shapley values ``φ [M]`` of ``v`` are the solution
of the weighted least squares

    min_φ  Σ_z π(z) (v(z) − v(0) − z·φ)²   subject to   Σ_k φ_k = v(1) − v(0),

with the Shapley kernel ``π(z) = (M − 1) / (C(M, |z|) |z| (M − |z|))`` over the coalitions
that are neither empty nor full (those two carry infinite weight: the intercept is
``v(0)`` and the constraint is efficiency). ``φ_k`` is positive where keeping feature k
sharp raises the uncertainty, i.e. where blurring it lowers it, the sign of every uattr map.

- When an image's ``2^M − 2`` coalitions fit in ``n_samples``, all of them are
  enumerated with their kernel weights: the result is the exact Shapley values.
- Otherwise ``n_samples`` coalitions are drawn from the kernel itself (a size
  ``s ∈ 1..M−1`` with probability ∝ ``(M − 1) / (s (M − s))``, then ``s`` features
  uniformly), each of weight 1, as shap's ``KernelExplainer`` and Captum's ``KernelShap``
  sample.

The constraint is solved exactly rather than with a large weight (Captum's 10⁶): with
``P = I − 11ᵀ/M``, ``φ = Δ/M · 1 + P u`` and ``u`` the minimum-norm least-squares solution
of the projected problem. Written here rather than with Captum's ``KernelShap`` because
that fits one image at a time with sampled coalitions only; here coalitions, forward passes
and the fits are batched over images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.perturb import blurred_reference
from ..ops.rng import GeneratorArg, draw_uniform, make_generators
from ..uq import PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution
from .perturbation import blurred_versions, feature_slots, minimum_norm_fit

__all__ = ["KernelSHAP", "shapley_kernel_coalitions"]


class KernelSHAP(UncertaintyAttribution):
    """Kernel SHAP: the Shapley values of the uncertainty over pixels or segments, with
    blurring as the absent value (the module docstring gives the maths).

    ``n_samples`` (default 2000 per pixel, 1000 with segments: the forward passes of the
    papers' fixed-mask variant, :class:`~uattr.attribution.FixedMaskKernelSHAP`) bounds the
    coalitions per image; an image with ``2^M − 2 ≤ n_samples`` is solved exactly. The
    map's features sum to ``U(x) − U(blurred x)`` (efficiency) whatever the samples.
    """

    name = "kernelshap"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_samples: int | None = None, seed: int = 0,
                 perturbations_per_eval: int = 2000) -> None:
        super().__init__(posterior, uncertainty)
        if n_samples is not None and n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        self.n_samples, self.seed = n_samples, seed
        self.perturbations_per_eval = perturbations_per_eval

    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """``[B, H, W]``; ``segments=None`` works per pixel."""
        x = self._check(x).detach()
        n = self.n_samples or (2000 if segments is None else 1000)
        segments, counts, valid = feature_slots(x, segments)  # [B, H, W], [B], [B, K]
        batch = x.shape[0]
        generators = make_generators(generator, self.seed, batch, x.device)
        kept, weights = shapley_kernel_coalitions(counts, valid, n, generators)  # [B,n,K]
        with torch.no_grad():
            full = self.uncertainty_of(x).double().cpu()  # v(1) [B]
            empty = self.uncertainty_of(blurred_reference(x)).double().cpu()  # v(0) [B]
            values = (blurred_versions(self.uncertainty_of, x, segments,
                                       (valid[:, None, :] & ~kept).to(x.dtype),
                                       self.perturbations_per_eval).double().cpu()
                      if kept.shape[1] else torch.zeros(batch, 0, dtype=torch.float64))
        phi = constrained_shapley_fit(kept.cpu(), valid.cpu(), weights.cpu(),
                                      values - empty[:, None], full - empty)  # [B, K]
        phi = phi.to(device=x.device, dtype=x.dtype)
        return phi.gather(1, segments.flatten(1)).view_as(segments)


def shapley_kernel_coalitions(
    counts: Tensor,
    valid: Tensor,
    n_samples: int,
    generators: torch.Generator | list[torch.Generator],
) -> tuple[Tensor, Tensor]:
    """The coalitions ``kept [B, n, K]`` (bool, True = feature kept) and their weights
    ``[B, n]`` (float64; 0 on rows an image does not use) of ``counts [B]`` features each.

    An image with ``2^M − 2 ≤ n_samples`` enumerates every coalition but the empty and the
    full one, weighted by the Shapley kernel; any other draws ``n_samples`` from the kernel,
    weight 1. ``n`` is the most rows any image of the batch needs."""
    device = valid.device
    batch, k_max = valid.shape
    m = counts.double()  # [B]
    features = [int(c) for c in counts.tolist()]
    exact = [c < 63 and 2 ** c - 2 <= n_samples for c in features]
    rows = max([2 ** c - 2 if e else n_samples for c, e in zip(features, exact, strict=True)]
               + [0])
    # Draws first (sizes, then keys), each image from its own generator and only over its
    # own features: an image's coalitions do not depend on the batch around it.
    size_draws = draw_uniform(generators, (batch, rows), device, torch.float64)  # [B, n]
    keys = draw_uniform(generators, (batch, rows, k_max), device, lengths=counts)  # [B,n,K]
    # Sampled: size s ∈ 1..M−1 by inverse CDF of p(s) ∝ (M − 1)/(s (M − s)), then the s
    # features of highest key.
    sizes = torch.arange(1, max(k_max, 2), device=device, dtype=torch.float64)  # [K−1]
    density = torch.where(sizes[None] < m[:, None],
                          1.0 / (sizes[None] * (m[:, None] - sizes[None]).clamp(min=1)), 0.0)
    cdf = density.cumsum(1) / density.sum(1, keepdim=True).clamp(min=1e-300)  # [B, K−1]
    drawn_size = torch.searchsorted(cdf.contiguous(), size_draws.contiguous(), right=True) + 1
    keys = keys.masked_fill(~valid[:, None, :], -1.0)
    ranks = keys.argsort(-1, descending=True).argsort(-1)  # [B, n, K]
    sampled = ranks < drawn_size[..., None]  # [B, n, K]
    # Enumerated: row j keeps the features of the binary digits of j + 1.
    codes = torch.arange(1, rows + 1, device=device)  # [n]
    shifts = torch.arange(k_max, device=device).clamp(max=62)  # an exact image has M < 63
    bits = (codes[:, None] >> shifts[None]) & 1  # [n, K]
    enumerated = bits.bool()[None] & valid[:, None, :]  # [B, n, K]
    sizes_enumerated = enumerated.sum(-1).double()  # [B, n]
    used = codes[None] <= (2 ** counts.clamp(max=62))[:, None] - 2  # [B, n]
    binomial = torch.exp(torch.lgamma(m[:, None] + 1) - torch.lgamma(sizes_enumerated + 1)
                         - torch.lgamma(m[:, None] - sizes_enumerated + 1))
    kernel = (m[:, None] - 1) / (binomial * sizes_enumerated.clamp(min=1)
                                 * (m[:, None] - sizes_enumerated).clamp(min=1))
    is_exact = torch.tensor(exact, device=device)[:, None]  # [B, 1]
    kept = torch.where(is_exact[..., None], enumerated, sampled)
    weights = torch.where(is_exact, torch.where(used, kernel, 0.0),
                          torch.ones_like(kernel))
    # an image of one feature has no coalition besides the empty and the full one
    weights = torch.where((m > 1)[:, None], weights, 0.0)
    return kept, weights


def constrained_shapley_fit(
    kept: Tensor, valid: Tensor, weights: Tensor, gains: Tensor, total: Tensor
) -> Tensor:
    """``φ [B, K]`` (float64) minimising ``Σ_j w_j (gains_j − kept_j·φ)²`` subject to
    ``Σ_k φ_k = total`` over each image's valid slots (0 on the others).

    ``kept [B, n, K]``, ``valid [B, K]``, ``weights``/``gains [B, n]``, ``total [B]``. With
    ``φ = total/M · 1 + P u`` (``P`` centres over the valid slots) the problem is an
    unconstrained least squares in ``u`` of design ``kept·P``, solved minimum-norm."""
    z = kept.double() * valid[:, None, :]  # [B, n, K]
    m = valid.sum(1).double().clamp(min=1)  # [B]
    share = total / m  # [B]
    design = (z - z.sum(-1, keepdim=True) / m[:, None, None]) * valid[:, None, :]  # z·P
    residual = gains - share[:, None] * z.sum(-1)  # [B, n]
    root = weights.sqrt()
    if z.shape[1]:
        u = minimum_norm_fit(design * root[..., None], residual * root)  # [B, K]
    else:
        u = torch.zeros_like(valid, dtype=torch.float64)
    u = u * valid
    centred = u - u.sum(1, keepdim=True) / m[:, None]  # P u
    return (share[:, None] + centred) * valid
