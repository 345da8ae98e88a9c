"""LIME's local linear surrogate (Ribeiro et al. 2016), batched over images: binomial
segment masks, the exponential kernel of the masks' cosine distance, and a weighted ridge
regression, as the ``lime`` package sets them. Written here because Captum's ``Lime``
fits one image at a time; these draw, weigh and solve for every image of a batch at once.
Used by :class:`~uattr.attribution.LIME`, the explanation-uncertainty comparison and the
tabular explanations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .rng import draw_uniform
from .segment import segment_slots

__all__ = ["lime_fit", "lime_kernel", "lime_masks", "weighted_ridge"]


def lime_masks(segments: Tensor, n: int, generators: Sequence[torch.Generator],
               dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """LIME's binomial masks: ``kept [B, n, K]`` (1 = segment kept, each with probability
    1/2; the first mask keeps everything) and ``valid [B, K]`` (1 for the image's own
    segments, 0 for the padding up to the largest segment count of the batch)."""
    counts, valid = segment_slots(segments)  # [B], [B, K]
    valid = valid.to(dtype)
    kept = draw_uniform(generators, (segments.shape[0], n, valid.shape[1]), segments.device,
                        lengths=counts) < 0.5
    kept = kept.to(dtype) * valid[:, None, :]
    kept[:, 0] = valid  # the first sample is the image itself
    return kept, valid


def lime_kernel(kept: Tensor, valid: Tensor, width: float = 0.25) -> Tensor:
    """LIME's sample weights ``[B, n]``: ``sqrt(exp(-d² / width²))`` of the cosine
    distance ``d`` of each mask to the all-kept one."""
    norms = (kept.norm(dim=-1) * valid.norm(dim=-1)[:, None]).clamp_min(1e-12)
    distance = 1 - kept.sum(-1) / norms
    return torch.exp(-(distance**2) / width**2).sqrt()


def weighted_ridge(design: Tensor, target: Tensor, weights: Tensor, alpha: float,
                    valid: Tensor) -> Tensor:
    """Weighted ridge regression with an unpenalised intercept (scikit-learn's ``Ridge``
    with ``sample_weight``), batched: ``design [B, n, K]``, ``target, weights [B, n]`` ->
    coefficients ``[B, K]`` (0 for the padding features where ``valid`` is 0)."""
    w = weights / weights.sum(1, keepdim=True)  # [B, n]
    x_mean = (w[..., None] * design).sum(1, keepdim=True)  # [B, 1, K]
    y_mean = (w * target).sum(1, keepdim=True)  # [B, 1]
    xc = (design - x_mean) * weights[..., None].sqrt()  # [B, n, K]
    yc = (target - y_mean) * weights.sqrt()  # [B, n]
    samples, features = design.shape[1:]
    if samples < features:
        # More features than samples (LIME per pixel on a large image): the dual form
        # (XᵀX + αI_K)⁻¹Xᵀy = Xᵀ(XXᵀ + αI_n)⁻¹y solves n×n instead of K×K (a K×K system
        # at 224 px would take 20 GB). Padding features have zero columns, so weight 0.
        gram = xc @ xc.transpose(1, 2) + alpha * torch.eye(samples, dtype=xc.dtype,
                                                            device=xc.device)
        dual = torch.linalg.solve(gram, yc[..., None])  # [B, n, 1]
        return (xc.transpose(1, 2) @ dual)[..., 0] * valid
    gram = xc.transpose(1, 2) @ xc + alpha * torch.diag_embed(torch.ones_like(valid))
    rhs = (xc.transpose(1, 2) @ yc[..., None])[..., 0]  # [B, K]
    return torch.linalg.solve(gram, rhs) * valid


def lime_fit(kept: Tensor, valid: Tensor, values: Tensor, kernel_width: float = 0.25,
             alpha: float = 1.0) -> Tensor:
    """LIME's surrogate of each of ``values [B, n, R]`` (R outputs of the n perturbed
    inputs of each image) on the masks ``kept [B, n, K]``: the kernel-weighted ridge
    coefficients ``[B, R, K]``, one fit per image and output (the outputs share the
    image's design), solved in float64."""
    outputs = values.shape[2]
    weights = lime_kernel(kept, valid, kernel_width)  # [B, n]
    coefficients = weighted_ridge(
        kept.repeat_interleave(outputs, 0).double(),
        values.permute(0, 2, 1).flatten(0, 1).double(),
        weights.repeat_interleave(outputs, 0).double(), alpha,
        valid.repeat_interleave(outputs, 0).double())  # [B·R, K]
    return coefficients.to(kept.dtype).view(kept.shape[0], outputs, -1)
