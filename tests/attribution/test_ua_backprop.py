import math

import pytest
import torch

from tests._models import tiny_cnn_members
from uattr import as_posterior, uncertainty
from uattr.attribution.ua_backprop import UABackprop, class_uncertainties, logit_uncertainties


@pytest.fixture(scope="module")
def ensemble():
    return as_posterior(tiny_cnn_members(members=3, classes=4, seed=7))


@pytest.mark.parametrize("kind", ["total", "aleatoric", "epistemic"])
@pytest.mark.parametrize("path", ["fullgrad", "gradient"])
def test_completeness_on_a_real_cnn_ensemble(kind, path):
    # Ten random ensembles of 8 images: members that nearly agree make U_e a difference of
    # close numbers, which float32 kept to only 5e-4 relative on some of these images. The
    # map must sum to U(x) to 1e-5 relative on any CPU (float64 inside, float32 out).
    for seed in range(10):
        ensemble = as_posterior(tiny_cnn_members(members=3, classes=4, seed=seed))
        x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        maps = UABackprop(ensemble, kind, path=path).attribute(x)
        assert maps.dtype == torch.float32
        expected = uncertainty(ensemble(x), kind).detach()
        torch.testing.assert_close(maps.sum((1, 2)), expected, rtol=1e-5, atol=0)


def test_class_and_logit_uncertainties_by_hand():
    probs = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])  # p̄ = [0.75, 0.25]
    total = class_uncertainties(probs, "total")[0]
    assert total.tolist() == pytest.approx([-0.75 * math.log(0.75), -0.25 * math.log(0.25)])
    aleatoric = class_uncertainties(probs, "aleatoric")[0]
    assert aleatoric.tolist() == pytest.approx([0.25 * math.log(2), 0.25 * math.log(2)])
    # sample s = 1 (g = [1, 0]), tau1 = 1: c_{0→·} = softmax([1-1, 0-0]) = [1/2, 1/2],
    # c_{1→·} = softmax([0-1, 1-0]) = [1/(1+e²), e²/(1+e²)]
    u = logit_uncertainties(probs, "total", tau1=1.0)[0, 1]
    e2 = math.exp(2)
    expected_0 = 0.5 * total[0] + total[1] / (1 + e2)
    expected_1 = 0.5 * total[0] + total[1] * e2 / (1 + e2)
    assert u.tolist() == pytest.approx([expected_0.item(), expected_1.item()], rel=1e-6)


def test_batch_gives_the_same_maps_as_one_image_at_a_time(ensemble):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    method = UABackprop(ensemble, "epistemic", logits_per_pass=5)
    together = method.attribute(x)
    for i in range(4):
        torch.testing.assert_close(together[i : i + 1], method.attribute(x[i : i + 1]),
                                   rtol=1e-4, atol=1e-7)


def test_a_sweep_over_the_temperatures_reuses_one_relevance(ensemble):
    """from_relevance with another method's τ1 and τ2 gives that method's own maps, and a
    sharper τ2 concentrates each map: a sweep computes R once (tuning/ua_backprop.py)."""
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    relevance, probs = UABackprop(ensemble, "total").relevance(x)
    peaks = []
    for tau1, tau2 in ((0.3, 0.01), (1.0, 1.5), (3.0, 30.0)):
        method = UABackprop(ensemble, "total", tau1=tau1, tau2=tau2)
        swept = method.from_relevance(relevance, probs)
        torch.testing.assert_close(swept.float(), method.attribute(x), rtol=1e-5, atol=1e-7)
        peaks.append((swept.flatten(1).amax(1) / swept.flatten(1).sum(1)).mean())
    assert peaks[0] > peaks[1] > peaks[2]


def test_the_gradient_path_follows_the_only_pixel_that_matters():
    # two linear members reading only pixel (1, 2): every logit's gradient lives there,
    # so with a small tau2 all attribution goes to that pixel
    members = []
    for sign in (1.0, -1.0):
        lin = torch.nn.Linear(1, 3)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[sign], [0.5], [-sign]]))
            lin.bias.zero_()
        members.append(torch.nn.Sequential(_Pick(1, 2), lin))
    posterior = as_posterior(members)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    maps = UABackprop(posterior, "total", path="gradient", tau2=1e-3).attribute(x)
    u = uncertainty(posterior(x), "total").detach()
    torch.testing.assert_close(maps[:, 1, 2], u, rtol=1e-5, atol=1e-7)


class _Pick(torch.nn.Module):
    def __init__(self, i, j):
        super().__init__()
        self.i, self.j = i, j

    def forward(self, x):
        return x[:, 0, self.i, self.j, None]


def test_bad_settings_are_rejected(ensemble):
    with pytest.raises(ValueError, match="tau1"):
        UABackprop(ensemble, tau1=0.0)
    with pytest.raises(ValueError, match="path"):
        UABackprop(ensemble, path="lrp")
    single = as_posterior(tiny_cnn_members(members=1))
    with pytest.raises(ValueError, match="S >= 2"):
        UABackprop(single, "epistemic").attribute(torch.rand(1, 1, 8, 8))
