"""laplace-torch's approximations (the real package) as posteriors uattr can explain."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from uattr import Grad, UABackprop, uncertainty
from uattr.posteriors.laplace import laplace_posterior

laplace = pytest.importorskip("laplace")


def _fitted(subset: str) -> object:
    """A small CNN, trained a few steps on 64 random labelled images, with its Laplace
    approximation fitted (diagonal for all weights, Kronecker for the last layer)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(64, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) * 3).long().clamp(max=2)  # labels the images can tell
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    hessian = "kron" if subset == "last_layer" else "diag"
    la = laplace.Laplace(net, "classification", subset_of_weights=subset,
                         hessian_structure=hessian)
    la.fit(DataLoader(TensorDataset(x, y), batch_size=32))
    return la


@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_a_laplace_posterior_is_the_approximations_own_predictive_with_gradients(subset):
    la = _fitted(subset)
    posterior = laplace_posterior(la, samples=8, seed=5)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    probs = posterior(x)  # [B, S, C]
    reference = la.predictive_samples(x, pred_type="nn", n_samples=8,
                                      generator=torch.Generator().manual_seed(5))  # [S, B, C]
    # the same weight draws: the same probabilities, to float32 rounding
    assert torch.allclose(probs, reference.transpose(0, 1), atol=1e-5)
    assert torch.equal(posterior(x), probs)  # frozen: the same U on every call
    assert float(uncertainty(probs, "epistemic").min()) > 0  # the samples differ
    maps = Grad(posterior, "epistemic").attribute(x)
    alone = torch.cat([Grad(posterior, "epistemic").attribute(x[b : b + 1]) for b in range(5)])
    assert torch.allclose(alone, maps, atol=1e-5 * float(maps.abs().max()))
    # UA-Backprop's completeness holds on it: the map sums to U(x)
    ua = UABackprop(posterior, "epistemic").attribute(x)
    assert torch.allclose(ua.sum((1, 2)), uncertainty(probs, "epistemic"), rtol=1e-4)


def test_laplaces_own_predictive_gets_an_error_that_says_what_to_do():
    la = _fitted("last_layer")
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="laplace-torch's predictive_samples"):
        Grad(lambda images: la.predictive_samples(images, pred_type="nn", n_samples=4)
             .transpose(0, 1)).attribute(x)
    with pytest.raises(ValueError, match=r"fitted laplace\.Laplace"):
        laplace_posterior(object())
    unfitted = laplace.Laplace(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), "classification",
                               subset_of_weights="all", hessian_structure="diag")
    with pytest.raises(ValueError, match="fit it first"):
        laplace_posterior(unfitted)
