"""How uncertain is an explanation? Explanation distributions over posterior samples
(papers/004, DESIGN §3.4).

For every posterior sample ``s`` the class score ``f_s(x) = P[:, s, t_s]`` of a target
class ``t_s`` is explained by Guided Backprop, Integrated Gradients or LIME, giving maps
``E_s [B, H, W]``; over the S samples::

    mean  μ = mean_s |E_s|          std  σ = std_s |E_s|  (population std, like NumPy)
    CV    σ / μ   where μ > eps · max(μ) of the image, 0 elsewhere

The maps are magnitudes (``|·|``, averaged over channels), so μ ≥ 0 and the CV of a
pixel is at most √S; the guard sets the CV of pixels no sample finds relevant to 0
instead of dividing by (nearly) nothing.

The target of sample ``s`` is, by ``target=``: ``"sample"`` its own predicted class (the
papers' choice), ``"mean"`` the class of the mean prediction, ``"label"`` given labels.

The explanations are the library's own methods (:class:`~uattr.GuidedBackprop`,
:class:`~uattr.IntegratedGradients` with the midpoint rule from a black image,
:class:`~uattr.LIME`), given sample ``s`` as a posterior of one sample
(:class:`~uattr.uq.SingleSample`, which runs that sample alone where the posterior can)
and its class score as the quantity to explain. Each is batched over the images; the
gradient methods run once per sample, LIME once for all samples (every perturbed image
goes through the posterior once, and each sample gets its own ridge fit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..attribution.gradient import GuidedBackprop, IntegratedGradients
from ..attribution.perturbation import LIME
from ..ops.checks import check_positive_ints
from ..ops.rng import GeneratorArg
from ..ops.segment import check_segments, quickshift
from ..uq import SingleSample, check_images

__all__ = [
    "EXPLAINERS",
    "TARGETS",
    "ExplanationDistribution",
    "ExplanationUncertainty",
    "explanation_statistics",
    "mean_cv",
]

EXPLAINERS = ("guided backprop", "integrated gradients", "lime")
TARGETS = ("sample", "mean", "label")


@dataclass(frozen=True)
class ExplanationDistribution:
    """``maps [B, S, H, W]`` (one magnitude map per sample), ``targets [B, S]`` (the class
    each explains), and their ``mean``, ``std`` and ``cv`` over the samples ``[B, H, W]``."""

    maps: Tensor
    targets: Tensor
    mean: Tensor
    std: Tensor
    cv: Tensor

    def mean_cv(self) -> Tensor:
        """``[B]``: each image's CV averaged over the pixels where it is defined."""
        return mean_cv(self.mean, self.cv)


def mean_cv(mean: Tensor, cv: Tensor) -> Tensor:
    """``[B]``: the CV maps ``cv [B, H, W]`` averaged over the pixels where ``mean > 0``
    (where :func:`explanation_statistics` defines the CV)."""
    defined = mean > 0
    return (cv * defined).sum((1, 2)) / defined.sum((1, 2)).clamp_min(1)


def explanation_statistics(maps: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, std, cv)`` ``[B, H, W]`` of non-negative ``maps [B, S, H, W]`` over S.

    ``std`` is the population standard deviation (``np.std``); ``cv = std / mean`` where
    ``mean > eps · max(mean)`` of the image, else 0."""
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape [B, S, H, W], got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all() or (maps < 0).any():
        raise ValueError("maps must be finite and non-negative (magnitudes)")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    mean = maps.mean(1)  # [B, H, W]
    std = maps.std(1, correction=0)
    floor = eps * mean.flatten(1).amax(1).clamp_min(torch.finfo(maps.dtype).tiny)
    defined = mean > floor[:, None, None]
    cv = torch.where(defined, std / torch.where(defined, mean, torch.ones_like(mean)),
                     torch.zeros_like(mean))
    return mean, std, cv


class _ClassScore:
    """``P [k·B, 1, C] -> P[:, 0, t] [k·B]``: one sample's probability of the classes
    ``targets [B]``. The rows may hold k copies of the batch, copy-major, each scored
    against the same targets: how Captum's Integrated Gradients batches the points of
    its path (whole copies of the batch per internal batch)."""

    def __init__(self, targets: Tensor) -> None:
        self.targets = targets

    def __call__(self, probs: Tensor) -> Tensor:
        copies, rest = divmod(probs.shape[0], self.targets.shape[0])
        if rest:
            raise ValueError(f"probs must hold whole copies of the batch of "
                             f"{self.targets.shape[0]}, got {probs.shape[0]} rows")
        return probs[:, 0].gather(1, self.targets.repeat(copies)[:, None])[:, 0]


class ExplanationUncertainty:
    """Explanation distributions of a posterior's samples (papers/004).

    Args:
        posterior: any posterior ``x -> P [B, S, C]`` (ensemble, MC-Dropout, DropConnect,
            Flipout); for Guided Backprop an ``nn.Module`` with ``nn.ReLU`` layers.
        method: ``"guided backprop" | "integrated gradients" | "lime"``.
        target: ``"sample" | "mean" | "label"`` (see the module docstring).
        ig_steps: Integrated Gradients' midpoint-rule steps from a black image.
        lime_samples: LIME's binomial masks per image (segments replaced by the blurred
            image, as every perturbation of uattr; quickshift segments unless given).
        seed: LIME's masks.
        eps: the CV's guard, relative to the image's largest mean.
    """

    def __init__(
        self,
        posterior: Callable[[Tensor], Tensor],
        method: str = "guided backprop",
        *,
        target: str = "sample",
        ig_steps: int = 32,
        lime_samples: int = 1000,
        seed: int = 0,
        eps: float = 1e-6,
    ) -> None:
        if method not in EXPLAINERS:
            raise ValueError(f"method must be one of {EXPLAINERS}, got {method!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        check_positive_ints(ig_steps=ig_steps, lime_samples=lime_samples)
        if method == "guided backprop" and not isinstance(posterior, nn.Module):
            raise ValueError("posterior must be an nn.Module for Guided Backprop (its ReLU "
                             "layers are hooked); wrap the members with uattr.as_posterior")
        if method == "guided backprop" and not any(isinstance(m, nn.ReLU)
                                                   for m in posterior.modules()):
            raise ValueError("Guided Backprop needs nn.ReLU modules in the posterior's "
                             "networks (F.relu calls cannot be guided)")
        self.posterior, self.method, self.target = posterior, method, target
        self.ig_steps, self.lime_samples, self.seed, self.eps = ig_steps, lime_samples, seed, eps

    def targets(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The class each sample explains ``[B, S]``."""
        with torch.no_grad():
            probs = self.posterior(x)  # [B, S, C]
        batch, samples, _ = probs.shape
        if self.target == "sample":
            return probs.argmax(-1)
        if self.target == "mean":
            return probs.mean(1).argmax(-1)[:, None].expand(batch, samples)
        if labels is None or labels.shape != (batch,):
            raise ValueError(f"labels must be a tensor [B] = [{batch}] of classes when "
                             f"target='label', got {None if labels is None else labels.shape}")
        return labels.to(x.device).long()[:, None].expand(batch, samples)

    def _gradient_maps(self, x: Tensor, targets: Tensor) -> Tensor:
        """``|E_s|`` ``[B, S, H, W]`` of Guided Backprop or Integrated Gradients, one
        sample at a time, each batched over the images."""
        maps = []
        for s in range(targets.shape[1]):
            sample, score = SingleSample(self.posterior, s), _ClassScore(targets[:, s])
            if self.method == "guided backprop":
                explainer = GuidedBackprop(sample, score)
            else:
                explainer = IntegratedGradients(sample, score, n_steps=self.ig_steps,
                                                reference=0.0, rule="riemann_middle")
            maps.append(explainer.attribute(x))  # [B, H, W]
        return torch.stack(maps, 1)

    def _lime_maps(self, x: Tensor, targets: Tensor, segments: Tensor,
                   generator: GeneratorArg) -> Tensor:
        """``|E_s|`` ``[B, S, H, W]`` of LIME: the same masks and perturbed images for
        every sample, one ridge fit per image and sample."""
        batch, _, height, width = x.shape
        lime = LIME(self.posterior, n_samples=self.lime_samples, seed=self.seed)
        kept, valid, probs = lime.perturbed_outputs(x, segments, self.posterior,
                                                    generator)  # probs [B, n, S, C]
        n, samples = probs.shape[1], probs.shape[2]
        scores = probs.gather(3, targets[:, None, :, None].expand(-1, n, -1, 1))[..., 0]
        coefficients = lime.fit(kept, valid, scores)  # [B, S, K]
        flat = segments.flatten(1)[:, None, :].expand(-1, samples, -1)  # [B, S, H·W]
        return coefficients.gather(2, flat).view(batch, samples, height, width).abs()

    def explain(
        self,
        x: Tensor,
        *,
        labels: Tensor | None = None,
        segments: Tensor | None = None,
        generator: GeneratorArg = None,
    ) -> ExplanationDistribution:
        """The explanation distribution of each image of ``x [B, C, H, W]``."""
        x = check_images(x, "x").detach()
        targets = self.targets(x, labels)  # [B, S]
        if self.method == "lime":
            segments = check_segments(quickshift(x) if segments is None else segments, x)
            maps = self._lime_maps(x, targets, segments, generator)
        else:
            maps = self._gradient_maps(x, targets)
        maps = maps.detach()  # [B, S, H, W]
        mean, std, cv = explanation_statistics(maps, self.eps)
        return ExplanationDistribution(maps, targets, mean, std, cv)
