import math

import pytest
import torch

from tests._models import SpotPosterior
from uattr import Grad


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
    from tests._models import tiny_cnn_members
    from uattr import IntegratedGradients, as_posterior, uncertainty

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


def _spot_derivative(v, kappa):
    """dU/ds of SpotPosterior at spot value(s) v (tensor)."""
    p = torch.sigmoid(kappa * (1 - v))
    return torch.log((1 - p) / p) * p * (1 - p) * -kappa


def test_smoothgrad_averages_the_analytic_derivative_over_its_own_noise():
    from uattr import SmoothGrad

    kappa, s, n = 6.0, 0.8, 50
    x = torch.zeros(2, 1, 5, 5)
    x[:, 0, 2, 3] = s
    maps = SmoothGrad(SpotPosterior((2, 3), kappa=kappa), n_samples=n, stdev=0.1,
                      seed=4).attribute(x)
    noise = torch.randn((2, n, 1, 5, 5), generator=torch.Generator().manual_seed(4)) * 0.1
    expected = _spot_derivative(s + noise[:, :, 0, 2, 3], kappa).mean(1).abs()  # [2]
    torch.testing.assert_close(maps[:, 2, 3], expected, rtol=1e-4, atol=1e-7)
    maps[:, 2, 3] = 0
    assert maps.abs().max().item() == 0.0


def test_smoothgrad_without_noise_is_grad_and_is_batch_invariant_per_image():
    from tests._models import tiny_cnn_members
    from uattr import SmoothGrad, as_posterior

    posterior = as_posterior(tiny_cnn_members(members=2, seed=3))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(SmoothGrad(posterior, stdev=0.0, n_samples=3).attribute(x),
                               Grad(posterior).attribute(x), rtol=1e-5, atol=1e-8)
    method = SmoothGrad(posterior, n_samples=20)
    together = method.attribute(x, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    alone = method.attribute(x[2:], generator=[torch.Generator().manual_seed(2)])
    torch.testing.assert_close(together[2:], alone, rtol=1e-5, atol=1e-8)


class _ReluSpot(torch.nn.Module):
    """One member: h = ReLU(x at (1, 1)), class-0 logit ``sign·κ·(1 - h)`` or ``κ·h``."""

    def __init__(self, shifted: bool) -> None:
        super().__init__()
        self.relu = torch.nn.ReLU()
        self.shifted = shifted

    def forward(self, x):
        h = self.relu(x[:, 0, 1, 1])
        z = 4.0 * (1 - h) if self.shifted else 4.0 * h
        return torch.stack([z, torch.zeros_like(z)], -1)


@pytest.mark.parametrize("shifted", [True, False])
def test_guided_backprop_passes_back_only_positive_signals_through_relus(shifted):
    from uattr import GuidedBackprop, as_posterior

    posterior = as_posterior([_ReluSpot(shifted)])
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 0.4
    guided = GuidedBackprop(posterior).attribute(x)
    plain = Grad(posterior).attribute(x)
    assert plain[0, 1, 1] > 0
    # z = 4(1 - h): U rises with h (dU/dh > 0), the signal passes and equals the gradient;
    # z = 4h: U falls with h (dU/dh < 0), the ReLU stops it
    expected = plain[0, 1, 1].item() if shifted else 0.0
    assert guided[0, 1, 1].item() == pytest.approx(expected, rel=1e-6)


def test_blur_ig_is_complete_along_the_blur_path():
    from tests._models import tiny_cnn_members
    from uattr import BlurIG, as_posterior, uncertainty
    from uattr.ops.perturb import gaussian_blur

    posterior = as_posterior(tiny_cnn_members(members=3, seed=5))
    x = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    method = BlurIG(posterior, n_steps=200, sigma_max=2.0)
    sums = method.attribute_signed(x).sum((1, 2, 3))
    start = gaussian_blur(x, 2.0, radius=6)
    gap = uncertainty(posterior(x), "total") - uncertainty(posterior(start), "total")
    torch.testing.assert_close(sums, gap.detach(), atol=2e-4, rtol=2e-3)
    torch.testing.assert_close(method.attribute(x)[1:2], method.attribute(x[1:2]),
                               atol=1e-6, rtol=1e-5)


def test_blur_ig_gives_a_flat_image_nothing():
    from uattr import BlurIG

    x = torch.full((1, 1, 6, 6), 0.5)  # blurring a constant image changes nothing
    maps = BlurIG(SpotPosterior((2, 2))).attribute(x)
    assert maps.abs().max().item() < 1e-6  # float rounding of the blur only
