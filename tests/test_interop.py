"""uattr's maps in Captum's shape and through Quantus's explain_func, with the real
quantus package."""

import numpy as np
import pytest
import torch

from tests._models import bright_textured_square, colour_region_ensemble, tiny_cnn_members
from uattr import Grad, Occlusion, UABackprop, as_posterior, segment, uncertainty_fn
from uattr.interop import UncertaintyModel, per_channel, quantus_explain


def _case(size=16):
    x, region = bright_textured_square(size, batch=4)
    return x, as_posterior(colour_region_ensemble(size, region))


def test_per_channel_maps_sum_back_to_the_map_and_keep_completeness():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    posterior = as_posterior(tiny_cnn_members(in_channels=3, seed=2))
    maps = UABackprop(posterior).attribute(x)  # [B, H, W], sums to U(x)
    shaped = per_channel(maps, x)
    assert shaped.shape == x.shape
    torch.testing.assert_close(shaped.sum(1), maps)
    u = uncertainty_fn(posterior)(x).detach()
    torch.testing.assert_close(shaped.sum((1, 2, 3)), u, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="maps must have shape"):
        per_channel(maps[:, :4], x)


def test_the_uncertainty_model_outputs_u_at_target_zero():
    x, posterior = _case()
    model = UncertaintyModel(posterior, "epistemic")
    assert not model.training and model(x).shape == (4, 1)
    torch.testing.assert_close(model(x)[:, 0], uncertainty_fn(posterior, "epistemic")(x))


def test_quantus_explain_gives_the_library_maps_of_the_model_it_is_given():
    x, posterior = _case()
    other = as_posterior(colour_region_ensemble(16, (0, 0, 5)))
    for post in (posterior, other):  # a randomised model gets its own maps
        maps = quantus_explain(UncertaintyModel(post), x.numpy(), None, method=Grad)
        assert maps.shape == (4, 1, 16, 16)
        np.testing.assert_array_equal(maps[:, 0], Grad(post).attribute(x).numpy())
    built = quantus_explain(None, x, None, method=Occlusion(posterior), channels=True,
                            segmenter=segment.slic)
    np.testing.assert_array_equal(built, per_channel(Occlusion(posterior).attribute(x), x))
    with pytest.raises(ValueError, match=r"model must be a uattr\.interop\.UncertaintyModel"):
        quantus_explain(torch.nn.Identity(), x, None, method=Grad)


def test_quantus_scores_uattrs_maps():
    quantus = pytest.importorskip("quantus")
    x, posterior = _case()

    class Flipped(Grad):
        def attribute(self, x, *, segments=None):
            return -super().attribute(x)

    def score(method):
        np.random.seed(0)  # noqa: NPY002 - FaithfulnessCorrelation draws from the global one
        metric = quantus.FaithfulnessCorrelation(
            nr_runs=40, subset_size=20, perturb_baseline="black", disable_warnings=True,
            display_progressbar=False, return_aggregate=False)
        return np.array(metric(model=UncertaintyModel(posterior), x_batch=x.numpy(),
                               y_batch=np.zeros(4, dtype=int), explain_func=quantus_explain,
                               explain_func_kwargs={"method": method}, device="cpu"))

    grad = score(Grad)
    # the metric correlates the map's sums with the drops of U: a negated map, the
    # negated correlation, on every image
    np.testing.assert_allclose(score(Flipped), -grad, atol=1e-6)
    assert np.abs(grad).min() > 0.3  # the gradient of this U follows the square
