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
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import UncertaintyAttribution

__all__ = ["CovGI"]


class CovGI(UncertaintyAttribution):
    """CovGI over pixels (module docstring): ``S`` backward passes for the whole batch.

    ``uncertainty`` is kept for the common interface; the map explains the members'
    disagreement (an epistemic quantity) whichever is given. ``segments`` is ignored.
    """

    name = "covgi"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``φ [B, H, W]``; a ``ValueError`` for a posterior of one sample."""
        x = self._check(x).detach().requires_grad_(True)
        probs = self.posterior(x)  # [B, S, C]
        samples = probs.shape[1]
        if samples < 2:
            raise ValueError("CovGI explains the disagreement of a posterior's samples and "
                             f"needs at least 2, got a posterior of {samples}")
        predicted = probs.detach().mean(1).argmax(-1)  # [B]
        chosen = probs.gather(2, predicted[:, None, None].expand(-1, samples, 1))[..., 0]
        log_p = chosen.clamp_min(torch.finfo(probs.dtype).tiny).log()  # [B, S]
        grads = torch.stack([  # one backward pass per sample; images are independent
            torch.autograd.grad(log_p[:, s].sum(), x, retain_graph=s < samples - 1)[0]
            for s in range(samples)], 1)  # [B, S, C, H, W]
        relevance = (grads * x.detach()[:, None]).sum(2)  # [B, S, H, W]
        centred = relevance - relevance.mean(1, keepdim=True)
        total = centred.flatten(2).sum(2)[..., None, None]  # [B, S, 1, 1]
        return (centred * total).mean(1)  # [B, H, W]
