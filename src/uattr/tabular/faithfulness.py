"""Faithfulness of a row's attribution without a known cause: feature flipping.

The features of a row are removed in the order of its attribution, largest first (a
removed feature takes the background rows' values, averaged over them as in
:func:`~uattr.tabular.methods.coalition_values`), and the uncertainty is recorded after
each removal::

    c_k = v_x(all features but the k first)       k = 0..F
    score = (1/F) Σ_{k=1..F} (c_0 − c_k)           (in the units of U; higher is better)

the area between the row's uncertainty and the curve: how much uncertainty the removals
took away, on average along the way; it is large when the first features removed held
the uncertainty. Every order's curve runs from ``c_0 = u(x)`` to ``c_F = E_b[u(b)]``, so
orders are compared on the same rows (paired), a random order as the reference. Kept in
the units of U rather than divided by each row's drop ``c_0 − c_F``: a row whose drop is
small would otherwise weigh without bound. It is meant for rows more uncertain than the
background (``c_0 > c_F``), those whose uncertainty asks for an explanation.
This is the feature-flipping score of Bley et al. (Pattern Recognition 2025) with the
background's marginal distribution as the density that fills a removed feature.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .methods import coalition_values
from .posteriors import RowUncertainty, check_rows

__all__ = ["deletion_curves", "flipping_scores"]


def deletion_curves(u: RowUncertainty, x: object, background: object, phi: Tensor
                    ) -> Tensor:
    """``c [B, F + 1]``: the uncertainty of each row after its ``k`` most attributed
    features (by ``phi [B, F]``) were replaced by the background (module docstring)."""
    x = check_rows(x, u.n_features, "x")
    background = check_rows(background, u.n_features, "background")
    if phi.shape != x.shape:
        raise ValueError(f"phi must have the rows' shape {tuple(x.shape)}, got "
                         f"{tuple(phi.shape)}")
    features = x.shape[1]
    rank = phi.argsort(1, descending=True).argsort(1)  # [B, F]: 0 = the largest
    removed = torch.arange(features + 1)  # k = 0..F
    keep = rank[:, None, :] >= removed[None, :, None]  # [B, F+1, F]
    return coalition_values(u, x, background, keep)


def flipping_scores(curves: Tensor) -> Tensor:
    """``[B]``: the mean of ``c_0 − c_k`` over ``k = 1..F`` (higher is better)."""
    return (curves[:, :1] - curves[:, 1:]).mean(1)
