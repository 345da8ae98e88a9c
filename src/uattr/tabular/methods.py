"""Which features of a row make the model unsure: attributions ``φ [B, F]`` of an
uncertainty ``u`` (:class:`~uattr.tabular.posteriors.RowUncertainty`) over rows
``x [B, F]``, batched over rows and their perturbations.

A feature is *absent* when it takes the values of background rows ``b_k [K, F]`` (a
sample of the training data), and a coalition ``S`` of present features has the value

    v_x(S) = mean_k u(x_S, b_k,¬S)                 (interventional, as shap's explainers)

so ``v_x(all) = u(x)`` and ``v_x(∅) = E_b[u(b)]``. ``φ_f > 0`` where the row's own value
of feature ``f`` raises the uncertainty over what the background gives: the sign of every
uattr map.

- :func:`shapley_values`: the Shapley values of ``v_x``, exact over all ``2^F``
  coalitions up to ``exact_max_features`` features, else by antithetic permutation
  sampling; either way ``Σ_f φ_f = u(x) − E_b[u(b)]`` exactly.
- :func:`occlusion`: ``φ_f = v_x(all) − v_x(all \\ {f})``, one feature removed at a time.
- :func:`optimized_mask`: the optimization-based method (papers/000) over features: a
  Gumbel-sigmoid mask ``m [B, F]`` that moves features to the background,
  minimising ``mean_k u((1 − m) ⊙ x + m ⊙ b_k) / s + λ · mean_f m_f`` with
  ``s = max(u(x), E_b[u(b)])``; the map is
  ``σ(θ)``, the learnt share of each feature to remove. Needs a differentiable score.
- :func:`covariance_gi`: the second-order explanation CovGI (Bley, Lapuschkin, Samek and
  Montavon, Pattern Recognition 2025): the variance of an ensemble's members' outputs
  ``T_s`` explained as the covariance of their Gradient×Input explanations ``R_s``,
  ``φ_f = Cov_s(R_s,f, Σ_g R_s,g)``, which sums to ``Var_s Σ_g R_s,g`` (``= Var_s T_s``
  where Gradient×Input is complete: bias-free ReLU networks); :func:`covariance_lrp`
  (CovLRP) is the same with layer-wise relevance propagation (LRP-γ, γ = 0.2, on the
  hidden layers, as the authors' experiments set it) in place of Gradient×Input.
- ``clue`` (:mod:`uattr.tabular.clue`): how far each feature moves to the nearest row a
  VAE of the data can make on which the model is sure.

Written here rather than with shap or Captum because both explain one row at a time and
shap's background value needs a Python loop per coalition; here the rows, coalitions and
background rows of a batch go through the model in a few large calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attribution.second_order import member_covariance
from ..ops.checks import check_positive, check_positive_ints
from ..ops.lrp import lrp_relevance
from ..ops.rng import GeneratorArg, draw_uniform, make_generators
from .clue import clue_map
from .posteriors import RowUncertainty, check_rows, uncertainty_scale

__all__ = ["METHODS", "attribute_rows", "coalition_values", "covariance_gi", "covariance_lrp",
           "occlusion", "optimized_mask", "shapley_values"]

#: the most rows ``u`` sees in one call: a forest of 200 trees holds ``[rows, 200, C]``
#: probabilities in float64 (120 MB for 3 classes)
CHUNK_ROWS = 25_000


def _check(u: RowUncertainty, x: object, background: object | None
           ) -> tuple[Tensor, Tensor | None]:
    if not isinstance(u, RowUncertainty):
        raise ValueError(f"u must be a RowUncertainty (uattr.tabular.row_uncertainty), got "
                         f"{type(u).__name__}")
    rows = check_rows(x, u.n_features, "x")
    if background is None:
        return rows, None
    return rows, check_rows(background, u.n_features, "background")


def coalition_values(u: RowUncertainty, x: Tensor, background: Tensor, keep: Tensor,
                     progress: bool = False) -> Tensor:
    """``v [B, M]``: the value of each coalition ``keep [B, M, F]`` (or ``[M, F]`` shared
    by every row; True = the row's own value) of each row ``x [B, F]``, the mean of ``u``
    over the background rows ``[K, F]`` filling the absent features."""
    batch, features = x.shape
    keep = keep.expand(batch, *keep.shape[-2:]) if keep.ndim == 2 else keep
    coalitions = keep.reshape(-1, features)  # [B·M, F]
    owners = torch.arange(batch).repeat_interleave(keep.shape[1])  # [B·M]
    per_call = max(1, CHUNK_ROWS // len(background))
    values = []
    with torch.no_grad():
        for start in tqdm(range(0, len(coalitions), per_call), disable=not progress,
                          desc="coalitions", leave=False):
            chunk = coalitions[start : start + per_call]  # [n, F]
            rows = torch.where(chunk[:, None], x[owners[start : start + per_call], None],
                               background[None])  # [n, K, F]
            values.append(u(rows.reshape(-1, features)).view(len(chunk), -1).mean(1))
    return torch.cat(values).view(batch, -1)  # [B, M]


def _all_coalitions(features: int) -> Tensor:
    """``[2^F, F]``: coalition ``i`` keeps feature ``f`` where bit ``f`` of ``i`` is set."""
    ids = torch.arange(2**features)
    return (ids[:, None] >> torch.arange(features)) & 1 == 1


def shapley_values(u: RowUncertainty, x: object, background: object, *,
                   exact_max_features: int = 12, n_permutations: int = 64, seed: int = 0,
                   generator: GeneratorArg = None, progress: bool = False) -> Tensor:
    """Shapley values ``φ [B, F]`` of ``v_x`` (module docstring), float64.

    Exact when ``F ≤ exact_max_features``: ``φ_f = Σ_{S ∌ f} |S|!(F−|S|−1)!/F! ·
    (v(S ∪ f) − v(S))`` over all ``2^F`` coalitions (``2^F · K`` evaluations of ``u`` per
    row). Above: ``n_permutations`` per row (half of them the reverses of the other half,
    which lowers the variance), each feature credited ``v(prefix ∪ f) − v(prefix)``
    along the permutation (``n_permutations · (F + 1) · K`` evaluations per row).
    ``generator``: one per row makes a row's permutations the same in any batch
    (:mod:`uattr.ops.rng`).
    """
    x, background = _check(u, x, background)
    check_positive_ints(exact_max_features=exact_max_features, n_permutations=n_permutations)
    batch, features = x.shape
    if features <= exact_max_features:
        coalitions = _all_coalitions(features)  # [2^F, F]
        values = coalition_values(u, x, background, coalitions, progress)  # [B, 2^F]
        sizes = coalitions.sum(1)  # [2^F]
        weights = torch.tensor([math.factorial(s) * math.factorial(features - s - 1)
                                / math.factorial(features) if s < features else 0.0
                                for s in sizes.tolist()], dtype=torch.float64)
        ids = torch.arange(2**features)
        phi = torch.empty(batch, features, dtype=torch.float64)
        for f in range(features):  # a loop over features: each one's pairs S, S ∪ {f}
            without = ids[~coalitions[:, f]]  # [2^(F-1)]
            gain = values[:, without | (1 << f)] - values[:, without]  # [B, 2^(F-1)]
            phi[:, f] = gain @ weights[without]
        return phi
    generators = make_generators(generator, seed, batch, x.device)
    half = -(-n_permutations // 2)
    orders = draw_uniform(generators, (batch, half, features), x.device).argsort(-1)
    orders = torch.cat([orders, orders.flip(-1)], 1)  # [B, P, F], antithetic pairs
    rank = orders.argsort(-1)  # [B, P, F]: the position of each feature in its order
    steps = torch.arange(features + 1)  # prefix lengths 0..F
    keep = rank[:, :, None, :] < steps[None, None, :, None]  # [B, P, F+1, F]
    values = coalition_values(u, x, background, keep.flatten(1, 2), progress)
    values = values.view(batch, orders.shape[1], features + 1)  # [B, P, F+1]
    gains = values[..., 1:] - values[..., :-1]  # [B, P, F]: gain of the j-th feature added
    phi = torch.zeros(batch, orders.shape[1], features, dtype=torch.float64)
    phi.scatter_(2, orders, gains)  # each gain to the feature that made it
    return phi.mean(1)


def occlusion(u: RowUncertainty, x: object, background: object, *,
              progress: bool = False) -> Tensor:
    """``φ_f = u(x) − mean_k u(x with feature f from b_k)`` ``[B, F]``, float64: how much
    of the uncertainty goes when feature ``f`` alone is replaced by the background."""
    x, background = _check(u, x, background)
    features = x.shape[1]
    keep = torch.cat([torch.ones(1, features, dtype=torch.bool),
                      ~torch.eye(features, dtype=torch.bool)])  # [1 + F, F]
    values = coalition_values(u, x, background, keep, progress)  # [B, 1 + F]
    return values[:, :1] - values[:, 1:]


def optimized_mask(u: RowUncertainty, x: object, background: object, *, lam: float = 1.0,
                   tau: float = 0.1, steps: int = 200, lr: float = 0.1, seed: int = 0,
                   generator: GeneratorArg = None, progress: bool = False) -> Tensor:
    """The learnt mask ``σ(θ) [B, F]`` in [0, 1] of the optimization-based method over
    features (module docstring): Adam on ``θ`` (zeros at the start) for ``steps`` steps,
    a fresh Gumbel-sigmoid draw per row and step (``generator``: as
    :func:`shapley_values`'s). ``u`` is divided by ``max(u(x), E_b[u(b)])`` so that
    ``λ`` means the same for any score: removing feature ``f`` pays where it lowers the
    uncertainty by more than ``λ / F`` of ``u(x)`` (of the background's mean U for a row
    less unsure than the background, whose own U may be near zero)."""
    x, background = _check(u, x, background)
    if not u.differentiable:
        raise ValueError("u: the optimization-based method needs a differentiable "
                         "uncertainty (a PyTorch model); this score is not, so use "
                         "shapley_values or occlusion")
    check_positive(lam=lam, allow_zero=True)
    check_positive(tau=tau, lr=lr)
    check_positive_ints(steps=steps)
    batch, features = x.shape
    scale = uncertainty_scale(u, x, background)  # [B]
    logits = torch.zeros(batch, features, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    generators = make_generators(generator, seed, batch, x.device)
    for _ in tqdm(range(steps), disable=not progress, desc="optimization", leave=False):
        uniform = draw_uniform(generators, (batch, features), x.device, torch.float64)
        noise = uniform.clamp(1e-6, 1 - 1e-6).logit()  # logistic draws
        mask = torch.sigmoid((logits + noise) / tau)  # [B, F]
        perturbed = (1 - mask[:, None]) * x[:, None] + mask[:, None] * background[None]
        kept_u = u(perturbed.flatten(0, 1)).view(batch, -1).mean(1)  # [B]
        loss = (kept_u / scale + lam * mask.mean(1)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(logits.detach())


def covariance_gi(u: RowUncertainty, x: object) -> Tensor:
    """CovGI ``φ [B, F]`` (module docstring) of an ensemble of PyTorch networks: their
    members' outputs (a regression mean, or the logit of the class the ensemble predicts)
    explained by Gradient×Input, and each feature's covariance over the members with the
    sum of the explanation. An ensemble's members each read their own copy of the rows, so
    one backward call gives every member's gradients; the samples of one network (MC
    Dropout) take one call each."""
    x, _ = _check(u, x, None)
    if u.members is None:
        raise ValueError("u: CovGI explains the spread of an ensemble's members and needs "
                         "their outputs: build u with row_uncertainty(list of PyTorch "
                         "networks, output=...)")
    if u.networks is not None:  # an ensemble: each member reads its own copy of the rows
        copies = x.detach()[None].repeat(len(u.networks), 1, 1).requires_grad_(True)
        outputs = u.members(copies)  # [B, S]: member s's output depends on copies[s] alone
        grads = torch.autograd.grad(outputs.sum(), copies)[0].transpose(0, 1)  # [B, S, F]
    else:  # the samples of one network share it: one backward call per sample
        x = x.detach().requires_grad_(True)
        outputs = u.members(x)  # [B, S]
        grads = torch.stack([torch.autograd.grad(outputs[:, s].sum(), x,
                                                 retain_graph=True)[0]
                             for s in range(outputs.shape[1])], 1)  # [B, S, F]
    return member_covariance((grads * x.detach()[:, None]).detach())


#: LRP-γ of the hidden layers, as Bley et al.'s feature-flipping experiments set it for
#: MLPs (γ = 0.2 on the hidden linear layers, LRP-0 on the output)
LRP_GAMMA = 0.2


def covariance_lrp(u: RowUncertainty, x: object, gamma: float = LRP_GAMMA) -> Tensor:
    """CovLRP ``φ [B, F]``: as :func:`covariance_gi` with each member's output explained by
    layer-wise relevance propagation (:func:`uattr.ops.lrp.lrp_relevance`: the γ-rule on
    every linear layer but the last, LRP-0 on the last, activations and dropout passed).
    With ``gamma=0`` every layer is LRP-0, which on ReLU networks is Gradient×Input
    (CovGI). Needs networks built of the layers Captum's LRP knows."""
    x, _ = _check(u, x, None)
    if u.networks is None or u.members is None:
        raise ValueError("u: CovLRP needs the members' networks themselves: build u with "
                         "row_uncertainty(list of networks, output=...); the samples of one "
                         "network with dropout share it, so use 'covgi' for them")
    dtype = next(u.networks[0].parameters()).dtype
    with torch.no_grad():
        if u.output == "logits":  # the class the ensemble predicts, the same for every member
            probs = torch.stack([net(x.to(dtype)) for net in u.networks], 1).softmax(-1)
            target = probs.mean(1).argmax(-1)  # [B]
        else:
            target = torch.zeros(len(x), dtype=torch.long)  # the mean of a Gaussian head
    relevance = torch.stack([lrp_relevance(net, x.to(dtype), target, gamma=gamma,
                                           conv_gamma=2 * gamma)
                             for net in u.networks], 1)  # [B, S, F], one member at a time
    return member_covariance(relevance.to(torch.float64))


#: name -> (function, needs a background, needs a differentiable score)
METHODS: dict[str, tuple[Callable[..., Tensor], bool, bool]] = {
    "shapley": (shapley_values, True, False),
    "occlusion": (occlusion, True, False),
    "optimization": (optimized_mask, True, True),
    "covgi": (covariance_gi, False, True),
    "covlrp": (covariance_lrp, False, True),
    "clue": (clue_map, True, True),
}


def attribute_rows(u: RowUncertainty, x: object, method: str = "shapley", *,
                   background: object | None = None, **options: object) -> object:
    """``φ [B, F]`` of ``method`` (one of :data:`METHODS`) with its ``options``: a float64
    tensor, or, where ``x`` is a pandas DataFrame, a DataFrame with its index and column
    names (the feature names carried through)."""
    phi = _attribute_rows(u, x, method, background, options)
    if hasattr(x, "columns") and hasattr(x, "index"):  # pandas
        import pandas as pd

        return pd.DataFrame(phi.numpy(), index=x.index, columns=x.columns)
    return phi


def _attribute_rows(u: RowUncertainty, x: object, method: str, background: object | None,
                    options: dict) -> Tensor:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    function, needs_background, needs_gradient = METHODS[method]
    if needs_gradient and not u.differentiable:
        raise ValueError(f"method={method!r} needs gradients of the uncertainty, and this "
                         "model is not differentiable (a scikit-learn model or a plain "
                         "callable); use 'shapley' or 'occlusion'")
    if needs_background:
        if background is None:
            raise ValueError(f"background: method={method!r} replaces features by "
                             "background rows; pass some training rows (20-100 is typical)")
        return function(u, x, background, **options)
    return function(u, x, **options)
