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

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops.checks import check_positive, check_positive_ints
from ..ops.chunks import images_per_pass
from ..ops.perturb import gaussian_blur
from ..ops.rng import GeneratorArg, draw_uniform, make_generators
from ..ops.segment import (
    check_segments,
    pixels,
    segment_means,
    segment_slots,
    segment_sums,
)
from ..uq import PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution
from .gradient import input_gradients

__all__ = ["INITS", "STOPS", "UNINFORMATIVE_BELOW", "OptimizationResult", "OptimizationTrace",
           "OptimizationUA", "UninformativeMapWarning", "first_order_blur_effect",
           "gumbel_sigmoid", "logistic_noise"]

_EPS = 1e-6
_CHECK_CHUNK = 256  # images of 28×28 per forward pass when estimating the expected loss
#: below this share of U(x) removed by the found region, a map is reported as saying
#: nothing about the cause of the uncertainty (:meth:`OptimizationResult.uninformative`)
UNINFORMATIVE_BELOW = 0.05
#: the stopping rules: ``loss`` (the expected loss stopped falling), ``mask`` (the binary
#: mask stopped changing) and ``movement`` (the mask's probabilities stopped moving), see
#: :class:`OptimizationUA`
STOPS = ("loss", "mask", "movement")
#: where the mask starts: ``zeros`` (p = 0.5 everywhere, the paper's) and ``first-order``
#: (each segment's first-order blur effect, :func:`first_order_blur_effect`); an explainer
#: given as ``init`` (an :class:`~uattr.attribution.AmortizedUA`) starts it from its map
INITS = ("zeros", "first-order")


class UninformativeMapWarning(UserWarning):
    """Some maps of an :class:`OptimizationUA` call say nothing about the cause of the
    uncertainty: blurring the region found removes less than
    :data:`UNINFORMATIVE_BELOW` of U(x). Silence it with ``warnings.filterwarnings("ignore",
    category=UninformativeMapWarning)`` where the diagnostics are read instead."""


def logistic_noise(uniform: Tensor) -> Tensor:
    """``Logistic(0, 1)`` samples from uniform ones: ``log u - log(1 - u)``."""
    u = uniform.clamp(_EPS, 1 - _EPS)
    return torch.log(u) - torch.log1p(-u)


def first_order_blur_effect(uncertainty_of: Callable[[Tensor], Tensor], x: Tensor,
                            sigma: float) -> Tensor:
    """``[B, H, W]``: how much blurring each pixel alone lowers U, to first order,

        e = ∂U/∂x · (x - blur(x, σ))    summed over channels

    (``U(x') ≈ U(x) - Σ_pixels e`` for ``x'`` = x with the pixels of a region blurred), from
    one forward and one backward pass of the whole batch. Summed over a segment it is the
    segment's first-order effect, which :class:`OptimizationUA` can start from."""
    grad = input_gradients(uncertainty_of, x, _CHECK_CHUNK)  # [B, C, H, W]
    with torch.no_grad():
        return (grad * (x - gaussian_blur(x, sigma))).sum(1)


def gumbel_sigmoid(logits: Tensor, noise: Tensor, tau: float) -> Tensor:
    """Relaxed Bernoulli sample ``σ((v + t) / τ)`` of ``Ber(σ(v))`` with logistic noise ``t``.

    As ``τ -> 0`` the sample is ``1[v + t > 0]``, which is 1 with probability ``σ(v)``.
    (papers/000 eq. 4 writes the logit as ``log((1-p)/p)``: a sign slip, DESIGN §3.1.)
    """
    return torch.sigmoid((logits + noise) / tau)


@dataclass
class OptimizationTrace:
    """The optimisation of each image over steps, recorded at every check.

    ``steps [T]`` the step of each record (0 = before the first step); per record and
    image: ``loss [T, B]`` and ``uncertainty [T, B]``, Monte-Carlo estimates of the
    expected loss and of the expected ``U(x')`` under the relaxed mask (the stopping
    rule's ``check_draws`` fixed draws); ``hard_uncertainty [T, B]`` = ``U(x')`` with
    the binary mask ``p > 0.5``; ``sigma [T, B]`` the blur width in pixels;
    ``probs [T, B, K]`` the probabilities. A stopped image keeps its last values.
    """

    steps: Tensor
    loss: Tensor
    uncertainty: Tensor
    hard_uncertainty: Tensor
    sigma: Tensor
    probs: Tensor


@dataclass
class OptimizationResult:
    """Maps and per-image diagnostics of one :meth:`OptimizationUA.attribute` call.

    ``maps [B, H, W]`` (p painted on segments), ``probs [B, K]`` (p per segment, 0 past
    K_b), ``steps [B]`` Adam steps taken, ``converged [B]`` whether the stopping rule
    ended the image (``False``: it ran to ``max_steps``), ``sigma [B]`` final blur width
    in pixels, ``u_before [B]`` = U(x), ``u_after [B]`` = U(x') with the binary mask
    ``p > 0.5``, and ``trace`` (:class:`OptimizationTrace`) when it was asked for.
    """

    maps: Tensor
    probs: Tensor
    steps: Tensor
    converged: Tensor
    sigma: Tensor
    u_before: Tensor
    u_after: Tensor
    trace: OptimizationTrace | None = None

    @property
    def removed(self) -> Tensor:
        """``[B]``: the share of U(x) that blurring the found region removes,
        ``1 - u_after / u_before`` (0 where U(x) = 0).

        Near 0, the blur could not move the uncertainty (a saturated posterior, or an
        image whose cause a blur cannot take away, such as an erased stroke): then only
        the sparsity term moved the mask, the map is close to uniform, and it says
        nothing about where the uncertainty comes from."""
        before = self.u_before.clamp_min(torch.finfo(self.u_before.dtype).tiny)
        return torch.where(self.u_before > 0, 1 - self.u_after / before,
                           torch.zeros_like(self.u_before))

    def uninformative(self, below: float = UNINFORMATIVE_BELOW) -> Tensor:
        """``[B]`` bool: images whose found region removes less than ``below`` of U(x)."""
        return self.removed < below


class OptimizationUA(UncertaintyAttribution):
    """Learn a binary mask over segments whose blurring removes the uncertainty.

    Args:
        posterior: see :class:`~uattr.attribution.base.UncertaintyAttribution`.
        uncertainty: ``total | aleatoric | epistemic`` or a callable.
        lam: sparsity weight λ (paper: 3; chosen here on MNIST's validation split).
        tau: Gumbel-sigmoid temperature τ (paper: 0.1).
        lr: Adam learning rate (paper: 0.01).
        max_steps: at most this many Adam steps (paper: 500).
        check_every, check_draws, tol, patience: the stopping rule (below). The defaults
            (every 20 steps, 20 draws, a fall under 0.1% twice in a row) were chosen with
            lr and σ0 on MNIST's validation split by detection IoU and ADA, on slic
            segments and on oracle segments (docs/hyperparameters.md).
        stop: which stopping rule (below): ``"loss"`` (the expected loss stopped falling),
            ``"mask"`` (the binary mask stopped changing) or ``"movement"`` (the mask's
            probabilities stopped moving).
        mask_every, mask_patience, mask_tol: the mask rule (below): checked every
            ``mask_every`` steps, it ends an image after ``mask_patience`` checks in a row
            at which at most a share ``mask_tol`` of its segments flipped (0: none). The
            defaults (every 20 steps, 4 checks, no flip) keep the most IoU among the rules
            that stop MNIST's validation images within 150 steps on average
            (docs/hyperparameters.md), yet lose 0.04 IoU to the loss rule there.
        move_tol, move_patience: the movement rule (below): checked every ``mask_every``
            steps, it ends an image after ``move_patience`` checks in a row at which its
            probabilities moved by less than ``move_tol`` on average over its segments.
            The defaults (0.01, once) were chosen on MNIST's validation split
            (docs/hyperparameters.md).
        early_stop: apply the stopping rule; off, every image runs ``max_steps`` steps.
        init: where the mask starts: ``"zeros"`` (``v = 0``, p = 0.5 everywhere, the
            paper's), ``"first-order"`` (a warm start from each segment's first-order
            blur effect, below), or an explainer whose maps are probabilities in [0, 1]
            (an :class:`~uattr.attribution.AmortizedUA`: a warm start from its map, below).
        init_scale: with a warm start, the largest starting logit ``|v|``.
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

    **Stopping rule.** Every ``check_every`` steps each image's expected loss is estimated
    with ``D = check_draws`` logistic draws ``t_bd`` that are drawn once, when the image
    starts, and reused at every check (common random numbers)::

        L̂_b = (1/D) Σ_d [ U(x'_b(t_bd)) + λ · mean_k w_bk(t_bd) ]

    so that the change between two checks measures the optimisation, not the draws
    (with fresh draws at each check, as papers/001 A.2 has it, the estimates' own noise
    exceeds the loss's real fall within a few checks and ends most images long before
    the mask has converged). An image stops once its loss rose or fell by less than a
    share ``tol`` of itself, ``(L̂_prev - L̂) / L̂_prev < tol``, at ``patience`` checks
    in a row, or at ``max_steps``. Without the Gumbel-sigmoid there are no draws and
    ``L̂`` is the loss itself; the rule is the same for every ablation variant.

    With ``stop="mask"`` the check is every ``mask_every`` steps, draws nothing and runs no
    forward pass: an image stops once its binary mask ``1[p_bk > 0.5]`` changed on at most
    a share ``mask_tol`` of its segments since the previous check, at ``mask_patience``
    checks in a row. With ``stop="movement"`` the check is the same (every ``mask_every``
    steps, no draw, no pass): an image stops once the mean movement of its probabilities
    since the previous check, ``(1/K_b) Σ_k |p_bk - p'_bk|``, is below ``move_tol`` at
    ``move_patience`` checks in a row. Adam moves a logit by at most about ``lr`` per
    step, so over ``mask_every`` steps a probability moves by at most about
    ``lr · mask_every / 4``, 0.05 with the defaults: the rule fires once most
    probabilities have left the steep middle of the sigmoid for its flat ends, that is
    once the mask has decided.

    The draws of the checks come from a stream of their own (seeded from the image's
    generator), so an image's path through the optimisation does not depend on when or
    how often it is checked: the stopping rule only chooses where along it to stop.

    **Warm start.** ``init="first-order"`` starts each segment's logit from its
    first-order effect ``e_bk`` (:func:`first_order_blur_effect` with the starting blur
    σ0, summed over the segment) weighed against its share of the sparsity term::

        v_bk = init_scale · clamp((e_bk - c_b) / c_b, -1, 1),     c_b = λ / K_b

    so that a segment whose blurring lowers U by twice what it costs in the loss starts
    at ``+init_scale``, one that lowers it by nothing at ``-init_scale``. This costs one
    forward and one backward pass per image.

    An explainer as ``init`` starts each segment from its map's mean over the segment,
    ``q_bk`` in [0, 1] (for the amortised explainer, its guess of this method's answer)::

        v_bk = init_scale · (2 q_bk - 1)

    so that a segment it is sure of starts at ``±init_scale`` and one it cannot tell at
    p = 0.5, as the cold start. This costs the explainer's own passes (one of its network
    for :class:`~uattr.attribution.AmortizedUA`, none of the posterior).
    """

    name = "optimization"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 lam: float = 3.0, tau: float = 0.1, lr: float = 0.01, max_steps: int = 500,
                 check_every: int = 20, check_draws: int = 20, tol: float = 1e-3, patience: int = 2,
                 stop: str = "loss", mask_every: int = 20, mask_patience: int = 4,
                 mask_tol: float = 0.0, move_tol: float = 0.01, move_patience: int = 1,
                 early_stop: bool = True,
                 init: str | UncertaintyAttribution = "zeros", init_scale: float = 1.0,
                 sigma_init: float = 0.05,
                 learn_blur: bool = True, gumbel: bool = True, seed: int = 0,
                 progress: bool = False) -> None:
        super().__init__(posterior, uncertainty)
        check_positive(lam=lam, tol=tol, mask_tol=mask_tol, allow_zero=True)
        check_positive(tau=tau, lr=lr, sigma_init=sigma_init, init_scale=init_scale,
                       move_tol=move_tol)
        check_positive_ints(max_steps=max_steps, check_every=check_every,
                            check_draws=check_draws, patience=patience, mask_every=mask_every,
                            mask_patience=mask_patience, move_patience=move_patience)
        if stop not in STOPS:
            raise ValueError(f"stop must be one of {STOPS}, got {stop!r}")
        if isinstance(init, str) and init not in INITS:
            raise ValueError(f"init must be one of {INITS} or an explainer, got {init!r}")
        if not isinstance(init, str | UncertaintyAttribution):
            raise ValueError(f"init must be one of {INITS} or an explainer (an "
                             f"UncertaintyAttribution), got {type(init).__name__}")
        if mask_tol >= 1:
            raise ValueError(f"mask_tol must be a share of the segments below 1, got {mask_tol}")
        self.lam, self.tau, self.lr = lam, tau, lr
        self.max_steps, self.check_every, self.check_draws, self.tol = (
            max_steps, check_every, check_draws, tol)
        self.patience, self.early_stop = patience, early_stop
        self.stop, self.mask_every, self.mask_patience, self.mask_tol = (
            stop, mask_every, mask_patience, mask_tol)
        self.move_tol, self.move_patience = move_tol, move_patience
        self.init, self.init_scale = init, init_scale
        self.sigma_init, self.learn_blur, self.gumbel = sigma_init, learn_blur, gumbel
        self.seed, self.progress = seed, progress

    # ------------------------------------------------------------------ public verb
    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """Uncertainty maps ``[B, H, W]``: each segment's learned probability ``p_bk``.

        ``generator``: ``None`` (seeded with ``seed``), a generator, or one generator per
        image (then an image's map does not depend on the rest of the batch).
        """
        return self.attribute_with_diagnostics(x, segments=segments, generator=generator).maps

    def attribute_with_diagnostics(self, x: Tensor, *, segments: Tensor | None = None,
                                   generator: GeneratorArg = None,
                                   trace: bool = False) -> OptimizationResult:
        """Like :meth:`attribute`, plus steps taken, convergence, final σ and U before and
        after blurring the found region per image; ``trace=True`` also records the
        optimisation at every check (:class:`OptimizationTrace`)."""
        x = self._check(x).detach()
        batch, _, height, width = x.shape
        segments = check_segments(pixels(x) if segments is None else segments, x)  # [B, H, W]
        counts, valid = segment_slots(segments)  # [B], [B, K]
        k_max = valid.shape[1]
        flat_segments = segments.flatten(1)  # [B, H·W]
        generators = make_generators(generator, self.seed, batch, x.device)
        check_generators = _spawn(generators, x.device)
        sigma0 = self.sigma_init * min(height, width)
        check_chunk = images_per_pass(_CHECK_CHUNK, height, width)

        logits = torch.zeros(batch, k_max, device=x.device)  # v
        if self.init == "first-order":
            logits = self._first_order_logits(x, segments, counts, valid, sigma0)
        elif isinstance(self.init, UncertaintyAttribution):
            logits = self._explainer_logits(x, segments, valid)
        logits.requires_grad_()
        log_scale = torch.zeros(batch, device=x.device, requires_grad=self.learn_blur)  # φ
        params = [logits, log_scale] if self.learn_blur else [logits]
        optimizer = torch.optim.Adam(params, lr=self.lr)

        # a blur of fixed width is the same at every step: blurred once
        fixed_blur = None if self.learn_blur else gaussian_blur(x, sigma0)  # [B, C, H, W]

        def perturbed(idx: Tensor | slice, weights: Tensor) -> Tensor:
            """``x'`` ``[n, C, H, W]`` of images ``idx`` under segment weights ``[n, K]``."""
            mask = weights.gather(1, flat_segments[idx]).view(-1, 1, height, width)  # [n,1,H,W]
            images = x[idx]  # [n, C, H, W]
            if fixed_blur is None:
                blurred = gaussian_blur(images, sigma0 * log_scale[idx].exp())  # σ [n]
            else:
                blurred = fixed_blur[idx]
            return (1 - mask) * images + mask * blurred

        def loss_parts(idx: Tensor | slice, weights: Tensor) -> tuple[Tensor, Tensor]:
            """``(U(x') [n], λ · mean_k w [n])`` of images ``idx`` under weights ``[n, K]``."""
            sparsity = (weights * valid[idx]).sum(1) / counts[idx]  # [n]
            return self.uncertainty_of(perturbed(idx, weights)), self.lam * sparsity

        def sample_weights(idx: Tensor | slice, uniform: Tensor) -> Tensor:
            if not self.gumbel:
                return torch.sigmoid(logits[idx])
            return gumbel_sigmoid(logits[idx], logistic_noise(uniform), self.tau)

        # the checks' draws, once per image for every check (common random numbers)
        draws = self.check_draws if self.gumbel else 1
        check_uniform = draw_uniform(check_generators, (batch, draws, k_max), x.device,
                                     lengths=counts)  # [B, D, K]

        @torch.no_grad()
        def expected_parts(idx: Tensor) -> tuple[Tensor, Tensor]:
            """Monte-Carlo estimates ``([n], [n])`` of each image's expected U(x') and
            sparsity term, with the image's fixed check draws."""
            uniform = check_uniform[idx]  # [n, D, K]
            repeated = idx.repeat_interleave(draws)  # [n·D]: image b, D times in a row
            weights = sample_weights(repeated, uniform.reshape(-1, k_max))  # [n·D, K]
            parts = [loss_parts(repeated[i : i + check_chunk], weights[i : i + check_chunk])
                     for i in range(0, len(repeated), check_chunk)]  # chunks bound memory
            u = torch.cat([u for u, _ in parts]).view(-1, draws).mean(1)
            sparsity = torch.cat([r for _, r in parts]).view(-1, draws).mean(1)
            return u, sparsity

        @torch.no_grad()
        def hard_uncertainty() -> Tensor:
            """``U(x') [B]`` with the binary mask ``p > 0.5`` of every image."""
            binary = (torch.sigmoid(logits) > 0.5).float() * valid
            return self.uncertainty_of(perturbed(all_images, binary))

        all_images = torch.arange(batch, device=x.device)
        records: list[dict[str, Tensor]] = []

        def record(step: int, u: Tensor, sparsity: Tensor) -> None:
            with torch.no_grad():
                records.append({
                    "step": torch.tensor(step), "loss": (u + sparsity).cpu(),
                    "uncertainty": u.cpu(), "hard_uncertainty": hard_uncertainty().cpu(),
                    "sigma": (sigma0 * log_scale.exp()).cpu(),
                    "probs": (torch.sigmoid(logits) * valid).cpu()})

        active = torch.ones(batch, dtype=torch.bool, device=x.device)
        steps = torch.zeros(batch, dtype=torch.long, device=x.device)
        last_check = torch.zeros(batch, device=x.device)
        quiet = torch.zeros(batch, dtype=torch.long, device=x.device)  # checks in a row
        by_loss = self.early_stop and self.stop == "loss"
        by_mask = self.early_stop and self.stop == "mask"
        by_movement = self.early_stop and self.stop == "movement"
        last_binary = (logits.detach() > 0) & valid  # [B, K]
        last_probs = torch.sigmoid(logits.detach()) * valid  # [B, K]
        if by_loss or trace:
            u, sparsity = expected_parts(all_images)
            last_check = u + sparsity  # [B]
            if trace:
                record(0, u, sparsity)
        bar = tqdm(total=self.max_steps, desc=f"{self.name} ({batch} images)",
                   disable=not self.progress, leave=False)
        for step in range(1, self.max_steps + 1):
            all_active = bool(active.all())
            idx = active.nonzero().squeeze(1)
            # While every image runs, a slice selects them: views, where an index tensor
            # would copy every input of the step and scatter every gradient back.
            running = slice(None) if all_active else idx
            # Draws for every image, stopped or not, so each image's stream does not depend
            # on when the others stop.
            uniform = draw_uniform(generators, (batch, k_max), x.device, lengths=counts)
            u, sparsity = loss_parts(running, sample_weights(running, uniform[running]))
            loss = (u + sparsity).sum()
            # a stopped image's values, which Adam's momentum would still move
            frozen = ~active
            before = None if all_active else [p.detach()[frozen] for p in params]
            # Gradients for v and φ only: the posterior's weights get none (no side effect
            # on the user's model, and a third less work than loss.backward()).
            grads = torch.autograd.grad(loss, params, allow_unused=True)  # None: unused
            for param, grad in zip(params, grads, strict=True):
                param.grad = torch.zeros_like(param) if grad is None else grad
            optimizer.step()
            if before is not None:
                with torch.no_grad():
                    for param, old in zip(params, before, strict=True):
                        param[frozen] = old
            steps[idx] += 1
            bar.update()
            ended = None  # [n]: which of the active images a check ends, if one ran
            if step % self.check_every == 0 and (by_loss or trace):
                checked = all_images if trace else idx
                u, sparsity = expected_parts(checked)
                if trace:
                    record(step, u, sparsity)
                if by_loss:  # the loss rule: the expected loss stopped falling
                    current = (u + sparsity)[idx] if trace else u + sparsity
                    previous = last_check[idx]
                    fall = (previous - current) / previous.abs().clamp_min(_EPS)
                    quiet[idx] = torch.where(fall < self.tol, quiet[idx] + 1, 0)
                    last_check[idx] = current
                    ended = quiet[idx] >= self.patience
            if (by_mask or by_movement) and step % self.mask_every == 0:
                if by_mask:  # the binary mask stopped changing
                    binary = (logits.detach()[idx] > 0) & valid[idx]  # [n, K]
                    settled = (binary != last_binary[idx]).sum(1) / counts[idx] <= self.mask_tol
                    last_binary[idx] = binary
                else:  # the probabilities stopped moving
                    probs = torch.sigmoid(logits.detach()[idx]) * valid[idx]  # [n, K]
                    settled = (probs - last_probs[idx]).abs().sum(1) / counts[idx] < self.move_tol
                    last_probs[idx] = probs
                quiet[idx] = torch.where(settled, quiet[idx] + 1, 0)
                ended = quiet[idx] >= (self.mask_patience if by_mask else self.move_patience)
            if ended is not None:
                active[idx[ended]] = False
                bar.set_postfix(active=int(active.sum()))
                if not active.any():
                    break
        bar.close()
        converged = ~active

        with torch.no_grad():
            probs = torch.sigmoid(logits) * valid  # [B, K]
            maps = probs.gather(1, flat_segments).view(batch, height, width)
            sigma = sigma0 * log_scale.exp()
            u_before = self.uncertainty_of(x)
            u_after = hard_uncertainty()
        history = None
        if trace:
            history = OptimizationTrace(**{
                name: torch.stack([r[key] for r in records])
                for name, key in (("steps", "step"), ("loss", "loss"),
                                  ("uncertainty", "uncertainty"),
                                  ("hard_uncertainty", "hard_uncertainty"),
                                  ("sigma", "sigma"), ("probs", "probs"))})
        result = OptimizationResult(maps=maps, probs=probs, steps=steps, converged=converged,
                                    sigma=sigma, u_before=u_before, u_after=u_after,
                                    trace=history)
        _warn_uninformative(result)
        return result


    def key_settings(self) -> dict[str, Any]:
        """:meth:`settings` without those of a stopping rule or start not in use (results
        stored before the mask rule and the warm start existed keep their keys)."""
        unused = set()
        mask_rule, movement_rule = {"mask_patience", "mask_tol"}, {"move_tol", "move_patience"}
        if self.stop == "loss":
            unused |= {"stop", "mask_every", *mask_rule, *movement_rule}
        elif self.stop == "mask":
            unused |= movement_rule
        else:  # movement: checked every mask_every steps, as the mask rule
            unused |= mask_rule
        if self.init == "zeros":
            unused |= {"init", "init_scale"}
        return {k: v for k, v in self.settings().items() if k not in unused}

    def _first_order_logits(self, x: Tensor, segments: Tensor, counts: Tensor,
                            valid: Tensor, sigma0: float) -> Tensor:
        """The warm start ``v [B, K]`` (class docstring): each segment's first-order blur
        effect against its share ``λ / K_b`` of the sparsity term."""
        effect = first_order_blur_effect(self.uncertainty_of, x, sigma0)  # [B, H, W]
        per_segment = segment_sums(effect, segments)  # [B, K]
        cost = (self.lam / counts).unsqueeze(1).clamp_min(_EPS)  # [B, 1]; λ = 0: no cost
        scaled = ((per_segment - cost) / cost).clamp(-1, 1) * self.init_scale
        return scaled * valid

    def _explainer_logits(self, x: Tensor, segments: Tensor, valid: Tensor) -> Tensor:
        """The warm start ``v [B, K]`` from the explainer ``init``'s maps (class
        docstring): ``init_scale · (2 q_bk - 1)``, ``q_bk`` the map's mean over segment k."""
        start = self.init.attribute(x)  # [B, H, W]
        if start.shape != segments.shape or not torch.isfinite(start).all() \
                or start.min() < 0 or start.max() > 1:
            raise ValueError(f"init: {type(self.init).__name__}'s maps must be probabilities "
                             f"in [0, 1] of shape {list(segments.shape)}, got values in "
                             f"[{float(start.min()):.3g}, {float(start.max()):.3g}] of shape "
                             f"{list(start.shape)}")
        mean = segment_means(start.detach(), segments)  # [B, K]
        return self.init_scale * (2 * mean - 1) * valid


def _warn_uninformative(result: OptimizationResult) -> None:
    """One :class:`UninformativeMapWarning` naming the images (batch indices) whose found
    region removes less than :data:`UNINFORMATIVE_BELOW` of their uncertainty."""
    flagged = result.uninformative().nonzero().flatten().tolist()
    if not flagged:
        return
    shown = ", ".join(str(b) for b in flagged[:10]) + (", ..." if len(flagged) > 10 else "")
    warnings.warn(UninformativeMapWarning(
        f"OptimizationUA: for {len(flagged)} of {len(result.maps)} images (batch index "
        f"{shown}) blurring the region found removes less than "
        f"{100 * UNINFORMATIVE_BELOW:.0f}% of U(x): the blur cannot move their uncertainty "
        "(or the segments do not separate its cause), so those maps are shaped by the "
        "sparsity term alone and say nothing about where it comes from. "
        "attribute_with_diagnostics(...).uninformative() flags them; try other segments "
        "or pixels (segments=None)"), stacklevel=3)


def _spawn(
    generators: torch.Generator | list[torch.Generator], device: torch.device
) -> torch.Generator | list[torch.Generator]:
    """A second stream per generator, seeded by one draw from it (for the checks)."""
    def child(g: torch.Generator) -> torch.Generator:
        seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
        return torch.Generator(device=device).manual_seed(seed)

    if isinstance(generators, torch.Generator):
        return child(generators)
    return [child(g) for g in generators]
