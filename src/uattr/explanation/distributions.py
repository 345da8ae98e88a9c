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
Everything is batched: one forward pass of the posterior gives all S scores, and the S
vector-Jacobian products run as one batched backward (``is_grads_batched``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..ops.checks import check_positive_ints
from ..ops.perturb import blurred_reference
from ..ops.rng import make_generators
from ..ops.segment import check_segments, quickshift
from ..ops.surrogate import lime_kernel, lime_masks, weighted_ridge
from ..uq import check_images

__all__ = [
    "EXPLAINERS",
    "TARGETS",
    "ExplanationDistribution",
    "ExplanationUncertainty",
    "explanation_statistics",
    "mean_cv",
    "per_output_gradients",
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


def per_output_gradients(outputs: Tensor, inputs: Tensor) -> Tensor:
    """The gradient of each column of ``outputs [N, S]`` (row n a function of input row n)
    with respect to ``inputs [N, ...]``: ``[S, N, ...]``, from one batched backward
    (S one-hot cotangents through ``is_grads_batched``)."""
    samples = outputs.shape[1]
    eye = torch.eye(samples, dtype=outputs.dtype, device=outputs.device)
    cotangents = eye[:, None, :].expand(samples, outputs.shape[0], samples)  # [S, N, S]
    (grads,) = torch.autograd.grad(outputs, inputs, grad_outputs=cotangents,
                                   is_grads_batched=True)
    return grads


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients where the input was positive."""

    generate_vmap_rule = True  # so that batched cotangents (vmap) go through it

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad.clamp_min(0) * (x > 0)


class _Guided:
    """Inside it, every ``nn.ReLU`` of ``module`` backpropagates like Guided Backprop."""

    def __init__(self, module: nn.Module) -> None:
        self.relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
        if not self.relus:
            raise ValueError("Guided Backprop needs nn.ReLU modules in the posterior's "
                             "networks (F.relu calls cannot be guided)")

    def __enter__(self) -> _Guided:
        self.hooks = [relu.register_forward_hook(
            lambda _m, inputs, _out: _GuidedReLU.apply(inputs[0])) for relu in self.relus]
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self.hooks:
            hook.remove()


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

    def _scores(self, x: Tensor, targets: Tensor) -> Tensor:
        """``f_s(x) = P[b, s, t_bs]`` ``[B, S]``; ``x`` may hold ``k`` copies of the batch
        (``[k·B, ...]``, copy-major), each scored against the same targets."""
        probs = self.posterior(x)  # [k·B, S, C]
        repeat = x.shape[0] // targets.shape[0]
        return probs.gather(2, targets.repeat(repeat, 1)[..., None])[..., 0]  # [k·B, S]

    def _per_sample_gradients(self, x: Tensor, targets: Tensor) -> Tensor:
        """``∂f_s/∂x`` for every sample: ``[S, k·B, C, H, W]``."""
        x = x.detach().requires_grad_()
        return per_output_gradients(self._scores(x, targets), x)

    def _guided_backprop(self, x: Tensor, targets: Tensor) -> Tensor:
        with _Guided(self.posterior):
            grads = self._per_sample_gradients(x, targets)  # [S, B, C, H, W]
        return grads.transpose(0, 1)  # [B, S, C, H, W]

    def _integrated_gradients(self, x: Tensor, targets: Tensor) -> Tensor:
        # midpoint rule on the straight path from black: Σ_k ∇f(α_k x) · x / K
        alphas = (torch.arange(self.ig_steps, dtype=x.dtype, device=x.device) + 0.5) \
            / self.ig_steps
        path = (alphas.view(-1, 1, 1, 1, 1) * x).flatten(0, 1)  # [K·B, C, H, W]
        grads = self._per_sample_gradients(path, targets)  # [S, K·B, C, H, W]
        grads = grads.view(grads.shape[0], self.ig_steps, *x.shape).mean(1)  # [S, B, ...]
        return (grads * x).transpose(0, 1)  # [B, S, C, H, W]

    @torch.no_grad()
    def _lime(self, x: Tensor, targets: Tensor, segments: Tensor,
              generator: torch.Generator | Sequence[torch.Generator] | None) -> Tensor:
        batch, _, height, width = x.shape
        n = self.lime_samples
        generators = make_generators(generator, self.seed, batch, x.device)
        kept, valid = lime_masks(segments, n, generators, x.dtype)  # [B, n, K], [B, K]
        painted = kept.gather(2, segments.flatten(1)[:, None, :].expand(-1, n, -1))
        painted = painted.view(batch, n, 1, height, width)  # [B, n, 1, H, W]
        blurred = blurred_reference(x)
        scores = []
        step = max(1, 2000 // batch)
        for i in range(0, n, step):
            chunk = torch.where(painted[:, i : i + step] > 0, x[:, None],
                                blurred[:, None])  # [B, m, C, H, W]
            m = chunk.shape[1]
            probs = self.posterior(chunk.flatten(0, 1)).view(batch, m, *targets.shape[1:], -1)
            scores.append(probs.gather(3, targets[:, None, :, None].expand(-1, m, -1, 1))
                          [..., 0])  # [B, m, S]
        scores = torch.cat(scores, 1)  # [B, n, S]
        samples = scores.shape[2]
        weights = lime_kernel(kept, valid)  # [B, n]
        # one ridge per (image, sample): the samples share the design, so fold them into B
        design = kept.repeat_interleave(samples, 0).double()  # [B·S, n, K]
        coefficients = weighted_ridge(
            design, scores.permute(0, 2, 1).flatten(0, 1).double(),
            weights.repeat_interleave(samples, 0).double(), 1.0,
            valid.repeat_interleave(samples, 0).double()).to(x.dtype)  # [B·S, K]
        flat = segments.flatten(1).repeat_interleave(samples, 0)  # [B·S, H·W]
        return coefficients.gather(1, flat).view(batch, samples, 1, height, width)

    def explain(
        self,
        x: Tensor,
        *,
        labels: Tensor | None = None,
        segments: Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> ExplanationDistribution:
        """The explanation distribution of each image of ``x [B, C, H, W]``."""
        x = check_images(x, "x").detach()
        targets = self.targets(x, labels)  # [B, S]
        if self.method == "guided backprop":
            raw = self._guided_backprop(x, targets)
        elif self.method == "integrated gradients":
            raw = self._integrated_gradients(x, targets)
        else:
            segments = check_segments(quickshift(x) if segments is None else segments, x)
            raw = self._lime(x, targets, segments, generator)
        maps = raw.abs().mean(2).detach()  # [B, S, H, W]
        mean, std, cv = explanation_statistics(maps, self.eps)
        return ExplanationDistribution(maps, targets, mean, std, cv)
