"""A model trained on normalised inputs, explained in image space through ``normalize``."""

import pytest
import torch
from torch import nn

from uattr import Grad, IntegratedGradients, OptimizationUA, as_posterior, uncertainty

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _members(seed: int = 0) -> list[nn.Module]:
    """Small colour CNNs whose first convolution has no padding (so that folding the
    normalisation into it is exact at the borders too)."""
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 10 * 10, 5)).eval() for _ in range(3)]


def _folded(member: nn.Sequential) -> nn.Sequential:
    """The same network taking [0, 1] images: the normalisation folded into its first
    convolution, W' = W / std (per input channel), b' = b − Σ W · mean / std."""
    conv = member[0]
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    folded = nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        folded.weight.copy_(conv.weight / std[None, :, None, None])
        folded.bias.copy_(conv.bias - (conv.weight * (mean / std)[None, :, None, None])
                          .sum((1, 2, 3)))
    return nn.Sequential(folded, *list(member)[1:]).eval()


def test_normalize_gives_the_maps_of_the_model_with_the_normalisation_folded_in():
    members = _members()
    normalised = as_posterior(members, normalize=(MEAN, STD))
    folded = as_posterior([_folded(m) for m in members])
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    u_norm, u_fold = uncertainty(normalised(x)), uncertainty(folded(x))
    # float32 sums of 27 products per pixel: a few ulps of U
    assert torch.allclose(u_norm, u_fold, rtol=1e-5, atol=1e-6)
    # and the model does see normalised inputs: without the transform U differs
    assert not torch.allclose(uncertainty(as_posterior(members)(x)), u_norm, atol=1e-3)
    for make, rtol in ((lambda p: Grad(p), 1e-4), (lambda p: IntegratedGradients(p), 1e-4),
                       (lambda p: OptimizationUA(p, max_steps=40, seed=0), 1e-3)):
        a, b = make(normalised).attribute(x), make(folded).attribute(x)
        scale = float(b.abs().max())
        assert scale > 0
        assert torch.allclose(a, b, rtol=0, atol=rtol * scale), type(make(folded)).__name__


def test_preprocess_takes_any_transform_and_bad_settings_are_named():
    members = _members(seed=2)
    double = as_posterior(members, preprocess=lambda x: 2 * x)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(double(x), as_posterior(members)(2 * x))
    with pytest.raises(ValueError, match="normalize and preprocess both"):
        as_posterior(members, normalize=(MEAN, STD), preprocess=lambda x: x)
    with pytest.raises(ValueError, match="one value per channel"):
        as_posterior(members, normalize=(MEAN, STD[:2]))
    with pytest.raises(ValueError, match="std must be > 0"):
        as_posterior(members, normalize=(MEAN, (0.2, 0.0, 0.2)))
    with pytest.raises(ValueError, match="normalize must be \\(mean, std\\)"):
        as_posterior(members, normalize=MEAN)
    grey = torch.rand(2, 1, 12, 12)
    with pytest.raises(ValueError, match="normalize has 3 channels"):
        as_posterior(members, normalize=(MEAN, STD))(grey)
    with pytest.raises(ValueError, match="is a Posterior already"):
        as_posterior(as_posterior(members), normalize=(MEAN, STD))
