"""Second-order explanations of an ensemble's disagreement (Bley, Lapuschkin, Samek and
Montavon, "Explaining predictive uncertainty by exposing second-order effects", Pattern
Recognition 2025): the variance of the members' outputs explained as the covariance of
their first-order explanations.

For an image ``x`` and the class ``c`` the ensemble predicts (``argmax_c mean_s P_sc``),
each sample's output is ``f_s(x) = log P_sc(x)`` and its Gradient×Input relevance, summed
over channels, is ``R_s = Σ_channels x ⊙ ∂f_s/∂x`` ``[H, W]``. CovGI's map is

    φ_p = Cov_s(R_s,p, Σ_q R_s,q)        (over the S samples, population covariance)

so ``Σ_p φ_p = Var_s Σ_q R_s,q``, the variance of the members' summed relevance (``=
Var_s f_s`` where Gradient×Input is complete). A pixel scores high where the members'
explanations disagree in the direction of their overall disagreement.

The log-probability stands in for the paper's member output because a uattr posterior
returns probabilities (``[B, S, C]``); for rows, :mod:`uattr.tabular` explains the logits
of PyTorch networks, which it can reach.

CovLRP is the same covariance with each member's relevance taken by layer-wise relevance
propagation (:func:`uattr.ops.lrp.lrp_relevance`: the γ-rule as the authors set it for
CNNs, γ = 0.1 on hidden linear layers and 0.2 on convolutions, LRP-0 on the output layer)
of the member's logit for the predicted class: it needs the members themselves, so a deep
ensemble (:class:`~uattr.uq.Ensemble` of networks returning logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.checks import check_real
from ..ops.lrp import lrp_relevance
from ..posteriors.passes import declare_passes
from ..uq import Ensemble, PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution, require_layers

__all__ = ["CovGI", "CovLRP", "member_covariance"]


class CovGI(UncertaintyAttribution):
    """CovGI over pixels (module docstring): one forward and one backward pass for the whole
    batch where the posterior's samples run alone (an ensemble's members, a sampled
    posterior with frozen noise: ``sample_probs``), else one backward pass per sample.

    ``uncertainty`` is kept for the common interface; the map explains the members'
    disagreement (an epistemic quantity) whichever is given. ``segments`` is ignored.
    """

    name = "covgi"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``φ [B, H, W]``; a ``ValueError`` for a posterior of one sample."""
        x = self._check(x).detach()
        alone = getattr(self.posterior, "sample_probs", None)
        samples = getattr(self.posterior, "num_samples", -1)
        # a sample runs alone only while its noise is frozen: else each call draws afresh
        if alone is not None and samples >= 2 and getattr(self.posterior, "freeze", True):
            # each sample reads its own copy of the images, so that one backward call
            # gives every sample's gradient apart: each network is run back once
            copies = x[:, None].repeat(1, samples, *[1] * (x.ndim - 1)).requires_grad_()
            probs = torch.stack([alone(copies[:, s], s) for s in range(samples)], 1)
            grads = torch.autograd.grad(_predicted_log_p(probs).sum(), copies)[0]
        else:
            leaf = x.clone().requires_grad_()
            probs = self.posterior(leaf)  # [B, S, C]
            samples = probs.shape[1]
            _need_two(samples)
            log_p = _predicted_log_p(probs)  # [B, S]
            # one backward call per sample: an opaque posterior's samples share one graph
            grads = torch.stack([
                torch.autograd.grad(log_p[:, s].sum(), leaf, retain_graph=s < samples - 1)[0]
                for s in range(samples)], 1)  # [B, S, C, H, W]
        return member_covariance((grads * x[:, None]).sum(2))  # [B, S, H, W] summed


def _need_two(samples: int) -> None:
    if samples < 2:
        raise ValueError("CovGI explains the disagreement of a posterior's samples and "
                         f"needs at least 2, got a posterior of {samples}")


def _predicted_log_p(probs: Tensor) -> Tensor:
    """``log P_s,c [B, S]`` of the class ``c`` the posterior predicts (``argmax_c mean_s``)."""
    predicted = probs.detach().mean(1).argmax(-1)  # [B]
    chosen = probs.gather(2, predicted[:, None, None].expand(-1, probs.shape[1], 1))[..., 0]
    return chosen.clamp_min(torch.finfo(probs.dtype).tiny).log()


def member_covariance(relevance: Tensor) -> Tensor:
    """``φ_p = Cov_s(R_s,p, Σ_q R_s,q)`` (population covariance over the samples) of
    relevances ``[B, S, *F]`` (pixels ``[H, W]`` or features ``[F]``) -> ``[B, *F]``; it
    sums to ``Var_s Σ_q R_s,q``."""
    centred = relevance - relevance.mean(1, keepdim=True)
    total = centred.flatten(2).sum(2)  # [B, S]
    return (centred * total.view(*total.shape, *[1] * (relevance.ndim - 2))).mean(1)


class CovLRP(UncertaintyAttribution):
    """CovLRP over pixels (module docstring): one LRP pass per member for the whole batch.

    ``posterior`` must be an :class:`~uattr.uq.Ensemble` of at least 2 networks returning
    logits, built of layers Captum's LRP has rules for; ``gamma`` and ``conv_gamma`` are
    the γ of the hidden linear layers and of the convolutions (0 and 0: LRP-0 everywhere,
    Gradient×Input of the logit on ReLU networks). ``uncertainty`` is kept
    for the common interface, as CovGI's; ``segments`` is ignored.
    """

    name = "covlrp"

    @staticmethod
    def accepts(posterior: object) -> bool:
        """Whether CovLRP can explain ``posterior``: a deep ensemble of networks returning
        logits, whose members it can reach (an MC-Dropout or Bayesian-layer posterior is
        one network: its samples have no network of their own to propagate through)."""
        return isinstance(posterior, Ensemble) and posterior.output == "logits"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 gamma: float = 0.1, conv_gamma: float = 0.2) -> None:
        super().__init__(posterior, uncertainty)
        if not self.accepts(self.posterior):
            raise ValueError("posterior: CovLRP explains each member network's logit and "
                             "needs a deep ensemble of networks returning logits "
                             "(uattr.Ensemble(members) or a list of modules); for "
                             f"{type(self.posterior).__name__}, use CovGI")
        if self.posterior.num_samples < 2:
            raise ValueError("CovLRP explains the disagreement of an ensemble's members and "
                             f"needs at least 2, got {self.posterior.num_samples}")
        check_real("gamma", gamma, at_least=0)
        check_real("conv_gamma", conv_gamma, at_least=0)
        self.gamma, self.conv_gamma = gamma, conv_gamma

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``φ [B, H, W]``."""
        x = self._check(x).detach()
        # Captum's LRP hooks every layer: a compiled member would have none to hook
        require_layers(self.posterior, "CovLRP", "linear and convolution layers", nn.Linear)
        with torch.no_grad():
            predicted = self.posterior(x).mean(1).argmax(-1)  # [B]
        relevance = torch.stack([
            lrp_relevance(member, x, predicted, gamma=self.gamma, conv_gamma=self.conv_gamma)
            for member in self.posterior.members], 1)  # [B, S, C, H, W]
        # LRP ran each member's copy forward and back once: one pass of the posterior
        # each way, which the posterior's own hooks did not see
        declare_passes(forward=len(x), backward=len(x))
        return member_covariance(relevance.sum(2))
