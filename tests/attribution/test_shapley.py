"""Kernel SHAP against exact Shapley values (Captum's ShapleyValues enumerates every
coalition) and against Captum's KernelShap where both are exact (a linear value)."""

import math

import pytest
import torch
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import ShapleyValues

from tests._models import bright_textured_square, colour_region_ensemble
from tests.attribution.test_perturbation import _first_prob, _probe_setup
from uattr import KernelSHAP, as_posterior, segment, uncertainty_fn
from uattr.ops.perturb import blurred_reference

# float32 uncertainties (about 7 significant digits) enter 2^M differences of a weighted
# least squares solved in float64: the Shapley values keep about 5 of those digits
# relative to the largest uncertainty.
_DIGITS = 1e-5


def _segment_values(maps, segments):
    """The value of each segment ``[B, K]`` of maps that are constant per segment."""
    k = int(segments.max()) + 1
    return torch.stack([maps[segments == j].view(maps.shape[0], -1)[:, 0] for j in range(k)], 1)


def _colour_case(seed=0, size=9):
    """A colour image whose uncertainty depends non-linearly on one bright square, the
    posterior, and 3×3 cells as features (9 on a 9×9 image)."""
    x, region = bright_textured_square(size, seed=seed)
    posterior = as_posterior(colour_region_ensemble(size, region))
    return posterior, x, segment.grid(x, cell=3)


def test_enumerated_kernel_shap_equals_exact_shapley_values_of_a_nonlinear_uncertainty():
    # U depends non-linearly on the energy of a square that four of the five features
    # (3×3 cells of a 9×9 colour image, numbered modulo 5) cover in part
    x, region = bright_textured_square(9)
    posterior = as_posterior(colour_region_ensemble(9, region))
    segments = segment.grid(x, cell=3) % 5  # 5 features: 120 orderings for the reference
    maps = KernelSHAP(posterior).attribute(x, segments=segments)  # 30 coalitions: exact
    ours = _segment_values(maps, segments)  # [2, 5]
    reference = ShapleyValues(uncertainty_fn(posterior))
    for b in range(2):
        # Captum gives every element of a feature group the group's Shapley value
        exact = reference.attribute(x[b:b + 1], baselines=blurred_reference(x[b:b + 1]),
                                    feature_mask=segments[b][None, None].repeat(1, 3, 1, 1),
                                    perturbations_per_eval=64)
        expected = _segment_values(exact[:, 0], segments[b:b + 1])
        scale = float(uncertainty_fn(posterior)(x[b:b + 1]).detach().abs().max())
        torch.testing.assert_close(ours[b:b + 1], expected, atol=_DIGITS * scale, rtol=0)
    assert ours.abs().max() > 0.05  # not a flat map
    assert ours[:, 3].abs().max() < _DIGITS * 1e-3  # the feature off the square: nothing


def test_sampled_kernel_shap_is_efficient_whatever_the_samples():
    posterior, x, segments = _colour_case(seed=1)
    maps = KernelSHAP(posterior, n_samples=40, seed=3).attribute(x, segments=segments)
    u = uncertainty_fn(posterior)
    gain = u(x) - u(blurred_reference(x))  # [2]
    totals = _segment_values(maps, segments).sum(1)
    torch.testing.assert_close(totals, gain.detach(), atol=_DIGITS * float(u(x).detach().max()),
                               rtol=0)
    assert gain.abs().min() > 0.05  # a real gain to share


def test_sampled_kernel_shap_approaches_the_exact_values():
    posterior, x, segments = _colour_case(seed=2)
    exact = _segment_values(KernelSHAP(posterior, n_samples=2 ** 9).attribute(
        x, segments=segments), segments)
    sampled = _segment_values(KernelSHAP(posterior, n_samples=500, seed=0).attribute(
        x, segments=segments), segments)
    # 500 of 510 coalitions drawn from the kernel: a Monte-Carlo estimate, within a tenth
    # of the largest value (about 3/sqrt(500) of the spread of the values)
    assert (sampled - exact).abs().max() < 0.1 * exact.abs().max()
    assert (sampled - exact).abs().max() > 0  # it did sample


def test_kernel_shap_equals_captum_kernel_shap_on_a_linear_value():
    """With U linear in the blurred segments every weighted regression with the efficiency
    constraint is exact: uattr's (sampled and enumerated), Captum's and the truth agree."""
    x, quadrants, posterior, truth, probes = _probe_setup()
    ours_sampled = KernelSHAP(posterior, _first_prob, n_samples=8, seed=1)  # 8 < 2^4 - 2
    ours_exact = KernelSHAP(posterior, _first_prob)
    captum = CaptumKernelShap(lambda images: _first_prob(posterior(images)))
    for method in (ours_sampled, ours_exact):
        maps = method.attribute(x, segments=quadrants)
        recovered = torch.stack([maps[:, i, j] for i, j in probes], 1)  # [B, 4]
        torch.testing.assert_close(recovered, truth, atol=1e-6, rtol=1e-5)
    theirs = torch.cat([captum.attribute(x[b:b + 1], baselines=blurred_reference(x[b:b + 1]),
                                         feature_mask=quadrants[b][None, None], n_samples=60)
                        for b in range(2)])[:, 0]
    recovered = torch.stack([theirs[:, i, j] for i, j in probes], 1)
    torch.testing.assert_close(recovered, truth, atol=1e-5, rtol=1e-4)


def test_kernel_shap_is_batch_invariant_with_images_of_different_feature_counts():
    posterior, x, _ = _colour_case(seed=4, size=12)
    segments = torch.stack([segment.grid(x[:1], cell=3)[0],  # 16 segments: sampled
                            segment.grid(x[:1], cell=6)[0]])  # 4 segments: enumerated
    method = KernelSHAP(posterior, n_samples=100)
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    together = method.attribute(x, segments=segments, generator=generators)
    for b in range(2):
        alone = method.attribute(x[b:b + 1], segments=segments[b:b + 1],
                                 generator=[torch.Generator().manual_seed(b)])
        torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-4, atol=1e-6)


def test_kernel_shap_per_pixel_keeps_efficiency_and_of_one_segment_gives_the_whole_gain():
    posterior, x, _ = _colour_case(seed=5, size=6)
    u = uncertainty_fn(posterior)
    gain = u(x) - u(blurred_reference(x))
    maps = KernelSHAP(posterior, n_samples=64).attribute(x)  # 36 pixels, sampled
    torch.testing.assert_close(maps.sum((1, 2)), gain, atol=_DIGITS * float(u(x).detach().max()),
                               rtol=0)
    whole = KernelSHAP(posterior).attribute(x, segments=torch.zeros(2, 6, 6, dtype=torch.long))
    torch.testing.assert_close(whole[:, 0, 0], gain, atol=_DIGITS * float(u(x).detach().max()),
                               rtol=0)


def test_kernel_shap_refuses_too_few_samples():
    posterior, _, _ = _colour_case()
    with pytest.raises(ValueError, match="n_samples"):
        KernelSHAP(posterior, n_samples=1)


def test_the_shapley_kernel_weights_of_an_enumeration():
    from uattr.attribution.shapley import shapley_kernel_coalitions

    counts = torch.tensor([4])
    valid = torch.ones(1, 4, dtype=torch.bool)
    kept, weights = shapley_kernel_coalitions(counts, valid, 14, torch.Generator())
    assert kept.shape[1] == 14 and len({tuple(r.tolist()) for r in kept[0]}) == 14
    sizes = kept[0].sum(1)
    expected = torch.tensor([3 / (math.comb(4, int(s)) * int(s) * (4 - int(s))) for s in sizes],
                            dtype=torch.float64)
    torch.testing.assert_close(weights[0], expected)
