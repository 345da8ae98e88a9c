"""CovGI on images: the covariance over members of their Gradient×Input maps, checked
against the derivative written by hand for members that are linear in the image."""

import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members
from uattr import as_posterior
from uattr.attribution import CovGI


class LinearMember(nn.Module):
    """Logits ``(Σ_p W_p x_p, 0)`` of a 1-channel image, so that with ``q = P(class 0)``
    ``∂ log q / ∂x_p = (1 − q) W_p`` and ``∂ log(1 − q) / ∂x_p = −q W_p``."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, 0] * self.weights).sum((1, 2))
        return torch.stack([z, torch.zeros_like(z)], 1)


def test_covgi_is_the_hand_derived_covariance_and_finds_where_members_differ():
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(6, 6, generator=g) * 0.1
    weights = []
    for s in range(4):  # the members differ only on the 2×2 region at rows 1-2, cols 3-4
        w = shared.clone()
        w[1:3, 3:5] = torch.randn(2, 2, generator=g) * 2.0 + s
        weights.append(w)
    posterior = as_posterior([LinearMember(w) for w in weights])
    x = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float32)
    maps = CovGI(posterior).attribute(x)

    stacked = torch.stack(weights)  # [S, H, W]
    z = torch.einsum("bhw,shw->bs", x[:, 0], stacked)  # [B, S]
    q = torch.sigmoid(z)  # P(class 0) of each member
    first = q.mean(1) >= 0.5  # the class the ensemble predicts
    slope = torch.where(first[:, None], 1 - q, -q)  # d log P(predicted) / dz
    relevance = slope[..., None, None] * stacked[None] * x[:, :1]  # [B, S, H, W]
    centred = relevance - relevance.mean(1, keepdim=True)
    expected = (centred * centred.sum((2, 3), keepdim=True)).mean(1)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-4)
    # the four pixels (1/9 of the image) where the members disagree hold most of the map
    region = torch.zeros(6, 6, dtype=torch.bool)
    region[1:3, 3:5] = True
    share = maps.abs()[:, region].sum(1) / maps.abs().sum((1, 2))
    assert (share > 0.5).all(), share  # 0.69-0.76 here


def test_covgi_of_an_image_is_the_same_alone_and_in_a_batch():
    posterior = as_posterior(tiny_cnn_members(members=3, seed=1))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    method = CovGI(posterior)
    torch.testing.assert_close(method.attribute(x)[1:2], method.attribute(x[1:2]),
                               atol=1e-7, rtol=1e-5)


def test_covgi_needs_two_samples():
    posterior = as_posterior(tiny_cnn_members(members=1, seed=1))
    with pytest.raises(ValueError, match="at least 2"):
        CovGI(posterior).attribute(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("size", [(9, 9), (16, 12)])
def test_covgi_on_colour_images_of_several_sizes_is_not_flat(size):
    posterior = as_posterior(tiny_cnn_members(in_channels=3, members=3, seed=4))
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(5))
    maps = CovGI(posterior).attribute(x)
    assert maps.shape == (2, *size)
    assert (maps.flatten(1).std(1) > 0).all()
    # the map sums to the variance of the members' summed relevance, never negative
    assert (maps.sum((1, 2)) >= 0).all()
