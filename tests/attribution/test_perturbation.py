import pytest
import torch

from tests._models import SpotPosterior
from uattr import uncertainty
from uattr.attribution.perturbation import Occlusion
from uattr.ops.perturb import blurred_reference


def _spot_image():
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 5:8, 6:9] = 1.0  # a bright blob centred on the spot (6, 7)
    return x


def test_occlusion_matches_a_brute_force_reference_and_peaks_at_the_spot():
    posterior = SpotPosterior((6, 7))
    x = _spot_image()
    maps = Occlusion(posterior, window=5, stride=2).attribute(x)
    # brute force: windows start every 2 px until one reaches the edge (the last one is
    # clipped); blur each, add U(x) - U(x') to its pixels, average where windows overlap
    blurred = blurred_reference(x)
    base = uncertainty(posterior(x), "total")
    total, count = torch.zeros(12, 12), torch.zeros(12, 12)
    for top in (0, 2, 4, 6, 8):
        for left in (0, 2, 4, 6, 8):
            rows, cols = slice(top, top + 5), slice(left, left + 5)
            perturbed = x.clone()
            perturbed[..., rows, cols] = blurred[..., rows, cols]
            total[rows, cols] += (base - uncertainty(posterior(perturbed), "total"))[0]
            count[rows, cols] += 1
    torch.testing.assert_close(maps[0], total / count, rtol=1e-5, atol=1e-7)
    peak = divmod(maps[0].argmax().item(), 12)
    assert abs(peak[0] - 6) <= 2 and abs(peak[1] - 7) <= 2  # within the blob
    assert maps[0].max() > 0.05


def test_occlusion_is_batch_invariant():
    from tests._models import tiny_cnn_members
    from uattr import as_posterior

    posterior = as_posterior(tiny_cnn_members(seed=9))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    method = Occlusion(posterior, perturbations_per_eval=4)
    together = method.attribute(x)
    torch.testing.assert_close(together[1:2], method.attribute(x[1:2]), rtol=1e-5, atol=1e-7)


class _ProbePosterior(torch.nn.Module):
    """q = β + Σ_k α_k x[probe_k]; probabilities [q, 1 - q] (one sample). With the
    uncertainty ``P -> P[:, 0, 0]`` (= q), blurring segment k changes U by exactly
    α_k (x - blur(x))[probe_k]: a known linear function of the segment blurs."""

    def __init__(self, probes, alphas, beta=0.5):
        super().__init__()
        self.probes, self.alphas, self.beta = probes, alphas, beta

    def forward(self, x):
        q = self.beta + sum(a * x[:, 0, i, j] for (i, j), a in zip(self.probes, self.alphas,
                                                                    strict=True))
        return torch.stack([q, 1 - q], -1)[:, None, :]


def _probe_setup():
    from uattr import segment

    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    quadrants = segment.grid(x, cell=4)  # 4 segments; probes well inside each
    probes = [(1, 1), (1, 6), (6, 1), (6, 6)]
    alphas = [0.3, -0.2, 0.0, 0.25]
    delta = x - blurred_reference(x)
    truth = torch.stack([torch.stack([a * delta[b, 0, i, j] for (i, j), a in
                                      zip(probes, alphas, strict=True)]) for b in range(2)])
    return x, quadrants, _ProbePosterior(probes, alphas), truth, probes


def _first_prob(p):
    return p[:, 0, 0]


def test_kernelshap_recovers_known_segment_weights():
    from uattr.attribution.perturbation import FixedMaskKernelSHAP as KernelSHAP

    x, quadrants, posterior, truth, probes = _probe_setup()
    maps = KernelSHAP(posterior, _first_prob, seed=1).attribute(x, segments=quadrants)
    recovered = torch.stack([maps[:, i, j] for i, j in probes], 1)  # [B, 4]
    torch.testing.assert_close(recovered, truth, atol=1e-5, rtol=1e-4)  # exact: no noise


def test_kernelshap_at_pixel_level_finds_the_probe_pixels():
    from uattr.attribution.perturbation import FixedMaskKernelSHAP as KernelSHAP

    x, _, posterior, truth, probes = _probe_setup()
    maps = KernelSHAP(posterior, _first_prob, n_perturbations=600, seed=2).attribute(x)
    recovered = torch.stack([maps[:, i, j] for i, j in probes], 1)
    torch.testing.assert_close(recovered, truth, atol=1e-5, rtol=1e-4)
    for i, j in probes:
        maps[:, i, j] = 0
    assert maps.abs().max() < 1e-5  # every other pixel gets nothing


def test_kernelshap_is_seeded_and_batch_invariant_per_image():
    from tests._models import tiny_cnn_members
    from uattr import as_posterior
    from uattr.attribution.perturbation import FixedMaskKernelSHAP as KernelSHAP

    posterior = as_posterior(tiny_cnn_members(seed=3))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    method = KernelSHAP(posterior, n_perturbations=300)
    together = method.attribute(x, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    alone = method.attribute(x[1:2], generator=[torch.Generator().manual_seed(1)])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-6)
    assert torch.equal(method.attribute(x), method.attribute(x))


def test_lime_recovers_known_segment_weights_up_to_ridge_shrinkage():
    from uattr.attribution.perturbation import LIME

    x, quadrants, posterior, truth, probes = _probe_setup()
    maps = LIME(posterior, _first_prob, seed=3).attribute(x, segments=quadrants)
    recovered = torch.stack([maps[:, i, j] for i, j in probes], 1)
    # ridge (alpha 1) against ~1000 weighted samples shrinks by about 1%: 5% tolerance
    torch.testing.assert_close(recovered, truth, rtol=0.05, atol=2e-3)


@pytest.mark.parametrize("features", [6, 80])  # more samples than features, and fewer
def test_weighted_ridge_matches_scikit_learn(features):
    from sklearn.linear_model import Ridge

    from uattr.ops.surrogate import weighted_ridge

    gen = torch.Generator().manual_seed(0)
    design = (torch.rand(2, 50, features, generator=gen) < 0.5).double()
    target = torch.randn(2, 50, generator=gen, dtype=torch.float64)
    weights = torch.rand(2, 50, generator=gen, dtype=torch.float64) + 0.1
    ours = weighted_ridge(design, target, weights, 1.0,
                          torch.ones(2, features, dtype=torch.float64))
    for b in range(2):
        reference = Ridge(alpha=1.0).fit(design[b].numpy(), target[b].numpy(),
                                         sample_weight=weights[b].numpy()).coef_
        torch.testing.assert_close(ours[b], torch.from_numpy(reference), rtol=1e-8, atol=1e-10)


def test_lime_defaults_to_quickshift_segments_and_is_batch_invariant_per_image():
    from tests._models import tiny_cnn_members
    from uattr import as_posterior, segment
    from uattr.attribution.perturbation import LIME

    posterior = as_posterior(tiny_cnn_members(seed=8))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    method = LIME(posterior, n_samples=200)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    together = method.attribute(x, generator=gens)
    explicit = method.attribute(x, segments=segment.quickshift(x),
                                generator=[torch.Generator().manual_seed(i) for i in range(3)])
    torch.testing.assert_close(together, explicit)
    alone = method.attribute(x[2:], generator=[torch.Generator().manual_seed(2)])
    torch.testing.assert_close(together[2:], alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rows", [60, 12])  # more rows than columns, and fewer
def test_minimum_norm_fit_is_the_pseudo_inverse_solution(rows):
    from uattr.attribution.perturbation import minimum_norm_fit

    gen = torch.Generator().manual_seed(0)
    design = (torch.rand(2, rows, 30, generator=gen) < 0.3).double()
    design[..., -4:] = 0.0  # unused feature slots: zero columns, weight 0
    target = torch.randn(2, rows, generator=gen, dtype=torch.float64)
    expected = (torch.linalg.pinv(design) @ target[..., None])[..., 0]
    torch.testing.assert_close(minimum_norm_fit(design, target), expected, rtol=1e-8,
                               atol=1e-10)
