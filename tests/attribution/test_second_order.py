"""CovGI and CovLRP on images: the covariance over members of their Gradient×Input (or
LRP) maps, checked against the derivative written by hand for members that are linear in
the image, and LRP-0 against Gradient×Input where the two must agree."""

import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members
from uattr import as_posterior
from uattr.attribution import CovGI, CovLRP


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


def test_covgi_runs_each_sample_back_once_and_gives_the_map_of_one_call_per_sample():
    # An ensemble's members and a frozen MC-Dropout's samples run alone (sample_probs):
    # one backward call for all. The same posterior seen as an opaque callable takes one
    # backward call per sample through the shared graph; the maps must agree to float32
    # rounding (the same products, summed in another order).
    from uattr import MCDropout
    from uattr.posteriors.passes import PassCounter

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    dropout = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                            nn.Linear(144, 3))
    for posterior in (as_posterior(tiny_cnn_members(members=3, seed=1)),
                      MCDropout(dropout, samples=4)):
        opaque = as_posterior(lambda images, p=posterior: p(images), output="probs",
                              num_samples=posterior.num_samples)
        assert not hasattr(opaque, "sample_probs")
        alone = CovGI(posterior).attribute(x)
        torch.testing.assert_close(alone, CovGI(opaque).attribute(x), atol=1e-7, rtol=1e-5)
        assert alone.abs().amax() > 1e-4  # members that differ: a map that is not zero
        with PassCounter(posterior) as count:
            CovGI(posterior).attribute(x)
        assert (count.forward / len(x), count.backward / len(x)) == (1, 1)


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


# ------------------------------------------------------------------------------ CovLRP
def _bias_free_cnns(members: int, seed: int) -> list[nn.Module]:
    """ReLU CNNs without biases, with a max-pool and a flatten, on 1×8×8 images."""
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(36, 3, bias=False)).eval()
            for _ in range(members)]


def test_covlrp_with_lrp0_is_the_covariance_of_gradient_times_input_of_the_logit():
    # LRP-0 passes relevance in proportion to each input's contribution a_i w_ij, which on
    # ReLU layers and max-pools is Gradient×Input; without biases the relevance is also
    # complete (below); it also checks that the relevance passes the flatten back to the
    # image's shape
    members = _bias_free_cnns(4, seed=0)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = CovLRP(as_posterior(members), gamma=0, conv_gamma=0).attribute(x)
    with torch.no_grad():
        predicted = torch.stack([m(x) for m in members], 1).softmax(-1).mean(1).argmax(-1)
    relevance, logits = [], []
    for member in members:
        leaf = x.clone().requires_grad_(True)
        logit = member(leaf).gather(1, predicted[:, None])[:, 0]  # [B]
        (grad,) = torch.autograd.grad(logit.sum(), leaf)
        relevance.append((grad * x)[:, 0])
        logits.append(logit.detach())
    relevance = torch.stack(relevance, 1)  # [B, S, H, W]
    centred = relevance - relevance.mean(1, keepdim=True)
    expected = (centred * centred.sum((2, 3), keepdim=True)).mean(1)
    scale = expected.abs().max().item()
    # float32 sums of ~100 products: relative rounding well under 1e-5 of the largest value
    torch.testing.assert_close(maps, expected, atol=1e-5 * scale, rtol=0)
    # complete: the map sums to the variance of the members' logits
    torch.testing.assert_close(maps.sum((1, 2)), torch.stack(logits, 1).var(1, correction=0),
                               atol=1e-5 * scale * 64, rtol=1e-4)


def test_covlrps_gamma_rule_changes_the_map_and_leaves_the_members_alone():
    members = _bias_free_cnns(3, seed=2)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    posterior = as_posterior(members)
    plain = CovLRP(posterior, gamma=0, conv_gamma=0).attribute(x)
    gamma = CovLRP(posterior).attribute(x)  # γ = 0.1 on linear layers, 0.2 on convolutions
    assert (gamma - plain).abs().max() > 1e-3 * plain.abs().max()
    for member, state in zip(members, before, strict=True):
        assert not any(hasattr(m, "rule") for m in member.modules())
        assert isinstance(member[3], nn.Flatten)
        assert all(torch.equal(member.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("size", [(9, 9), (16, 12), (32, 32)])
def test_covlrp_on_colour_images_of_several_sizes_is_not_flat_and_batch_invariant(size):
    posterior = as_posterior(tiny_cnn_members(in_channels=3, members=3, seed=4))
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(5))
    method = CovLRP(posterior)
    maps = method.attribute(x)
    assert maps.shape == (3, *size)
    assert (maps.flatten(1).std(1) > 0).all()
    torch.testing.assert_close(method.attribute(x[1:2]), maps[1:2],
                               atol=1e-6 * maps.abs().max().item(), rtol=1e-5)


def test_covlrp_refuses_what_it_cannot_explain():
    from tests._models import tiny_dropout_cnn
    from uattr import MCDropout

    with pytest.raises(ValueError, match="use CovGI"):
        CovLRP(MCDropout(tiny_dropout_cnn(), samples=4))
    with pytest.raises(ValueError, match="at least 2"):
        CovLRP(as_posterior(tiny_cnn_members(members=1)))
    with pytest.raises(ValueError, match="gamma"):
        CovLRP(as_posterior(tiny_cnn_members(members=2)), gamma=-0.1)
    torch.manual_seed(0)
    gelu = [nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 3))
            for _ in range(2)]
    with pytest.raises(ValueError, match="Captum's LRP"):
        CovLRP(as_posterior(gelu)).attribute(torch.rand(1, 1, 8, 8))


def test_covlrp_passes_an_adaptive_max_pool_and_dropout_as_lrp0_gradient_times_input():
    # the zoo's CNN for images of any size: biases, dropout (off in eval mode) and an
    # adaptive max-pool, which Captum has no rule for and uattr gives a fixed max-pool's
    from uattr.zoo.models import SmallCNN

    torch.manual_seed(6)
    members = [SmallCNN(in_channels=3, num_classes=4, pool_to=3).eval() for _ in range(3)]
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(7))
    maps = CovLRP(as_posterior(members), gamma=0, conv_gamma=0).attribute(x)
    with torch.no_grad():
        predicted = torch.stack([m(x) for m in members], 1).softmax(-1).mean(1).argmax(-1)
    relevance = []
    for member in members:
        leaf = x.clone().requires_grad_(True)
        logit = member(leaf).gather(1, predicted[:, None]).sum()
        (grad,) = torch.autograd.grad(logit, leaf)
        relevance.append((grad * x).sum(1))  # [B, H, W]
    relevance = torch.stack(relevance, 1)
    centred = relevance - relevance.mean(1, keepdim=True)
    expected = (centred * centred.sum((2, 3), keepdim=True)).mean(1)
    # LRP-0 on ReLU layers is Gradient×Input, biases or not: each active unit's relevance
    # over its pre-activation is the gradient that reaches it
    torch.testing.assert_close(maps, expected, atol=1e-5 * expected.abs().max().item(), rtol=0)
    assert maps.shape == (2, 20, 24) and (maps.flatten(1).std(1) > 0).all()


def test_the_passes_of_covgi_and_covlrp_are_counted_where_hooks_cannot_see_them():
    # CovGI: one forward pass and one backward pass (each member runs on its own copy of
    # the images, so one backward call separates their gradients). CovLRP: one forward
    # pass for the predicted class, then LRP through a copy of each member, forward and
    # back, which the posterior's hooks never see: declared as one pass each way.
    from uattr.posteriors.passes import PassCounter

    posterior = as_posterior(tiny_cnn_members(members=3))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for method, forward, backward in ((CovGI(posterior), 1, 1), (CovLRP(posterior), 2, 1)):
        with PassCounter(posterior) as count:
            method.attribute(x)
        assert (count.forward / len(x), count.backward / len(x)) == (forward, backward)
