"""Optimization-based uncertainty attribution (papers/000 §3, papers/001 A.2, DESIGN §3.1).

For each image b with K_b segments, learn Bernoulli probabilities ``p_bk = σ(v_bk)``
and a blur width ``σ_b``; at every Adam step draw ``t_bk ~ Logistic(0, 1)`` and form

    w_bk  = σ((v_bk + t_bk) / τ)                        Gumbel-sigmoid sample of Ber(p_bk)
    M_b   = Σ_k w_bk · 1[segment_b = k]                 [H, W], in [0, 1] (a partition)
    x'_b  = (1 - M_b) ⊙ x_b + M_b ⊙ blur(x_b, σ_b)
    loss  = Σ_b  U(x'_b) + λ · mean_k w_bk              (mean: λ does not depend on K)

and return ``p_bk`` painted onto its segment. All images of a batch are optimised
together; each stops on its own (see :class:`OptimizationUA`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..perturb import gaussian_blur
from ..segment import check_segments, pixels, segment_slots
from ..uq import Posterior, UncertaintySpec
from .base import (
    UncertaintyAttribution,
    check_positive,
    check_positive_ints,
    draw_uniform,
    make_generators,
)

__all__ = ["OptimizationResult", "OptimizationUA", "gumbel_sigmoid", "logistic_noise"]

_EPS = 1e-6
_CHECK_CHUNK = 256  # images per forward pass when estimating the expected loss


def logistic_noise(uniform: Tensor) -> Tensor:
    """``Logistic(0, 1)`` samples from uniform ones: ``log u - log(1 - u)``."""
    u = uniform.clamp(_EPS, 1 - _EPS)
    return torch.log(u) - torch.log1p(-u)


def gumbel_sigmoid(logits: Tensor, noise: Tensor, tau: float) -> Tensor:
    """Relaxed Bernoulli sample ``σ((v + t) / τ)`` of ``Ber(σ(v))`` with logistic noise ``t``.

    As ``τ -> 0`` the sample is ``1[v + t > 0]``, which is 1 with probability ``σ(v)``.
    (papers/000 eq. 4 writes the logit as ``log((1-p)/p)``: a sign slip, DESIGN §3.1.)
    """
    return torch.sigmoid((logits + noise) / tau)


@dataclass
class OptimizationResult:
    """Maps and per-image diagnostics of one :meth:`OptimizationUA.attribute` call.

    ``maps [B, H, W]`` (p painted on segments), ``probs [B, K]`` (p per segment, 0 past
    K_b), ``steps [B]`` Adam steps taken, ``sigma [B]`` final blur width in pixels,
    ``u_before [B]`` = U(x), ``u_after [B]`` = U(x') with the binary mask ``p > 0.5``.
    """

    maps: Tensor
    probs: Tensor
    steps: Tensor
    sigma: Tensor
    u_before: Tensor
    u_after: Tensor


class OptimizationUA(UncertaintyAttribution):
    """Learn a binary mask over segments whose blurring removes the uncertainty.

    Args:
        posterior: see :class:`~uattr.attribution.base.UncertaintyAttribution`.
        uncertainty: ``total | aleatoric | epistemic`` or a callable.
        lam: sparsity weight λ (paper: 3; chosen here on MNIST's validation split).
        tau: Gumbel-sigmoid temperature τ (paper: 0.1).
        lr: Adam learning rate (paper: 0.01).
        max_steps: at most this many Adam steps (paper: 500).
        check_every, check_draws, tol: every ``check_every`` steps the expected loss of
            each image is estimated with ``check_draws`` fresh logistic draws; an image
            stops when its loss rose or fell by less than ``tol`` since the last check.
        sigma_init: initial blur width as a fraction of the image side. The paper starts
            the width φ at 0, where a Gaussian blur is the identity and its gradient in
            the width vanishes, so nothing could be learned; here ``σ = σ0 · exp(φ)``
            with ``φ = 0`` at the start and ``σ0 = sigma_init · min(H, W)``.
        learn_blur: learn φ (the paper's *learnable perturbation*); off: ``σ = σ0`` fixed.
        gumbel: Gumbel-sigmoid samples; off: the plain relaxed mask ``M = σ(v)``
            (papers/000 Table 3's "Eq. (3)").
        seed: seed of the logistic draws when no generator is given.
        progress: show a progress bar over steps.

    ``attribute(x, segments=None)``: ``segments=None`` is pixel mode (one segment per
    pixel); otherwise a label map ``[B, H, W]`` or ``[H, W]``.
    """

    name = "optimization"

    def __init__(
        self,
        posterior: Posterior | Sequence[nn.Module] | Callable[[Tensor], Tensor],
        uncertainty: UncertaintySpec = "total",
        *,
        lam: float = 3.0,
        tau: float = 0.1,
        lr: float = 0.01,
        max_steps: int = 500,
        check_every: int = 20,
        check_draws: int = 20,
        tol: float = 1e-3,
        sigma_init: float = 0.05,
        learn_blur: bool = True,
        gumbel: bool = True,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__(posterior, uncertainty)
        check_positive(lam=lam, tol=tol, allow_zero=True)
        check_positive(tau=tau, lr=lr, sigma_init=sigma_init)
        check_positive_ints(max_steps=max_steps, check_every=check_every,
                            check_draws=check_draws)
        self.lam, self.tau, self.lr = lam, tau, lr
        self.max_steps, self.check_every, self.check_draws, self.tol = (
            max_steps, check_every, check_draws, tol)
        self.sigma_init, self.learn_blur, self.gumbel = sigma_init, learn_blur, gumbel
        self.seed, self.progress = seed, progress

    # ------------------------------------------------------------------ public verb
    def attribute(
        self,
        x: Tensor,
        *,
        segments: Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> Tensor:
        """Uncertainty maps ``[B, H, W]``: each segment's learned probability ``p_bk``.

        ``generator``: ``None`` (seeded with ``seed``), a generator, or one generator per
        image (then an image's map does not depend on the rest of the batch).
        """
        return self.attribute_with_diagnostics(x, segments=segments, generator=generator).maps

    def attribute_with_diagnostics(
        self,
        x: Tensor,
        *,
        segments: Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> OptimizationResult:
        """Like :meth:`attribute`, plus steps taken, final σ and U before/after per image."""
        x = self._check(x).detach()
        batch, _, height, width = x.shape
        segments = check_segments(pixels(x) if segments is None else segments, x)  # [B, H, W]
        counts, valid = segment_slots(segments)  # [B], [B, K]
        k_max = valid.shape[1]
        flat_segments = segments.flatten(1)  # [B, H·W]
        generators = make_generators(generator, self.seed, batch, x.device)
        sigma0 = self.sigma_init * min(height, width)

        logits = torch.zeros(batch, k_max, device=x.device, requires_grad=True)  # v
        log_scale = torch.zeros(batch, device=x.device, requires_grad=self.learn_blur)  # φ
        params = [logits, log_scale] if self.learn_blur else [logits]
        optimizer = torch.optim.Adam(params, lr=self.lr)

        def loss_of(idx: Tensor, weights: Tensor) -> Tensor:
            """Per-image loss ``[n]`` of images ``idx`` under segment weights ``[n, K]``."""
            mask = weights.gather(1, flat_segments[idx]).view(-1, 1, height, width)  # [n,1,H,W]
            sigma = sigma0 * log_scale[idx].exp()  # [n]
            blurred = gaussian_blur(x[idx], sigma)
            perturbed = (1 - mask) * x[idx] + mask * blurred
            sparsity = (weights * valid[idx]).sum(1) / counts[idx]  # [n]
            return self.uncertainty_of(perturbed) + self.lam * sparsity

        def sample_weights(idx: Tensor, uniform: Tensor) -> Tensor:
            if not self.gumbel:
                return torch.sigmoid(logits[idx])
            return gumbel_sigmoid(logits[idx], logistic_noise(uniform), self.tau)

        @torch.no_grad()
        def expected_loss(idx: Tensor) -> Tensor:
            """Monte-Carlo estimate ``[n]`` of each image's loss with fresh draws."""
            draws = self.check_draws if self.gumbel else 1
            uniform = draw_uniform(generators, (batch, draws, k_max), x.device,
                                   lengths=counts)[idx]  # [n, D, K]
            repeated = idx.repeat_interleave(draws)  # [n·D]: image b, D times in a row
            weights = sample_weights(repeated, uniform.reshape(-1, k_max))  # [n·D, K]
            losses = torch.cat([  # chunks bound the memory of one forward pass
                loss_of(repeated[i : i + _CHECK_CHUNK], weights[i : i + _CHECK_CHUNK])
                for i in range(0, len(repeated), _CHECK_CHUNK)
            ])
            return losses.view(-1, draws).mean(1)  # [n]

        all_images = torch.arange(batch, device=x.device)
        active = torch.ones(batch, dtype=torch.bool, device=x.device)
        steps = torch.zeros(batch, dtype=torch.long, device=x.device)
        last_check = expected_loss(all_images)  # [B]
        bar = tqdm(total=self.max_steps, desc=f"{self.name} ({batch} images)",
                   disable=not self.progress, leave=False)
        for step in range(1, self.max_steps + 1):
            idx = active.nonzero().squeeze(1)
            # Draws for every image, stopped or not, so each image's stream does not depend
            # on when the others stop.
            uniform = draw_uniform(generators, (batch, k_max), x.device, lengths=counts)
            loss = loss_of(idx, sample_weights(idx, uniform[idx])).sum()
            before = [p.detach().clone() for p in params]
            # Gradients for v and φ only: the posterior's weights get none (no side effect
            # on the user's model, and a third less work than loss.backward()).
            grads = torch.autograd.grad(loss, params, allow_unused=True)  # None: unused
            for param, grad in zip(params, grads, strict=True):
                param.grad = torch.zeros_like(param) if grad is None else grad
            optimizer.step()
            with torch.no_grad():  # Adam's momentum would still move stopped images
                for param, old in zip(params, before, strict=True):
                    param[~active] = old[~active]
            steps[idx] += 1
            bar.update()
            if step % self.check_every == 0:
                current = expected_loss(idx)
                stop = (last_check[idx] - current) < self.tol  # rose, or fell by < tol
                last_check[idx] = current
                active[idx[stop]] = False
                bar.set_postfix(active=int(active.sum()))
                if not active.any():
                    break
        bar.close()

        with torch.no_grad():
            probs = torch.sigmoid(logits) * valid  # [B, K]
            maps = probs.gather(1, flat_segments).view(batch, height, width)
            sigma = sigma0 * log_scale.exp()
            hard = (probs > 0.5).float().gather(1, flat_segments).view(batch, 1, height, width)
            after = (1 - hard) * x + hard * gaussian_blur(x, sigma)
            u_before = self.uncertainty_of(x)
            u_after = self.uncertainty_of(after)
        return OptimizationResult(maps=maps, probs=probs, steps=steps, sigma=sigma,
                                  u_before=u_before, u_after=u_after)

    def __repr__(self) -> str:
        settings = ("lam", "tau", "lr", "max_steps", "check_every", "check_draws", "tol",
                    "sigma_init", "learn_blur", "gumbel", "seed")
        listed = ", ".join(f"{name}={getattr(self, name)!r}" for name in settings)
        return f"OptimizationUA(uncertainty={self.uncertainty!r}, {listed})"
