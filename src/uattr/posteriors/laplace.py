"""A posterior from a fitted Laplace approximation of laplace-torch.

laplace-torch's own predictive (``la(x)``, ``la.predictive_samples``) runs without
gradients, so no gradient method can explain it. :func:`laplace_posterior` draws S weight
samples from the approximation once and freezes each into a copy of the network: an
ensemble of S ordinary modules, differentiable, the same on every call and for every
batch, which every method of uattr explains (hooks included). Its probabilities are the
approximation's own Monte Carlo predictive (``pred_type="nn"``) with the same draws.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from ..uq import Ensemble

__all__ = ["laplace_posterior"]


def laplace_posterior(la: object, *, samples: int = 10, seed: int = 0) -> Ensemble:
    """An :class:`~uattr.uq.Ensemble` of ``samples`` networks, each the Laplace
    approximation ``la``'s network with one weight sample ``θ_s ~ N(θ_MAP, Σ)`` drawn by
    ``la.sample`` from a generator seeded with ``seed`` (last-layer approximations: only
    the last layer differs between members; all-weights ones: every weight it covers).

    ``la`` must be a fitted ``laplace.Laplace`` for classification (``la.fit(loader)``
    called). The members return logits; their softmax is ``la.predictive_samples(x,
    pred_type="nn", n_samples=samples, generator=...)`` with the same generator."""
    try:
        from laplace.baselaplace import BaseLaplace
        from laplace.lllaplace import LLLaplace
    except ImportError as error:  # pragma: no cover - the tests install it
        raise ImportError("laplace_posterior needs laplace-torch: pip install laplace-torch "
                          "(see the README for a CPU-only install)") from error
    if not isinstance(la, BaseLaplace):
        raise ValueError(f"la must be a fitted laplace.Laplace object, got {type(la).__name__}")
    if str(getattr(la.likelihood, "value", la.likelihood)) != "classification":
        raise ValueError(f"la must be a Laplace approximation for classification, got "
                         f"likelihood {la.likelihood!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    device = la.mean.device if isinstance(getattr(la, "mean", None), torch.Tensor) else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        thetas = la.sample(n_samples=samples, generator=generator)  # [S, P]
    except (AttributeError, ValueError, RuntimeError, TypeError) as error:
        raise ValueError(f"la could not be sampled ({error}): fit it first, "
                         "la.fit(train_loader), and optimise its prior precision if you "
                         "wish") from error
    members = []
    for theta in thetas:
        if isinstance(la, LLLaplace):  # the user's network inside la's feature extractor
            net = copy.deepcopy(la.model.model)
            params = list(net.get_submodule(la.model._last_layer_name).parameters())
        else:
            net = copy.deepcopy(la.model)
            params = [p for p in net.parameters() if p.requires_grad]
        vector_to_parameters(theta.detach().clone(), params)
        members.append(_frozen(net))
    return Ensemble(members, output="logits")


def _frozen(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with no parameter asking for a gradient (the methods need the
    gradient in the input only)."""
    return net.eval().requires_grad_(False)
