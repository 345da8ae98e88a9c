"""UA-Backprop (papers/002 §3, DESIGN §3.2): uncertainty attribution by backpropagation.

With logits ``z^s [B, C]`` and probabilities ``g^s = softmax(z^s)`` of the S samples:

    U_{g_i}      total -p̄_i log p̄_i;  aleatoric mean_s -g_i^s log g_i^s;  epistemic: difference
    c^s_{j→i}    = softmax_i((δ_ij - g_i^s) / τ1)         (∂g_j/∂z_i / g_j = δ_ij - g_i, eq. 8)
    U_{z_i^s}    = Σ_j c^s_{j→i} U_{g_j}                  [B, S, C]
    M_i^s(x)     = softmax_pixels(R_i^s / τ2)             [B, S, C, H, W], sums to 1
    R_i^s        = mean_ch |∂z_i^s/∂x ⊙ x| + Σ_l up(mean_ch |∂z_i^s/∂f_l ⊙ b_l|)   (FullGrad path)
                   or mean_ch |∂z_i^s/∂x|                                         (gradient path)
    M(x)         = (1/S) Σ_s Σ_i U_{z_i^s} M_i^s(x)       [B, H, W]

Completeness: Σ_pixels M(x) = Σ_i U_{g_i} = U(x), because every coefficient row and every
``M_i^s`` sums to 1. All S·C per-logit maps come from one batched backward pass
(``is_grads_batched``) over the whole batch of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops.checks import check_positive
from ..posteriors.passes import batched_cotangents
from ..uq import PosteriorLike, check_probs, class_decomposition
from .base import UncertaintyAttribution, require_gradient, require_layers
from .fullgrad import ConvOutputs, implicit_bias

__all__ = ["UABackprop", "class_uncertainties", "logit_uncertainties"]

Kind = Literal["total", "aleatoric", "epistemic"]
_DEFAULT_TAU2 = {"fullgrad": 1.5, "gradient": 0.06}


def class_uncertainties(probs: Tensor, kind: Kind) -> Tensor:
    """``U_{g_i}`` ``[B, C]`` of ``probs [B, S, C]`` (eq. 4), in float64; they sum over C
    to ``U``. The epistemic part is a difference of close numbers, hence float64
    (:func:`~uattr.uq.class_decomposition`)."""
    return class_decomposition(probs)[kind]


def logit_uncertainties(probs: Tensor, kind: Kind, tau1: float) -> Tensor:
    """``U_{z_i^s}`` ``[B, S, C]`` (eqs. 5, 8), in float64; they sum over C to ``U`` for
    every s."""
    probs = probs.double()
    classes = probs.shape[-1]
    eye = torch.eye(classes, dtype=probs.dtype, device=probs.device)
    # [B, S, j, i]: (δ_ij - g_i^s) / τ1, normalised over i for each source class j
    coefficients = ((eye - probs[:, :, None, :]) / tau1).softmax(-1)
    return torch.einsum("bsji,bj->bsi", coefficients, class_uncertainties(probs, kind))


class UABackprop(UncertaintyAttribution):
    """UA-Backprop with the FullGrad path (``path="fullgrad"``) or the plain gradient.

    Args:
        posterior: a posterior with a ``logits(x) -> [B, S, C]`` method (an
            :class:`~uattr.uq.Ensemble` of logit models); any other posterior is explained
            through ``log P``, which equals the logits up to a per-sample constant.
        uncertainty: ``total | aleatoric | epistemic``.
        tau1, tau2: the temperatures of eq. 8 and of ψ. The paper gives no values; the
            defaults (τ1 = 1; τ2 = 1.5 on the FullGrad path, 0.06 on the gradient path,
            whose relevances are on another scale) were chosen by detection IoU on MNIST's
            validation split, where every τ1 in [0.1, 3] and τ2 over two decades scored
            within noise of each other (docs/hyperparameters.md).
        path: ``"fullgrad"`` (eq. 10) or ``"gradient"`` (``|∂z/∂x|``).
        logits_per_pass: how many of the S·C logits one batched backward pass handles
            (memory against speed).
    """

    name = "ua-backprop"

    def __init__(self, posterior: PosteriorLike, uncertainty: Kind = "total", *, tau1: float = 1.0,
                 tau2: float | None = None, path: Literal["fullgrad", "gradient"] = "fullgrad",
                 logits_per_pass: int = 10) -> None:
        super().__init__(posterior, uncertainty)
        if callable(uncertainty):
            raise ValueError("uncertainty must be 'total', 'aleatoric' or 'epistemic' for "
                             "UA-Backprop, which splits it over classes; got a callable")
        if path not in ("fullgrad", "gradient"):
            raise ValueError(f"path must be 'fullgrad' or 'gradient', got {path!r}")
        if tau2 is None:
            tau2 = _DEFAULT_TAU2[path]
        check_positive(tau1=tau1, tau2=tau2)
        self.tau1, self.tau2, self.path = tau1, tau2, path
        self.logits_per_pass = logits_per_pass

    def _logits(self, x: Tensor) -> Tensor:
        if hasattr(self.posterior, "logits"):
            return require_gradient(x, self.posterior.logits(x), type(self).__name__)
        probs = require_gradient(x, self.posterior(x), type(self).__name__)
        return torch.log(probs.clamp_min(torch.finfo(x.dtype).tiny))

    def relevance(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(R [B, S, C, H, W], probs [B, S, C])``: the per-logit maps before ψ's softmax."""
        x = self._check(x).detach().requires_grad_()
        hooked = ConvOutputs(self.posterior) if self.path == "fullgrad" else _NoHooks()
        with hooked:
            logits = self._logits(x)  # [B, S, C]
        probs = check_probs(logits.softmax(-1))
        if self.uncertainty == "epistemic" and probs.shape[1] < 2:
            raise ValueError("uncertainty='epistemic' needs a posterior with S >= 2 samples")
        batch, samples, classes = logits.shape
        features = list(hooked.tensors)
        total = samples * classes
        maps = []
        for start in range(0, total, self.logits_per_pass):
            picks = torch.arange(start, min(start + self.logits_per_pass, total))
            cotangents = torch.zeros(len(picks), batch, total, dtype=x.dtype, device=x.device)
            cotangents[torch.arange(len(picks)), :, picks] = 1.0
            cotangents = cotangents.view(len(picks), batch, samples, classes)  # [K, B, S, C]
            with batched_cotangents(len(picks)):
                grads = torch.autograd.grad(logits, [x, *features], grad_outputs=cotangents,
                                            is_grads_batched=True, retain_graph=True,
                                            allow_unused=True)
            grads = [torch.zeros(len(picks), *t.shape, dtype=t.dtype, device=t.device)
                     if g is None else g for g, t in zip(grads, [x, *features], strict=True)]
            maps.append(self._combine(x, grads, hooked.outputs))  # [K, B, H, W]
        relevance = torch.cat(maps).view(samples, classes, batch, *x.shape[-2:])
        return relevance.permute(2, 0, 1, 3, 4).detach(), probs.detach()  # [B, S, C, H, W]

    def _combine(self, x: Tensor, grads: list[Tensor], outputs: Sequence) -> Tensor:
        """R for a chunk of K logits: ``[K, B, H, W]``."""
        x_grad = grads[0]  # [K, B, C, H, W]
        if self.path == "gradient":
            return x_grad.abs().mean(2)
        relevance = (x_grad * x).abs().mean(2)  # [K, B, H, W]
        for (layer, _), grad in zip(outputs, grads[1:], strict=True):
            bias_term = (grad * implicit_bias(layer).view(1, 1, -1, 1, 1)).abs().mean(2)
            up = F.interpolate(bias_term, size=x.shape[-2:], mode="bilinear",
                               align_corners=True)  # [K, B, H, W]
            relevance = relevance + up
        return relevance

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``M(x) [B, H, W]``, summing to ``U(x)`` over pixels; ``segments`` is ignored.

        The weights and the softmax over pixels are combined in float64 so that the map
        sums to U(x) to float32 precision on any CPU (completeness, DESIGN §3.2); the
        map is returned in the dtype of ``x``."""
        if self.path == "fullgrad":
            require_layers(self.posterior, "UA-Backprop (path 'fullgrad')",
                           "biased nn.Conv2d and BatchNorm layers", nn.Conv2d)
        relevance, probs = self.relevance(x)
        return self.from_relevance(relevance, probs).to(x.dtype)

    def from_relevance(self, relevance: Tensor, probs: Tensor) -> Tensor:
        """``M [B, H, W]`` (float64) from :meth:`relevance`'s ``R [B, S, C, H, W]`` and
        ``probs [B, S, C]`` with this method's τ1 and τ2: eq. 11's weighted sum of ψ's
        per-logit softmaxes over pixels. R does not depend on τ1 or τ2, so a sweep over
        them computes it once (tuning/ua_backprop.py)."""
        batch, samples, _, height, width = relevance.shape
        per_logit = (relevance.flatten(3).double() / self.tau2).softmax(-1)  # [B, S, C, H·W]
        weights = logit_uncertainties(probs, self.uncertainty, self.tau1)  # [B, S, C]
        maps = torch.einsum("bsc,bscp->bp", weights, per_logit) / samples
        return maps.view(batch, height, width)


class _NoHooks:
    """Stands in for :class:`ConvOutputs` on the gradient path: records nothing."""

    outputs: tuple = ()
    tensors: tuple = ()

    def __enter__(self) -> _NoHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
