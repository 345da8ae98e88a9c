"""Any stochastic network frozen into S samples: bayesian-torch's layers (the real package)
and a network that draws from torch's global generator."""


import pytest
import torch
from torch import nn

from uattr import (
    FullGrad,
    Grad,
    GuidedBackprop,
    OptimizationUA,
    StochasticPosterior,
    uncertainty,
)

bayesian = pytest.importorskip("bayesian_torch.models.dnn_to_bnn")


def _bayesian(kind: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                        nn.Flatten(), nn.Linear(64, 5))
    bayesian.dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0,
                              "posterior_rho_init": -2.0, "type": kind,
                              "moped_enable": False})
    return net.eval()


class _OwnNoise(nn.Module):
    """Noise from the global generator twice: on the input and by dropout left on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 10 * 10, 16), nn.ReLU(),
                                 nn.Dropout(0.3), nn.Linear(16, 5)).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.1 * torch.randn_like(x))


NETWORKS = {"Reparameterization": lambda: _bayesian("Reparameterization"),
            "Flipout": lambda: _bayesian("Flipout"), "own noise": _OwnNoise}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_stochastic_network_frozen_gives_one_u_alone_or_in_a_batch(name):
    model = NETWORKS[name]()
    x = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    posterior = StochasticPosterior(model, samples=6, seed=3)
    torch.manual_seed(123)
    probs = posterior(x)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the caller's random state is untouched
    assert torch.equal(posterior(x), probs)  # the same U on every call
    alone = torch.cat([posterior(x[b : b + 1]) for b in range(4)])
    assert torch.allclose(alone, probs, atol=1e-6)  # and the same alone as in the batch
    assert float(probs.std(1).mean()) > 1e-3  # the samples do differ
    other = StochasticPosterior(model, samples=6, seed=4)(x)
    assert not torch.allclose(other, probs, atol=1e-4)
    # unfrozen, two calls of the network itself differ: that is what is frozen
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
    def draws(images: range) -> dict:  # the optimisation: one generator per image
        return {"generator": [torch.Generator().manual_seed(b) for b in images]}

    for method, extra in ((Grad(posterior), lambda _: {}),
                          (OptimizationUA(posterior, max_steps=30, seed=0), draws)):
        batch = method.attribute(x, **extra(range(4)))
        single = torch.cat([method.attribute(x[b : b + 1], **extra(range(b, b + 1)))
                            for b in range(4)])
        scale = float(batch.abs().max())
        # Grad: one float32 backward; the optimisation: 30 Adam steps on the same draws
        assert torch.allclose(single, batch, atol=1e-3 * scale), type(method).__name__
    assert torch.isfinite(uncertainty(probs, "epistemic")).all()


def test_methods_that_hook_layers_refuse_a_vmapped_network():
    posterior = StochasticPosterior(_bayesian("Reparameterization"), samples=3)
    x = torch.rand(2, 3, 10, 10)
    for method in (FullGrad(posterior), GuidedBackprop(posterior)):
        with pytest.raises(ValueError, match="StochasticPosterior runs under"):
            method.attribute(x)
