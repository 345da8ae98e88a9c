"""Explanation uncertainty for tabular regression (papers/004, its regression task).

A Gaussian MLP outputs a mean and a log-variance per row; a posterior over such MLPs
(an ensemble, or MC-Dropout with frozen masks) gives ``[B, S, 2]``. The predictive
variance splits like the entropy of classification::

    total  = mean_s σ_s²  (aleatoric)  +  var_s μ_s  (epistemic)

Each sample's predicted mean ``μ_s(x)`` is explained feature by feature with Integrated
Gradients (from a baseline row, by default the training mean: 0 after standardising) or
with LIME (features replaced by the baseline where a binomial mask drops them); over the
samples come the mean, std and CV of the magnitudes, as for images.

The data set and the model are in :mod:`uattr.zoo.tabular`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from ..ops.checks import check_positive_ints
from ..ops.surrogate import lime_fit
from .distributions import explanation_statistics

__all__ = ["FeatureExplanation", "explain_features", "predictive_variance"]


def predictive_variance(outputs: Tensor) -> dict[str, Tensor]:
    """``total``, ``aleatoric`` (mean σ²) and ``epistemic`` (variance of the means)
    ``[B]`` from ``outputs [B, S, 2]`` = (mean, log-variance) per sample."""
    if outputs.ndim != 3 or outputs.shape[2] != 2:
        raise ValueError(f"outputs must have shape [B, S, 2] (mean, log-variance), "
                         f"got {tuple(outputs.shape)}")
    aleatoric = outputs[..., 1].exp().mean(1)
    epistemic = outputs[..., 0].var(1, correction=0)
    return {"total": aleatoric + epistemic, "aleatoric": aleatoric, "epistemic": epistemic}


@dataclass(frozen=True)
class FeatureExplanation:
    """Signed attributions of every sample's mean ``[B, S, F]``, and the mean, std and CV
    of their magnitudes over the samples ``[B, F]``."""

    attributions: Tensor
    mean: Tensor
    std: Tensor
    cv: Tensor


def explain_features(
    outputs_of: Callable[[Tensor], Tensor],
    x: Tensor,
    method: str = "integrated gradients",
    *,
    baseline: Tensor | None = None,
    steps: int = 64,
    lime_samples: int = 1000,
    seed: int = 0,
    eps: float = 1e-6,
) -> FeatureExplanation:
    """Explain each posterior sample's predicted mean ``μ_s(x)`` for rows ``x [B, F]``.

    ``outputs_of(x) -> [B, S, 2]`` (a sampled posterior's ``logits``, an ensemble's
    stacked outputs). Integrated Gradients (Captum's, the midpoint rule) with ``steps``
    from ``baseline`` (default zeros), so that ``Σ_f IG_s,f = μ_s(x) - μ_s(baseline)``,
    one sample at a time. LIME: ``lime_samples`` binomial masks per row (kept with
    probability 1/2; a dropped feature takes the baseline's value), LIME's kernel on the
    cosine distance, a weighted ridge per row and sample.
    """
    if x.ndim != 2 or not torch.isfinite(x).all():
        raise ValueError(f"x must be a finite tensor [B, F], got shape {tuple(x.shape)}")
    if method not in ("integrated gradients", "lime"):
        raise ValueError(f"method must be 'integrated gradients' or 'lime', got {method!r}")
    check_positive_ints(steps=steps, lime_samples=lime_samples)
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    batch, features = x.shape
    if method == "integrated gradients":
        x = x.detach()
        means_of = lambda rows: outputs_of(rows)[..., 0]  # noqa: E731  [B, S]
        samples = means_of(x[:1]).shape[1]
        ig = IntegratedGradients(means_of)
        attributions = torch.stack(  # the midpoint rule, one sample's mean at a time
            [ig.attribute(x, baselines=baseline, target=s, n_steps=steps,
                          method="riemann_middle") for s in range(samples)], 1)  # [B, S, F]
    else:
        generator = torch.Generator().manual_seed(seed)
        kept = (torch.rand(batch, lime_samples, features, generator=generator) < 0.5)
        kept = kept.to(x.dtype)
        kept[:, 0] = 1.0  # the first sample is the row itself
        rows = torch.where(kept > 0, x[:, None], baseline[:, None])  # [B, n, F]
        with torch.no_grad():
            means = outputs_of(rows.flatten(0, 1))[..., 0].view(batch, lime_samples, -1)
        attributions = lime_fit(kept, torch.ones(batch, features, dtype=x.dtype),
                                means)  # [B, S, F]
    magnitudes = attributions.detach().abs()[..., None]  # [B, S, F, 1]: "images" of F×1
    mean, std, cv = (t[..., 0] for t in explanation_statistics(magnitudes, eps))
    return FeatureExplanation(attributions.detach(), mean, std, cv)

