"""CLUE and δ-CLUE on a hand-made VAE whose latent coordinates are image regions."""

import pytest
import torch

from tests._models import RegionPosterior, RegionVAE, tiny_cnn_members, tiny_vae
from uattr import CLUE, DeltaCLUE, as_posterior
from uattr.posteriors.passes import PassCounter
from uattr.uq import uncertainty


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Images RegionVAE can make exactly: both blocks at random intensities in [0.5, 1]."""
    g = torch.Generator().manual_seed(seed)
    z = 0.5 + 0.5 * torch.rand(n, 2, generator=g)
    return RegionVAE().decode(z)


def test_clue_changes_only_the_region_that_drives_the_uncertainty():
    x = _images()
    result = CLUE(RegionPosterior(), RegionVAE(), "epistemic", lam_x=0.01).explain(x)
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[RegionVAE.REGION] = True
    maps = result.maps
    # the counterfactual dims the uncertain block and leaves the other one as it was (up
    # to Adam's first steps: the L1 term's subgradient at a rounding-level difference has
    # a sign, and Adam moves any signed gradient by about lr before the L1 term pulls back)
    assert (maps[:, region] > 0.2).all()
    assert maps[:, ~region].abs().max() < 0.02
    assert (result.uncertainty_after < 0.2 * result.uncertainty_before).all()
    # its latent moved along the first coordinate only
    start = RegionVAE().encode(x)[0]
    assert (result.latent[:, 0] < start[:, 0] - 0.2).all()
    torch.testing.assert_close(result.latent[:, 1], start[:, 1], atol=0.02, rtol=0)


def test_delta_clue_never_leaves_its_ball_and_keeps_its_best_start():
    x = _images()
    delta = 0.1
    method = DeltaCLUE(RegionPosterior(), RegionVAE(), "epistemic", delta=delta, starts=5,
                       start_std=0.5, seed=3)
    result = method.explain(x)
    start = RegionVAE().encode(x)[0]
    distance = (result.latent - start).norm(dim=1)
    assert (distance <= delta * (1 + 1e-5)).all()
    # the uncertainty only falls by dimming the block: the best start in the ball ends on
    # its boundary, straight down the first coordinate
    assert (distance > 0.9 * delta).all()
    assert (result.latent[:, 0] < start[:, 0] - 0.09).all()
    unconstrained = CLUE(RegionPosterior(), RegionVAE(), "epistemic").explain(x)
    assert (result.uncertainty_after > unconstrained.uncertainty_after).all()


def test_delta_clue_is_seeded_per_image():
    posterior, vae = as_posterior(tiny_cnn_members()), tiny_vae()
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    method = DeltaCLUE(posterior, vae, starts=3, max_steps=20, seed=0)
    first = method.attribute(x)
    torch.testing.assert_close(method.attribute(x), first, rtol=0, atol=0)
    other = DeltaCLUE(posterior, vae, starts=3, max_steps=20, seed=1,
                      start_std=2.0).attribute(x)
    assert not torch.allclose(other, first)


def test_a_stopped_image_keeps_its_latent_while_others_go_on():
    # image 0 sits at zero uncertainty from the start: its cost cannot change, it stops
    # after `patience` steps and its counterfactual is its own reconstruction
    x = _images(2)
    x[0, 0][RegionVAE.REGION] = 0.0
    result = CLUE(RegionPosterior(), RegionVAE(), "epistemic", lam_x=0.01).explain(x)
    assert result.steps[0] < result.steps[1]
    assert result.maps[0].abs().max() < 1e-6


def test_each_step_counts_one_pass_through_the_decoder_and_the_posterior():
    posterior, vae = as_posterior(tiny_cnn_members()), tiny_vae()
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    # tolerances of 0 never stop an image: exactly max_steps optimisation steps
    method = CLUE(posterior, vae, max_steps=7, rel_tol=0.0, abs_tol=0.0)
    with PassCounter(posterior, also=method.counted_networks()) as count:
        result = method.explain(x)
    assert result.steps.tolist() == [7, 7]
    members = len(posterior.members)
    # 7 steps + the final evaluation, each through the decoder and the members, then U(x)
    # through the members only: members / (members + 1) of a pass
    assert count.forward / len(x) == pytest.approx(7 + 1 + members / (members + 1))
    assert count.backward / len(x) == pytest.approx(7)


def test_bad_arguments_name_themselves():
    posterior = as_posterior(tiny_cnn_members())
    with pytest.raises(ValueError, match="vae must have encode"):
        CLUE(posterior, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="delta must be > 0"):
        CLUE(posterior, tiny_vae(), delta=0.0)
    with pytest.raises(ValueError, match="starts must be a positive int"):
        DeltaCLUE(posterior, tiny_vae(), starts=0)
    with pytest.raises(ValueError, match="x: the VAE makes images of shape"):
        CLUE(posterior, tiny_vae((1, 12, 12))).attribute(torch.rand(1, 1, 10, 10))


def test_the_map_measures_what_changed_in_the_image():
    x = _images(3, seed=5)
    result = CLUE(RegionPosterior(), RegionVAE(), "epistemic").explain(x)
    torch.testing.assert_close(result.maps, (result.counterfactual - x).abs().sum(1))
    u = uncertainty(RegionPosterior()(result.counterfactual), "epistemic")
    torch.testing.assert_close(u, result.uncertainty_after)
