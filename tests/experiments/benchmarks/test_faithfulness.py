"""Faithfulness refinements: top-pixel masks, blurring, gradient refinement, URR."""

import math

import pytest
import torch

from tests._models import SpotPosterior, tiny_cnn_members
from uattr import as_posterior, uncertainty
from uattr.experiments.benchmarks.faithfulness import refine_by_gradient
from uattr.metrics import blur_top_pixels, top_pixel_mask, urr
from uattr.ops.perturb import blurred_reference


def test_urr_by_hand():
    got = urr(torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.5, 1.0, 0.75]))
    torch.testing.assert_close(got, torch.tensor([0.75, 0.0, -0.5]))
    with pytest.raises(ValueError, match="u_before must be > 0"):
        urr(torch.tensor([0.0]), torch.tensor([0.0]))


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.005, 0.01])
def test_blurring_the_top_pixels_changes_exactly_ceil_q_hw_pixels(fraction):
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(2))
    out = blur_top_pixels(x, maps, fraction)
    changed = (out != x).any(1)  # [B, H, W]; a random image differs from its blur everywhere
    expected = math.ceil(fraction * 28 * 28 - 1e-9)  # 16, 40, 4, 8
    assert changed.flatten(1).sum(1).tolist() == [expected] * 4
    # and they are the pixels of highest attribution, set to the blurred image
    threshold = maps.flatten(1).sort(1, descending=True).values[:, expected - 1]
    assert (maps[changed] >= threshold.repeat_interleave(expected)).all()
    blurred = blurred_reference(x)
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[changed],
                               blurred.permute(0, 2, 3, 1)[changed])


def test_top_pixel_mask_breaks_ties_by_position_and_checks_its_arguments():
    mask = top_pixel_mask(torch.zeros(1, 2, 3), 0.5)  # all tied: the first 3 pixels
    assert mask.flatten().tolist() == [True, True, True, False, False, False]
    with pytest.raises(ValueError, match="fraction"):
        top_pixel_mask(torch.zeros(1, 2, 3), 0.0)
    with pytest.raises(ValueError, match="maps must be finite"):
        top_pixel_mask(torch.full((1, 2, 3), float("nan")), 0.5)


def test_gradient_refinement_changes_no_pixel_outside_the_mask():
    posterior = as_posterior(tiny_cnn_members(members=3, classes=4, seed=5))
    x = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    mask = top_pixel_mask(torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(4)),
                          0.05)
    result = refine_by_gradient(lambda z: uncertainty(posterior(z), "total"), x, mask,
                                max_steps=50)
    outside = ~mask[:, None].expand_as(x)
    assert torch.equal(result.images[outside], x[outside])
    assert (result.images[~outside] != x[~outside]).any()  # and it did change the inside
    assert (result.u_after < result.u_before).all()
    torch.testing.assert_close(result.u_after,
                               uncertainty(posterior(result.images), "total").detach())


def test_refining_the_one_pixel_that_matters_removes_the_uncertainty():
    # U depends on x[3, 4] = s alone: logits [6(1 - s), 0], from U = 0.65 at s = 0.9 down
    # to U = 0.017 at s = 0, the floor when images are kept in [0, 1]
    posterior = SpotPosterior((3, 4), kappa=6.0)
    x = torch.full((2, 1, 8, 8), 0.5)
    x[:, 0, 3, 4] = 0.9
    u = lambda z: uncertainty(posterior(z), "total")  # noqa: E731
    right = torch.zeros(2, 8, 8, dtype=torch.bool)
    right[:, 3, 4] = True
    wrong = torch.zeros(2, 8, 8, dtype=torch.bool)
    wrong[:, 0, 0] = True
    good = refine_by_gradient(u, x, right, max_steps=300, clamp=True)
    assert (urr(good.u_before, good.u_after) > 0.95).all()
    assert good.images[:, 0, 3, 4].tolist() == [0.0, 0.0]
    # unclamped (the papers' update), the pixel goes on below 0 and U falls further
    free = refine_by_gradient(u, x, right, max_steps=300)
    assert (free.images[:, 0, 3, 4] < 0).all()
    assert (free.u_after < good.u_after).all()
    bad = refine_by_gradient(u, x, wrong, max_steps=300)
    assert torch.equal(bad.images, x)  # nothing to gain: stops after one step, unchanged
    assert bad.steps.tolist() == [1, 1]
    assert urr(bad.u_before, bad.u_after).tolist() == [0.0, 0.0]


def test_an_image_is_refined_as_if_it_were_alone_in_its_batch():
    # images stop at different steps, and the stopped ones leave the batch: the others'
    # steps, uncertainties and pixels must not notice
    posterior = SpotPosterior((3, 4), kappa=6.0)
    x = torch.full((4, 1, 8, 8), 0.5)
    x[:, 0, 3, 4] = torch.tensor([0.9, 0.8, 0.95, 0.7])
    mask = torch.zeros(4, 8, 8, dtype=torch.bool)
    mask[[0, 2], 3, 4] = True  # the pixel that matters
    mask[[1, 3], 0, 0] = True  # one that does not: these stop after one step
    u = lambda z: uncertainty(posterior(z), "total")  # noqa: E731
    together = refine_by_gradient(u, x, mask, max_steps=40)
    assert together.steps.tolist() == [40, 1, 40, 1]
    for i in range(4):
        alone = refine_by_gradient(u, x[i : i + 1], mask[i : i + 1], max_steps=40)
        assert alone.steps.item() == together.steps[i].item()
        torch.testing.assert_close(alone.u_after[0], together.u_after[i])
        torch.testing.assert_close(alone.images[0], together.images[i])
