"""Images whose channel count (or size) the posterior cannot take: a ValueError naming
``x`` from every method family, before any of the method's own work, instead of torch's
RuntimeError about weight shapes from deep inside it."""

import pytest
import torch
from torch import nn

from tests._models import tiny_cnn_members, tiny_vae
from uattr import (
    CLUE,
    LIME,
    DeltaCLUE,
    FixedMaskKernelSHAP,
    FullGrad,
    Grad,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
    as_posterior,
)
from uattr.posteriors.passes import PassCounter

# one method of each family (and every way into the posterior: forward only, gradients,
# hooks, a VAE's decoder)
_FAMILIES = {
    "optimization": lambda p: OptimizationUA(p, max_steps=5),
    "gradient": Grad,
    "gradient (sampled)": lambda p: SmoothGrad(p, n_samples=4),
    "gradient (path)": lambda p: IntegratedGradients(p, n_steps=4),
    "propagation": UABackprop,
    "fullgrad": FullGrad,
    "perturbation (occlusion)": Occlusion,
    "perturbation (kernel shap)": lambda p: KernelSHAP(p, n_samples=8),
    "perturbation (fixed masks)": lambda p: FixedMaskKernelSHAP(p, n_perturbations=8),
    "perturbation (lime)": lambda p: LIME(p, n_samples=8),
    "generative": lambda p: CLUE(p, tiny_vae((3, 12, 12)), max_steps=3),
    "generative (delta)": lambda p: DeltaCLUE(p, tiny_vae((3, 12, 12)), max_steps=3),
}


@pytest.mark.parametrize("family", list(_FAMILIES))
def test_a_grey_posterior_given_colour_images_names_x(family):
    posterior = as_posterior(tiny_cnn_members(in_channels=1, seed=1))
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^x: the posterior cannot take images of shape "
                                         r"\[C, H, W\] = \[3, 12, 12\] \(3 channels\).*"
                                         r"x\.mean\(1, keepdim=True\)"):
        _FAMILIES[family](posterior).attribute(x)


def test_a_colour_posterior_given_grey_images_names_x_and_the_fix():
    posterior = as_posterior(tiny_cnn_members(in_channels=3, seed=1))
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"\(1 channel\).*x\.expand\(-1, 3, -1, -1\)"):
        Grad(posterior).attribute(x)
    maps = Grad(posterior).attribute(x.expand(-1, 3, -1, -1))  # the fix it names works
    assert maps.abs().sum() > 0


def test_a_fixed_size_network_given_another_size_names_x():
    member = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    posterior = as_posterior([member])
    with pytest.raises(ValueError, match=r"^x: the posterior cannot take images of shape "
                                         r"\[C, H, W\] = \[3, 12, 12\]"):
        Occlusion(posterior).attribute(torch.rand(1, 3, 12, 12))


def test_the_shape_check_is_one_uncounted_pass_per_shape():
    posterior = as_posterior(tiny_cnn_members(in_channels=1, seed=1))
    method = Grad(posterior)
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    with PassCounter(posterior) as count:
        method.attribute(x)
    assert count.forward == 3  # the check's passes are not the method's
    calls = []
    posterior.register_forward_hook(lambda *_: calls.append(1))
    method.attribute(x)
    assert len(calls) == 1  # the same shape again: no check pass, only the method's
    method.attribute(x[:, :, :10, :10])
    assert len(calls) == 3  # a new shape: one check pass, then the method's
