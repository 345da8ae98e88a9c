"""Feature flipping: removing features in attribution order gives the curve computed by
hand on an additive score, and the best order takes the uncertainty away first."""

import pytest
import torch

from uattr.tabular import RowUncertainty, shapley_values
from uattr.tabular.faithfulness import deletion_curves, flipping_scores

A = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)


def additive(x):
    return (x**2 * A).sum(1) + 1.0


def test_the_deletion_curve_of_an_additive_score_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64) * 2
    background = torch.randn(6, 4, generator=g, dtype=torch.float64)
    u = RowUncertainty(additive, 4)
    effect = A * (x**2 - (background**2).mean(0))  # each feature's own share of U
    curves = deletion_curves(u, x, background, effect)
    removed = effect.sort(1, descending=True).values.cumsum(1)  # [B, F]
    expected = torch.cat([additive(x)[:, None], additive(x)[:, None] - removed], 1)
    torch.testing.assert_close(curves, expected, atol=1e-12, rtol=0)
    assert curves[:, -1].allclose(additive(background).mean().expand(5), atol=1e-12)
    # Shapley values of an additive score are its effects: the same curve
    torch.testing.assert_close(deletion_curves(u, x, background,
                                               shapley_values(u, x, background)), curves,
                               atol=1e-12, rtol=0)
    score = flipping_scores(curves)
    torch.testing.assert_close(score, (removed).mean(1), atol=1e-12, rtol=0)
    reverse = flipping_scores(deletion_curves(u, x, background, -effect))
    assert (score >= reverse).all() and (score > reverse).any()


def test_phi_must_match_the_rows():
    u = RowUncertainty(additive, 4)
    with pytest.raises(ValueError, match="phi must have the rows' shape"):
        deletion_curves(u, torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 3))


def test_a_score_that_returns_nan_is_refused():
    u = RowUncertainty(lambda x: x[:, 0] / x[:, 1], 2)
    with pytest.raises(ValueError, match=r"NaN or inf for rows \[1\]"):
        u(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
