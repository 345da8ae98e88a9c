"""Tabular data sets whose uncertainty has a known cause, for the tabular benchmark.

Eight features ``x0..x7``, standard normal unless said otherwise; the label follows the
signal ``x0 + x1``. Each set plants the cause of the uncertainty of its test rows in one
feature (per row), by construction:

- ``noise`` (aleatoric): the label is ``1[x0 + x1 + s(x3) ε > 0]`` with
  ``s(z) = 0.1 + 3 σ(4 (z − 1))``: labels are noisy where ``x3`` is large. Test rows have
  ``x3`` in [1.5, 2.5] and lie away from the boundary (``|x0 + x1|`` in [1, 2]), so that
  their uncertainty comes from ``x3`` and not from the signal.
- ``shift`` (epistemic): the label is ``1[x0 + x1 + 1.5 x5 x2 > 0]``, with ``x5`` uniform
  in [−1, 1] in training; test rows have ``x5`` in [2.5, 3.5], outside the training
  range, where members extrapolate differently. (Trees extrapolate flat: a forest may not
  be unsure there at all; the table says how unsure each model is.)
- ``two-causes`` (aleatoric, with distractors): noise grows with ``max(x3, x6)``;
  ``x4 = x3 + 0.3 ε`` and ``x7 = x6 + 0.3 ε`` are correlated with the causes but never
  used. Each test row has one of ``x3``, ``x6`` in [1.5, 2.5] (chosen per row) and the
  other below 0.5; its cause is that one.

All draws come from NumPy's seeded PCG64 in float64: the same rows on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SETS", "SyntheticSet", "make_set"]

FEATURES = 8
SETS = ("noise", "shift", "two-causes")
KINDS = {"noise": "aleatoric", "shift": "epistemic", "two-causes": "aleatoric"}


@dataclass(frozen=True)
class SyntheticSet:
    """Training rows and labels, test rows and each test row's planted cause."""

    name: str
    kind: str
    x_train: np.ndarray  # [N, F]
    y_train: np.ndarray  # [N]
    x_test: np.ndarray  # [n, F]
    causes: np.ndarray  # [n]: the index of the feature that causes each row's uncertainty
    feature_names: list[str]


def _noise_scale(z: np.ndarray) -> np.ndarray:
    return 0.1 + 3.0 / (1.0 + np.exp(-4.0 * (z - 1.0)))


def _away_from_boundary(rows: np.ndarray, rng: np.random.Generator) -> None:
    """Set ``x0, x1`` of each row so that ``|x0 + x1|`` lies in [1, 2] (either side)."""
    n = len(rows)
    margin = rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
    share = rng.uniform(0.3, 0.7, n)
    rows[:, 0], rows[:, 1] = share * margin, (1 - share) * margin


def make_set(name: str, *, n_train: int = 4000, n_test: int = 500,
             seed: int = 0) -> SyntheticSet:
    """The set ``name`` (one of :data:`SETS`), drawn from ``seed``."""
    if name not in SETS:
        raise ValueError(f"name must be one of {SETS}, got {name!r}")
    rng = np.random.default_rng([seed, SETS.index(name)])
    x = rng.normal(size=(n_train, FEATURES))
    test = rng.normal(size=(n_test, FEATURES))
    _away_from_boundary(test, rng)
    if name == "noise":
        y = x[:, 0] + x[:, 1] + _noise_scale(x[:, 3]) * rng.normal(size=n_train) > 0
        test[:, 3] = rng.uniform(1.5, 2.5, n_test)
        causes = np.full(n_test, 3)
    elif name == "shift":
        x[:, 5] = rng.uniform(-1.0, 1.0, n_train)
        y = x[:, 0] + x[:, 1] + 1.5 * x[:, 5] * x[:, 2] > 0
        test[:, 5] = rng.uniform(2.5, 3.5, n_test)
        causes = np.full(n_test, 5)
    else:
        x[:, 4] = x[:, 3] + 0.3 * rng.normal(size=n_train)
        x[:, 7] = x[:, 6] + 0.3 * rng.normal(size=n_train)
        scale = _noise_scale(np.maximum(x[:, 3], x[:, 6]))
        y = x[:, 0] + x[:, 1] + scale * rng.normal(size=n_train) > 0
        causes = np.where(rng.uniform(size=n_test) < 0.5, 3, 6)
        other = np.where(causes == 3, 6, 3)
        rows = np.arange(n_test)
        test[rows, causes] = rng.uniform(1.5, 2.5, n_test)
        test[rows, other] = np.minimum(test[rows, other], rng.uniform(-1.0, 0.5, n_test))
        test[:, 4] = test[:, 3] + 0.3 * rng.normal(size=n_test)
        test[:, 7] = test[:, 6] + 0.3 * rng.normal(size=n_test)
    return SyntheticSet(name, KINDS[name], x, y.astype(np.int64), test, causes,
                        [f"x{i}" for i in range(FEATURES)])
