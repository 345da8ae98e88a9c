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
