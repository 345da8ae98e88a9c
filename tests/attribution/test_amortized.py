"""The amortised explainer: trained with the method's own objective, then one pass."""

import functools

import pytest
import torch

from tests._models import bright_textured_square, colour_region_ensemble, tiny_cnn_members
from uattr import as_posterior
from uattr.attribution.amortized import AmortizedUA, MaskNet
from uattr.ops.perturb import gaussian_blur


@functools.cache  # one training for the tests that only read the trained explainer
def _trained(size: int = 16, seed: int = 0) -> tuple[AmortizedUA, tuple[int, int, int]]:
    images, region = bright_textured_square(size, batch=32, seed=seed)
    posterior = as_posterior(colour_region_ensemble(size, region))
    explainer = AmortizedUA(posterior, lam=0.5, sigma_init=0.1, seed=0)
    return explainer.fit(images, epochs=8, batch_size=16, lr=3e-3), region


def test_trained_on_a_posterior_unsure_about_one_region_it_puts_that_region_first():
    # U depends on the speckled square alone (blurring it averages the speckles and
    # lowers U); after 16 Adam steps on 32 training images, every held-out image's map is
    # highest inside the square.
    explainer, (top, left, side) = _trained()
    held_out, _ = bright_textured_square(16, batch=8, seed=7)
    maps = explainer.attribute(held_out)  # [8, 16, 16]
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[top:top + side, left:left + side] = True
    assert (maps[:, inside].mean(1) > maps[:, ~inside].mean(1) + 0.3).all()
    best = maps.flatten(1).argmax(1)
    rows, cols = best // 16, best % 16
    assert ((rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)).all()
    # and blurring what it found lowers U: the objective it was trained on falls
    logits = torch.logit(maps.clamp(1e-6, 1 - 1e-6))
    u = explainer.uncertainty_of(held_out)
    assert (explainer.objective(held_out, logits) < u).all()


def test_an_image_has_the_same_map_alone_and_in_a_batch():
    explainer, _ = _trained()
    images, _ = bright_textured_square(16, batch=5, seed=3)
    together = explainer.attribute(images)
    for b in range(5):
        torch.testing.assert_close(explainer.attribute(images[b:b + 1])[0], together[b],
                                   rtol=0, atol=1e-6)


def test_on_segments_the_map_is_its_mean_over_each_segment():
    explainer, _ = _trained()
    images, _ = bright_textured_square(16, batch=2, seed=4)
    halves = torch.zeros(2, 16, 16, dtype=torch.long)
    halves[:, :, 8:] = 1
    pixels = explainer.attribute(images)
    on_halves = explainer.attribute(images, segments=halves)
    torch.testing.assert_close(on_halves[:, 0, 0], pixels[:, :, :8].mean((1, 2)))
    torch.testing.assert_close(on_halves[:, 5, 12], pixels[:, :, 8:].mean((1, 2)))


def test_training_leaves_the_posterior_untouched_and_is_seeded():
    images, region = bright_textured_square(16, batch=16, seed=0)
    members = colour_region_ensemble(16, region)
    before = [p.detach().clone() for m in members for p in m.parameters()]
    first = AmortizedUA(as_posterior(members), seed=2).fit(images, epochs=2, batch_size=8)
    assert all(p.grad is None for m in members for p in m.parameters())
    after = [p for m in members for p in m.parameters()]
    assert all(torch.equal(a, p) for a, p in zip(before, after, strict=True))
    again = AmortizedUA(as_posterior(members), seed=2).fit(images, epochs=2, batch_size=8)
    torch.testing.assert_close(first.attribute(images), again.attribute(images), rtol=0,
                               atol=0)


def test_untrained_or_mismatched_networks_are_refused():
    images, region = bright_textured_square(16, batch=2, seed=0)
    posterior = as_posterior(colour_region_ensemble(16, region))
    with pytest.raises(ValueError, match="not trained"):
        AmortizedUA(posterior).attribute(images)
    grey = AmortizedUA(posterior, network=MaskNet(1).eval())
    with pytest.raises(ValueError, match="takes 1 channels"):
        grey.attribute(images)
    with pytest.raises(ValueError, match="lam"):
        AmortizedUA(posterior, lam=-1.0)


def _squares_at_random_places(n: int, size: int, seed: int) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
    """Colour images ``[n, 3, size, size]`` of dark noise with one bright square, a quarter
    of the side, each at its own random place, and the square's mask ``[n, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    x = 0.15 * torch.rand(n, 3, size, size, generator=g)
    side = size // 4
    corners = torch.randint(0, size - side + 1, (n, 2), generator=g)
    masks = torch.zeros(n, size, size)
    for b, (top, left) in enumerate(corners.tolist()):  # building the data, not the method
        x[b, :, top:top + side, left:left + side] = 0.9
        masks[b, top:top + side, left:left + side] = 1.0
    return x, masks


class _Counted(torch.nn.Module):
    """A posterior of two tiny colour CNNs that counts its passes."""

    def __init__(self) -> None:
        super().__init__()
        self.posterior, self.passes = as_posterior(tiny_cnn_members(3, members=2)), 0

    def forward(self, x):
        self.passes += 1
        return self.posterior(x)


def test_distilled_from_maps_it_finds_on_held_out_images_what_they_marked():
    # The targets mark a square that moves from image to image: after distillation the
    # held-out maps are high inside their own square and low outside, and the posterior
    # is never run while distilling.
    images, masks = _squares_at_random_places(64, 16, seed=0)
    posterior = _Counted()
    explainer = AmortizedUA(posterior, seed=0).distill(images, masks, epochs=30,
                                                        batch_size=16, lr=1e-2)
    assert posterior.passes == 0
    held_out, held_masks = _squares_at_random_places(8, 16, seed=5)
    maps = explainer.attribute(held_out)  # [8, 16, 16]
    inside = held_masks.bool()
    mean_in = (maps * inside).flatten(1).sum(1) / inside.flatten(1).sum(1)
    mean_out = (maps * ~inside).flatten(1).sum(1) / (~inside).flatten(1).sum(1)
    assert (mean_in > 0.7).all() and (mean_out < 0.2).all()
    best = maps.flatten(1).argmax(1)
    assert inside.flatten(1)[torch.arange(8), best].all()


def test_distillation_is_seeded_and_refuses_maps_that_are_no_probabilities():
    images, masks = _squares_at_random_places(8, 12, seed=1)
    first = AmortizedUA(_Counted(), seed=3).distill(images, masks, epochs=2, batch_size=4)
    again = AmortizedUA(_Counted(), seed=3).distill(images, masks, epochs=2, batch_size=4)
    torch.testing.assert_close(first.attribute(images), again.attribute(images), rtol=0,
                               atol=0)
    with pytest.raises(ValueError, match=r"maps: expected one map per image, shape \[8, 12"):
        AmortizedUA(_Counted()).distill(images, masks[:4])
    with pytest.raises(ValueError, match="maps: expected probabilities"):
        AmortizedUA(_Counted()).distill(images, 2 * masks)
    with pytest.raises(ValueError, match="maps: expected probabilities"):
        AmortizedUA(_Counted()).distill(images, masks * float("nan"))


def _first_order_pair(size: int) -> tuple[AmortizedUA, AmortizedUA, tuple[int, int, int]]:
    """The same (untrained, seeded) mask network without and with ``first_order``, on a
    posterior whose U grows with the energy r of one square of the image: centred at 0.7,
    above the r ≈ 0.52 of :func:`bright_textured_square`, so that U'(r) > 0 there."""
    _, region = bright_textured_square(size, batch=1)
    posterior = as_posterior(colour_region_ensemble(size, region, centre=0.7))
    torch.manual_seed(0)
    network = MaskNet(3).eval()
    return (AmortizedUA(posterior, network=network, sigma_init=0.1),
            AmortizedUA(posterior, network=network, sigma_init=0.1, first_order=True), region)


@pytest.mark.parametrize("size", [12, 20])
def test_the_first_order_map_averages_the_network_with_the_scaled_blur_effect(size):
    # U depends on r = mean of x² over the square alone and U'(r) > 0, so
    # ∂U/∂x = U'(r) · 2x / n inside the square and 0 outside: the effect
    # ∂U/∂x · (x - blur(x)) summed over channels, kept where positive and scaled by its
    # largest pixel, is Σ_c x (x - blur(x)) there, scaled the same way (U'(r) cancels).
    plain, averaged, (top, left, side) = _first_order_pair(size)
    images, _ = bright_textured_square(size, batch=3, seed=5)
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[top:top + side, left:left + side] = True
    by_hand = ((images * (images - gaussian_blur(images, 0.1 * size))).sum(1) * inside)
    by_hand = by_hand.clamp_min(0) / by_hand.flatten(1).amax(1)[:, None, None]
    effect = averaged.scaled_effect(images)
    # float32 keeps about 7 digits; the gradient's few products lose one or two
    torch.testing.assert_close(effect, by_hand, rtol=0, atol=1e-5)
    assert (effect[:, ~inside] == 0).all() and (effect.flatten(1).amax(1) == 1).all()
    torch.testing.assert_close(averaged.attribute(images),
                               (plain.attribute(images) + effect) / 2, rtol=0, atol=1e-6)
    # an image alone and in the batch: the same map
    torch.testing.assert_close(averaged.attribute(images[1:2])[0],
                               averaged.attribute(images)[1], rtol=0, atol=1e-6)


def test_where_no_pixel_lowers_the_uncertainty_the_first_order_map_is_half_the_network():
    # a flat image: blurring changes nothing, the effect is 0 everywhere, and the map is
    # the network's halved, not a division by zero
    plain, averaged, _ = _first_order_pair(16)
    flat = torch.full((2, 3, 16, 16), 0.4)
    assert (averaged.scaled_effect(flat) == 0).all()
    torch.testing.assert_close(averaged.attribute(flat), plain.attribute(flat) / 2,
                               rtol=0, atol=0)


def test_the_map_runs_the_posterior_only_for_the_first_order_effect():
    # one pass of the mask network: the posterior is neither run nor checked, which on
    # ResNet-18 at 224 px was most of the map's time; the first-order effect runs it
    images, _ = _squares_at_random_places(4, 16, seed=2)
    posterior = _Counted()
    torch.manual_seed(0)
    network = MaskNet(3).eval()
    AmortizedUA(posterior, network=network).attribute(images)
    assert posterior.passes == 0
    AmortizedUA(posterior, network=network, first_order=True).attribute(images)
    assert posterior.passes > 0
