"""CLUE for rows: with a VAE that is the identity, CLUE is a descent on the row itself and
moves only the feature the uncertainty depends on; a fitted VAE reconstructs rows."""

import numpy as np
import pytest
import torch

from uattr.tabular import RowUncertainty, attribute_rows, row_uncertainty
from uattr.tabular.clue import RowVAE, row_clue, train_row_vae


class IdentityVAE(RowVAE):
    """``encode(x) = (x, 0)``, ``decode(z) = z``, unit std: CLUE then moves the row."""

    def __init__(self, features: int) -> None:
        super().__init__(features, latent=features)

    def encode(self, x):
        return x.to(self.mean.dtype), torch.zeros_like(x, dtype=self.mean.dtype)

    def decode(self, z):
        return z


def test_clue_moves_only_the_feature_the_uncertainty_depends_on():
    u = RowUncertainty(lambda x: 0.05 + x[:, 2] ** 2, 4, differentiable=True)
    x = torch.tensor([[1.0, -2.0, 1.5, 0.5], [0.3, 1.0, -1.0, 2.0]], dtype=torch.float64)
    phi, counterfactual = row_clue(u, IdentityVAE(4).double(), x,
                                   torch.zeros(3, 4, dtype=torch.float64), lam_x=0.1,
                                   steps=300, lr=0.05)
    # x2 goes (nearly) to 0, where U is least; the others stay: the L1 term holds them
    assert (counterfactual[:, 2].abs() < 0.2).all(), counterfactual
    assert (phi[:, [0, 1, 3]] < 0.05).all() and (phi[:, 2] > 0.8).all(), phi
    assert (u(counterfactual) < u(x)).all()


def test_a_fitted_vae_reconstructs_independent_features():
    # with a likelihood std of 1 a VAE of standardised independent features would encode
    # nothing (every reconstruction the mean, error ≈ 0.8 std); 0.3 keeps them
    x = np.random.default_rng(0).normal(size=(1000, 5)) * [1, 2, 3, 4, 5] + 7
    vae = train_row_vae(x, epochs=300, seed=0)
    rows = torch.tensor(x[:200], dtype=torch.float32)
    with torch.no_grad():
        error = (vae.decode(vae.encode(rows)[0]) - rows).abs() / vae.std
    assert error.mean() < 0.3, error.mean(0)


def test_clue_needs_a_vae_and_gradients():
    u = RowUncertainty(lambda x: x[:, 0] ** 2, 2, differentiable=True)
    with pytest.raises(ValueError, match="vae"):
        attribute_rows(u, torch.zeros(1, 2), "clue", background=torch.zeros(2, 2))
    forest_like = row_uncertainty(lambda rows: rows[:, 0], n_features=2)
    with pytest.raises(ValueError, match="differentiable"):
        row_clue(forest_like, IdentityVAE(2), torch.zeros(1, 2), torch.zeros(2, 2))
