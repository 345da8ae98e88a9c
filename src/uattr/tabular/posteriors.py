"""The uncertainty of a model about rows ``x [B, F]``, whatever the model: a fitted
scikit-learn forest or bagging ensemble (each estimator a posterior sample), a list of
fitted models (an ensemble), a list of PyTorch networks, or any score ``X -> u [B]``.

Classifiers give ``P [B, S, C]`` (uattr's one shape convention, :mod:`uattr.uq`) and the
entropy decomposition of :func:`uattr.uq.decompose`. Regressors give each sample's mean
``μ [B, S]`` and, where the members predict one, its variance ``σ² [B, S]``::

    total = mean_s σ_s²  (aleatoric)  +  var_s μ_s  (epistemic)

Trees and most scikit-learn regressors predict no variance: only the epistemic part is
defined for them, and asking for another is a ``ValueError`` that says so.

:func:`row_uncertainty` turns any of them into a :class:`RowUncertainty`, the one object
the methods of :mod:`uattr.tabular` explain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..uq import UNCERTAINTY_KINDS, decompose

__all__ = ["RowUncertainty", "check_rows", "classifier_probs", "regressor_moments",
           "row_uncertainty", "uncertainty_scale", "variance_decomposition"]


@dataclass
class RowUncertainty:
    """A score ``u(x) [B]`` of rows ``x [B, F]`` (float64 tensors), with what the methods
    need to know about it.

    Attributes:
        score: the function itself.
        n_features: ``F``, the columns every row must have.
        differentiable: whether ``score`` lets gradients through to ``x`` (PyTorch
            models); the gradient methods refuse a score that does not.
        kind: which uncertainty (``total``, ``aleatoric``, ``epistemic`` or ``score``).
        members: for ensembles of PyTorch networks, each member's scalar output
            ``x -> [B, S]`` (the second-order methods explain its variance), else None.
        networks, output: the PyTorch networks themselves and what they return
            (``logits`` or ``gaussian``), for CovLRP; else None.
    """

    score: Callable[[Tensor], Tensor]
    n_features: int
    differentiable: bool = False
    kind: str = "score"
    members: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    networks: list[nn.Module] | None = field(default=None, repr=False)
    output: str | None = None

    def __call__(self, x: Tensor) -> Tensor:
        u = self.score(x)
        if not isinstance(u, Tensor):
            u = torch.as_tensor(np.asarray(u, dtype=np.float64))
        if u.shape != (x.shape[0],):
            raise ValueError(f"the uncertainty score must return one value per row, shape "
                             f"[{x.shape[0]}], got shape {tuple(u.shape)}")
        if not torch.isfinite(u.detach()).all():
            bad = (~torch.isfinite(u.detach())).nonzero()[:5, 0].tolist()
            raise ValueError(f"the uncertainty score returned NaN or inf for rows {bad}")
        return u.to(torch.float64)


def check_rows(x: object, n_features: int | None = None, name: str = "x") -> Tensor:
    """Rows as a float64 tensor ``[B, F]``, from numpy, pandas or torch; a clear
    ``ValueError`` for anything else, for NaN or inf, and for the wrong number of columns."""
    values = x if isinstance(x, Tensor) else getattr(x, "values", x)  # pandas: its array
    if isinstance(values, Tensor):
        rows = values.detach().to(torch.float64)
    else:
        try:
            rows = torch.tensor(np.asarray(values, dtype=np.float64))  # a copy: ours to own
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be numeric rows [B, F] (encode categorical "
                             f"columns first): {error}") from None
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"{name} must be rows [B, F] with B >= 1, got shape "
                         f"{tuple(rows.shape)}")
    if not torch.isfinite(rows).all():
        bad = (~torch.isfinite(rows)).any(1).nonzero()[:5, 0].tolist()
        raise ValueError(f"{name} contains NaN or inf (rows {bad}); impute or drop them first")
    if n_features is not None and rows.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got "
                         f"{rows.shape[1]}")
    return rows


def variance_decomposition(means: Tensor, variances: Tensor | None) -> dict[str, Tensor]:
    """``total``, ``aleatoric`` and ``epistemic`` ``[B]`` of a regression posterior from its
    samples' ``means [B, S]`` and ``variances [B, S]`` (None: members predict no variance,
    and only ``epistemic`` is returned)."""
    epistemic = means.var(1, correction=0)
    if variances is None:
        return {"epistemic": epistemic}
    aleatoric = variances.mean(1)
    return {"total": aleatoric + epistemic, "aleatoric": aleatoric, "epistemic": epistemic}


# ------------------------------------------------------------------ scikit-learn models
def _is_sklearn(model: object) -> bool:
    return hasattr(model, "get_params") and (hasattr(model, "predict")
                                             or hasattr(model, "predict_proba"))


def _members(model: object) -> tuple[list, list[np.ndarray | None]]:
    """A fitted ensemble's estimators and the feature columns each one sees (bagging may
    give each a subset), or a list of models each seeing every column."""
    if isinstance(model, (list, tuple)):
        return list(model), [None] * len(model)
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        raise ValueError(f"model: a {type(model).__name__} is not a fitted ensemble (no "
                         "estimators_); pass a fitted forest or bagging ensemble, or a "
                         "list of fitted models")
    if "Boosting" in type(model).__name__:
        raise ValueError(f"model: the trees of a {type(model).__name__} are the stages of one "
                         "model, not samples of a posterior; pass a list of boosted models "
                         "fit on bootstrap resamples (an ensemble) instead")
    features = getattr(model, "estimators_features_", None)
    return estimators, list(features) if features is not None else [None] * len(estimators)


def classifier_probs(model: object, x: Tensor) -> Tensor:
    """``P [B, S, C]``: each estimator's ``predict_proba`` of a fitted forest or bagging
    classifier, or of each model of a list of fitted classifiers, over the classes of the
    ensemble (a bagged member that never saw a class gives it probability 0)."""
    estimators, features = _members(model)
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = np.unique(np.concatenate([np.asarray(e.classes_) for e in estimators]))
    rows = x.detach().cpu().numpy()
    probs = np.zeros((len(rows), len(estimators), len(classes)))
    for s, (estimator, columns) in enumerate(zip(estimators, features, strict=True)):
        if not hasattr(estimator, "predict_proba"):
            raise ValueError(f"model: member {s} ({type(estimator).__name__}) has no "
                             "predict_proba; uncertainty attribution of a classifier needs "
                             "class probabilities")
        seen = rows if columns is None else rows[:, columns]
        member_probs = estimator.predict_proba(seen)
        probs[:, s, _class_columns(model, estimator, classes)] = member_probs
    return torch.as_tensor(probs)


def _class_columns(model: object, estimator: object, classes: np.ndarray) -> np.ndarray:
    """The ensemble's class columns of a member's ``predict_proba`` columns. A forest's
    trees and a bagging ensemble's members were fit on the ensemble's class indices (a
    bagged member may have seen only some); listed models on the labels themselves."""
    member_classes = np.asarray(estimator.classes_)
    if isinstance(model, (list, tuple)):
        return np.searchsorted(classes, member_classes)
    return member_classes.astype(np.int64)


def regressor_moments(model: object, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(means [B, S], variances [B, S] or None)`` of a fitted regression ensemble: each
    estimator's ``predict``, and its ``predict(X, return_std=True)`` variance where every
    member gives one (Gaussian processes, Bayesian ridge)."""
    estimators, features = _members(model)
    rows = x.detach().cpu().numpy()
    means, variances = [], []
    for estimator, columns in zip(estimators, features, strict=True):
        seen = rows if columns is None else rows[:, columns]
        try:
            mean, std = estimator.predict(seen, return_std=True)
            variances.append(np.asarray(std, dtype=np.float64) ** 2)
        except TypeError:  # predict() takes no return_std: this member gives no variance
            mean = estimator.predict(seen)
            variances.append(None)
        means.append(np.asarray(mean, dtype=np.float64).reshape(len(rows)))
    stacked = torch.as_tensor(np.stack(means, 1))
    if any(v is None for v in variances):
        return stacked, None
    return stacked, torch.as_tensor(np.stack(variances, 1))


def _is_classifier(model: object) -> bool:
    from sklearn.base import is_classifier

    first = model[0] if isinstance(model, (list, tuple)) else model
    return hasattr(first, "predict_proba") or is_classifier(first)


# ------------------------------------------------------------------ PyTorch networks
def row_uncertainty(model: object, uncertainty: str = "total", *, output: str | None = None,
                    n_features: int | None = None,
                    differentiable: bool = False) -> RowUncertainty:
    """The uncertainty of ``model`` about rows, as a :class:`RowUncertainty`.

    Args:
        model: a fitted scikit-learn ensemble (``RandomForest*``, ``ExtraTrees*``,
            ``Bagging*``, gradient boosting is one model: bag it or pass a list), a list of
            fitted scikit-learn models, a list of PyTorch networks (``output`` says what
            they return), a sampled posterior of one network (``uattr.MCDropout(net,
            samples=S)`` and its kin, masks frozen: each sample a member), or a callable
            ``X -> u [B]`` (a conformal interval's width, a Gaussian process's predictive
            std, ...), then ``n_features`` is required.
        uncertainty: ``total``, ``aleatoric`` or ``epistemic`` (ignored for a callable).
        output: for PyTorch networks: ``logits`` (``[B, C]`` each) or ``gaussian``
            (``[B, 2]``: mean and log-variance each).
        differentiable: for a callable: it takes and returns tensors, and gradients
            flow through it.
    """
    if uncertainty not in UNCERTAINTY_KINDS:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY_KINDS}, got "
                         f"{uncertainty!r}")
    from ..posteriors.sampled import SampledPosterior

    if isinstance(model, SampledPosterior):  # MC-Dropout, DropConnect, ... of one network
        return _sampled_uncertainty(model, uncertainty, output, n_features)
    if isinstance(model, nn.Module):
        model = [model]
    if isinstance(model, (list, tuple)) and model and all(isinstance(m, nn.Module)
                                                           for m in model):
        return _torch_uncertainty(list(model), uncertainty, output, n_features)
    if _is_sklearn(model) or (isinstance(model, (list, tuple)) and model
                              and all(_is_sklearn(m) for m in model)):
        return _sklearn_uncertainty(model, uncertainty)
    if callable(model):
        if n_features is None:
            raise ValueError("n_features: a callable uncertainty score needs the number of "
                             "features it takes")
        if differentiable:
            return RowUncertainty(model, n_features, True, "score")

        def score(x: Tensor) -> Tensor:
            return torch.as_tensor(np.asarray(model(x.detach().cpu().numpy()),
                                              dtype=np.float64).reshape(-1))
        return RowUncertainty(score, n_features, False, "score")
    raise ValueError(f"model: expected a fitted scikit-learn ensemble, a list of fitted "
                     f"models or PyTorch networks, or a callable, got {type(model).__name__}")


def _sklearn_uncertainty(model: object, uncertainty: str) -> RowUncertainty:
    first = model[0] if isinstance(model, (list, tuple)) else model
    _members(model)  # refuse what is not an ensemble now, not at the first rows
    n_features = getattr(first, "n_features_in_", None)
    if n_features is None:
        raise ValueError(f"model: {type(first).__name__} is not fitted (no n_features_in_)")
    if _is_classifier(model):
        def score(x: Tensor) -> Tensor:
            return decompose(classifier_probs(model, x))[uncertainty]
        return RowUncertainty(score, int(n_features), False, uncertainty)

    def regression(x: Tensor) -> Tensor:
        parts = variance_decomposition(*regressor_moments(model, x))
        if uncertainty not in parts:
            raise ValueError(f"uncertainty={uncertainty!r}: the members of this "
                             f"{type(first).__name__} ensemble predict no variance, so only "
                             "the epistemic part (the variance of their means) is defined; "
                             "pass uncertainty='epistemic'")
        return parts[uncertainty]
    result = RowUncertainty(regression, int(n_features), False, uncertainty)
    result(torch.zeros(1, int(n_features), dtype=torch.float64))  # refuse now, not later
    return result


def _torch_uncertainty(networks: list[nn.Module], uncertainty: str, output: str | None,
                       n_features: int | None) -> RowUncertainty:
    """An ensemble of networks, each ``x -> [B, C]`` (or ``[B, 2]``), as members. Rows
    ``[S, B, F]`` give each member its own copy (member ``s`` reads ``x[s]``), so that one
    backward call separates the members' input gradients (CovGI)."""
    dtype = next(networks[0].parameters()).dtype

    def raw(x: Tensor) -> Tensor:  # [B, S, C], float64
        copies = x if x.dim() == 3 else [x] * len(networks)
        return torch.stack([net(rows.to(dtype)) for net, rows in zip(networks, copies,
                                                                      strict=True)],
                           1).to(torch.float64)

    return _from_samples(raw, networks[0], uncertainty, output, n_features, networks)


def _sampled_uncertainty(posterior: nn.Module, uncertainty: str, output: str | None,
                         n_features: int | None) -> RowUncertainty:
    """A sampled posterior's samples as members (``posterior.logits(x) -> [B, S, C]``)."""
    dtype = next(posterior.parameters()).dtype

    def raw(x: Tensor) -> Tensor:
        return posterior.logits(x.to(dtype)).to(torch.float64)

    return _from_samples(raw, posterior, uncertainty, output, n_features, None)


def _from_samples(raw: Callable[[Tensor], Tensor], network: nn.Module, uncertainty: str,
                  output: str | None, n_features: int | None,
                  networks: list[nn.Module] | None) -> RowUncertainty:
    """The :class:`RowUncertainty` of samples' raw outputs ``raw(x) [B, S, C]``: logits
    (entropy decomposition; a member's output is its logit of the predicted class) or
    Gaussian heads (variance decomposition; a member's output is its mean)."""
    if output not in ("logits", "gaussian"):
        raise ValueError(f"output: say what the networks return, 'logits' [B, C] or "
                         f"'gaussian' [B, 2] (mean, log-variance), got {output!r}")
    first_linear = next((m for m in network.modules() if isinstance(m, nn.Linear)), None)
    n_features = n_features or (first_linear.in_features if first_linear else None)
    if n_features is None:
        raise ValueError("n_features: cannot read the number of features off the networks; "
                         "pass n_features=")
    if output == "logits":
        def score(x: Tensor) -> Tensor:
            return decompose(raw(x).softmax(-1))[uncertainty]

        def members(x: Tensor) -> Tensor:  # [B, S]
            logits = raw(x)
            predicted = logits.softmax(-1).mean(1).argmax(-1)  # [B]
            return logits.gather(2, predicted[:, None, None].expand(-1, logits.shape[1],
                                                                     1))[..., 0]
    else:
        def score(x: Tensor) -> Tensor:
            out = raw(x)  # [B, S, 2]
            return variance_decomposition(out[..., 0], out[..., 1].exp())[uncertainty]

        def members(x: Tensor) -> Tensor:
            return raw(x)[..., 0]
    return RowUncertainty(score, int(n_features), True, uncertainty, members, networks,
                          output)


def uncertainty_scale(u: RowUncertainty, x: Tensor, background: Tensor) -> Tensor:
    """``max(u(x), E_b[u(b)]) [B]``, no gradient: what the optimization mask and CLUE
    divide U by, so that their λ means the same for any score (a row's own U alone may be
    near zero, which would blow its gradients up)."""
    with torch.no_grad():
        return torch.maximum(u(x), u(background).mean()).clamp_min(1e-12)
