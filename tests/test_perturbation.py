import torch

from uattr import uncertainty
from uattr.attribution.perturbation import Occlusion, blurred_reference

from ._models import SpotPosterior


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
    from uattr import as_posterior

    from ._models import tiny_cnn_members

    posterior = as_posterior(tiny_cnn_members(seed=9))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    method = Occlusion(posterior, perturbations_per_eval=4)
    together = method.attribute(x)
    torch.testing.assert_close(together[1:2], method.attribute(x[1:2]), rtol=1e-5, atol=1e-7)
