import math

import pytest
import torch

from uattr import Grad

from ._models import SpotPosterior


def test_grad_is_the_analytic_derivative_at_the_spot_and_zero_elsewhere():
    kappa, s = 6.0, 0.8
    x = torch.zeros(2, 1, 5, 5)
    x[:, 0, 2, 3] = s
    maps = Grad(SpotPosterior((2, 3), kappa=kappa)).attribute(x)
    p = 1 / (1 + math.exp(-kappa * (1 - s)))  # class-0 probability of both members
    # U = H(p) = -p log p - (1-p) log(1-p);  dU/ds = log((1-p)/p) · p(1-p) · (-κ)
    expected = abs(math.log((1 - p) / p) * p * (1 - p) * -kappa)
    assert maps[:, 2, 3].tolist() == pytest.approx([expected] * 2, rel=1e-5)
    maps[:, 2, 3] = 0
    assert maps.abs().max().item() == 0.0


def test_integrated_gradients_are_complete_on_a_real_cnn_ensemble():
    from uattr import IntegratedGradients, as_posterior, uncertainty

    from ._models import tiny_cnn_members

    posterior = as_posterior(tiny_cnn_members(members=3, seed=2))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ig = IntegratedGradients(posterior, "total", n_steps=100)
    sums = ig.attribute_signed(x).sum((1, 2, 3))
    gap = uncertainty(posterior(x), "total") - uncertainty(posterior(torch.ones_like(x)), "total")
    torch.testing.assert_close(sums, gap.detach(), atol=1e-4, rtol=1e-3)
    # the map of one image does not depend on the rest of the batch
    torch.testing.assert_close(ig.attribute(x)[2:3], ig.attribute(x[2:3]), atol=1e-6, rtol=1e-5)


def test_integrated_gradients_on_the_spot_posterior_by_hand():
    from uattr import IntegratedGradients

    kappa, s = 6.0, 0.3
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 3] = s
    maps = IntegratedGradients(SpotPosterior((2, 3), kappa=kappa), reference=1.0).attribute(x)

    def entropy(v):
        p = 1 / (1 + math.exp(-kappa * (1 - v)))
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    # only the spot moves U, so it carries all of U(x) - U(white) (U(white) = log 2)
    assert maps[0, 2, 3].item() == pytest.approx(abs(entropy(s) - math.log(2)), rel=1e-4)
    maps[0, 2, 3] = 0
    assert maps.abs().max().item() == 0.0
