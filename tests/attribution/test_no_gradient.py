"""A posterior whose output carries no gradient (run under torch.no_grad, or detached,
as laplace-torch's predictive samples are) gets a ValueError that names the cause and
the fix from every method that needs a gradient; the perturbation methods take it."""

import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members, tiny_vae
from uattr import (
    CLUE,
    LIME,
    BlurIG,
    FixedMaskKernelSHAP,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
    as_posterior,
)


class _NoGradient(nn.Module):
    """A member that computes its logits without gradients, as a predict() helper does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)


def _posteriors():
    members = tiny_cnn_members(members=3, seed=1)
    return (as_posterior([_NoGradient(m) for m in members]),
            as_posterior(members))


NEEDS_GRADIENT = {
    "Grad": lambda p: Grad(p),
    "SmoothGrad": lambda p: SmoothGrad(p, n_samples=4),
    "IntegratedGradients": lambda p: IntegratedGradients(p, n_steps=4),
    "BlurIG": lambda p: BlurIG(p, n_steps=4),
    "FullGrad": lambda p: FullGrad(p),
    "GuidedBackprop": lambda p: GuidedBackprop(p),
    "UABackprop": lambda p: UABackprop(p),
    "OptimizationUA": lambda p: OptimizationUA(p, max_steps=5),
    "CLUE": lambda p: CLUE(p, tiny_vae(), max_steps=5),
}


@pytest.mark.parametrize("name", sorted(NEEDS_GRADIENT))
def test_a_method_that_needs_a_gradient_names_the_cause(name):
    detached, _ = _posteriors()
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"torch\.no_grad\(\) or detaches its output"):
        NEEDS_GRADIENT[name](detached).attribute(x)


@pytest.mark.parametrize("make", [lambda p: Occlusion(p, window=4, stride=4),
                                  lambda p: KernelSHAP(p, n_samples=40, seed=0),
                                  lambda p: FixedMaskKernelSHAP(p, n_perturbations=40, seed=0),
                                  lambda p: LIME(p, n_samples=40, seed=0)],
                         ids=["Occlusion", "KernelSHAP", "FixedMaskKernelSHAP", "LIME"])
def test_a_perturbation_method_needs_no_gradient(make):
    """The same maps from the detached posterior as from the plain one."""
    detached, plain = _posteriors()
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(make(detached).attribute(x), make(plain).attribute(x))


class _FreshDropout(nn.Module):
    """Three passes of a network whose dropout is left in training mode: new noise on
    every call, stacked as [B, S, C]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(144, 16), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Linear(16, 3)).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.net(x) for _ in range(3)], 1)


def test_a_posterior_that_draws_fresh_noise_on_every_call_is_named_once():
    from uattr.attribution.base import RandomPosteriorWarning
    from uattr.posteriors.passes import PassCounter

    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    method = Grad(as_posterior(_FreshDropout()))
    with pytest.warns(RandomPosteriorWarning, match="SampledPosterior"):
        method.attribute(x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomPosteriorWarning)
        method.attribute(x)  # checked once per method
        _, plain = _posteriors()
        fresh = Grad(plain)
        with PassCounter(plain) as count:
            fresh.attribute(x)  # a deterministic posterior: no warning
    assert count.forward == 2 and count.backward == 2  # the check's passes are not counted
