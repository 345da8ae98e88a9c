import math
import warnings

import pytest
import torch

from tests._models import SpotPosterior, tiny_cnn_members
from uattr import OptimizationUA, UninformativeMapWarning, as_posterior, segment
from uattr.attribution.optimization import gumbel_sigmoid, logistic_noise


def _spot_image(spot=(4, 12), size=16):
    x = torch.zeros(1, 1, size, size)
    x[0, 0, spot[0] - 1 : spot[0] + 2, spot[1] - 1 : spot[1] + 2] = 1.0
    return x


def test_gumbel_sigmoid_is_binary_with_mean_p_as_tau_goes_to_zero():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    noise = logistic_noise(torch.rand(200_000, 5, generator=gen))
    samples = gumbel_sigmoid(logits, noise, tau=1e-4)
    assert ((samples > 0.01) & (samples < 0.99)).float().mean() < 1e-3
    torch.testing.assert_close(samples.mean(0), torch.sigmoid(logits), atol=5e-3, rtol=0)


def test_logistic_noise_has_the_logistic_variance():
    gen = torch.Generator().manual_seed(1)
    t = logistic_noise(torch.rand(400_000, generator=gen))
    assert t.mean().item() == pytest.approx(0.0, abs=0.02)
    assert t.var().item() == pytest.approx(math.pi**2 / 3, rel=0.02)


def test_the_segment_that_holds_the_uncertainty_gets_the_highest_score():
    x = _spot_image()
    quadrants = segment.grid(x, cell=8)  # 4 segments; the spot (4, 12) is in segment 1
    method = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0)
    result = method.attribute_with_diagnostics(x, segments=quadrants)
    probs = result.probs[0]
    assert probs.argmax().item() == 1
    assert probs[1] > 0.5 > probs[[0, 2, 3]].max()
    assert result.u_before.item() == pytest.approx(math.log(2), abs=1e-4)
    assert result.u_after.item() < 0.5 * math.log(2)
    assert torch.equal(result.maps[0], probs[quadrants[0]])


def test_pixel_mode_finds_the_spot():
    x = _spot_image()
    maps = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0).attribute(x)
    assert divmod(maps[0].argmax().item(), 16) == (4, 12)


def test_early_stopping_stops_on_a_flat_loss():
    fixed = torch.tensor([[[0.3, 0.7], [0.6, 0.4]]])
    # U does not depend on x (its gradient is zero, and it is a gradient: 0 · x)
    posterior = as_posterior(lambda x: fixed + 0 * x.sum((1, 2, 3))[:, None, None],
                             output="probs")
    x = torch.rand(2, 1, 6, 6)
    # A loss that cannot fall is quiet at every check: it stops after `patience` checks.
    flat = OptimizationUA(posterior, lam=0.0, seed=0).attribute_with_diagnostics(x)
    assert flat.steps.tolist() == [40, 40] and flat.converged.all()
    once = OptimizationUA(posterior, lam=0.0, seed=0, patience=1).attribute_with_diagnostics(x)
    assert once.steps.tolist() == [20, 20]
    sloped = OptimizationUA(posterior, lam=3.0, seed=0).attribute_with_diagnostics(x)
    assert (sloped.steps > 40).all()


def test_stopping_only_chooses_where_along_one_path_an_image_stops():
    # The checks draw from their own stream: the stopped run's probabilities are those of
    # the run without a stopping rule at the step where the first one stopped, and how
    # often the path is recorded does not change it.
    posterior = as_posterior(tiny_cnn_members())
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    seg = segment.grid(x, cell=2)
    stopped = OptimizationUA(posterior, lam=1.0, seed=3, tol=0.02).attribute_with_diagnostics(
        x, segments=seg)
    assert stopped.converged.all() and (stopped.steps < 500).all()
    free = OptimizationUA(posterior, lam=1.0, seed=3, early_stop=False)
    traced = free.attribute_with_diagnostics(x, segments=seg, trace=True)
    assert traced.steps.tolist() == [500] * 3 and not traced.converged.any()
    trace = traced.trace
    assert trace.steps.tolist() == list(range(0, 501, 20))
    for b in range(3):
        at = trace.steps.tolist().index(int(stopped.steps[b]))
        torch.testing.assert_close(trace.probs[at, b], stopped.probs[b], rtol=0, atol=0)
    torch.testing.assert_close(trace.probs[-1], traced.probs, rtol=0, atol=0)
    torch.testing.assert_close(trace.hard_uncertainty[-1], traced.u_after, rtol=0, atol=0)
    finer = OptimizationUA(posterior, lam=1.0, seed=3, early_stop=False, check_every=7)
    torch.testing.assert_close(finer.attribute(x, segments=seg), traced.maps, rtol=0, atol=0)
    # the recorded loss is U plus the sparsity term; σ starts at σ0 = 0.05 · 8 px
    assert (trace.loss >= trace.uncertainty).all()
    torch.testing.assert_close(trace.sigma[0], torch.full((3,), 0.4))


def test_a_posterior_the_blur_cannot_move_gets_a_uniform_map_and_says_so():
    fixed = torch.tensor([[[0.3, 0.7], [0.6, 0.4]]])  # U does not depend on the image
    # U does not depend on x (its gradient is zero, and it is a gradient: 0 · x)
    posterior = as_posterior(lambda x: fixed + 0 * x.sum((1, 2, 3))[:, None, None],
                             output="probs")
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    # only the sparsity term moves the mask: every segment gets the same probability, up
    # to the Gumbel-sigmoid's draws
    for gumbel, spread in ((False, 0.0), (True, 0.1)):
        # the library says so itself, naming the images, not only the command line
        with pytest.warns(UninformativeMapWarning, match=r"for 2 of 2 images \(batch index "
                                                         r"0, 1\) blurring the region found"):
            result = OptimizationUA(posterior, seed=0, gumbel=gumbel) \
                .attribute_with_diagnostics(x, segments=segment.grid(x, cell=2))
        assert (result.probs.amax(1) - result.probs.amin(1) <= spread).all()
        assert (result.probs < 0.5).all()
    torch.testing.assert_close(result.u_after, result.u_before)
    assert result.removed.tolist() == [0.0, 0.0] and result.uninformative().all()

    from uattr.experiments.explain import uninformative_warnings

    lines = uninformative_warnings(result, torch.tensor([17, 4]))
    assert len(lines) == 2 and lines[0].startswith("image 17: blurring the region found "
                                                   "removes only 0.0% of its uncertainty")


def test_an_image_whose_cause_is_found_is_not_called_uninformative():
    x = _spot_image()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UninformativeMapWarning)  # no warning either
        result = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0) \
            .attribute_with_diagnostics(x, segments=segment.grid(x, cell=8))
    assert result.removed.item() > 0.5 and not result.uninformative().any()


def test_batch_gives_the_same_maps_as_one_image_at_a_time():
    posterior = as_posterior(tiny_cnn_members())
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    seeds = [11, 12, 13]

    def gens(idx):
        return [torch.Generator().manual_seed(seeds[i]) for i in idx]

    # images with different segment counts (16, 4, 64): an image's draws must not depend
    # on how many segments the others have
    mixed = torch.stack([segment.grid(x, cell=2)[0], segment.grid(x, cell=4)[1],
                         segment.pixels(x)[2]])
    for segments in (None, segment.grid(x, cell=2), mixed):
        method = OptimizationUA(posterior, lam=1.0, max_steps=160, tol=0.012, seed=0)
        together = method.attribute_with_diagnostics(
            x, segments=segments, generator=gens([0, 1, 2]))
        # images stop at different steps: a stopped image must keep its parameters while
        # the others go on, or its map would differ from the one it gets alone
        assert len(set(together.steps.tolist())) > 1
        for i in range(3):
            seg_i = None if segments is None else segments[i : i + 1]
            alone = method.attribute_with_diagnostics(
                x[i : i + 1], segments=seg_i, generator=gens([i]))
            assert alone.steps.item() == together.steps[i].item()
            torch.testing.assert_close(alone.maps[0], together.maps[i], atol=1e-5, rtol=1e-4)


def test_same_seed_same_maps_other_seed_other_maps():
    posterior = as_posterior(tiny_cnn_members())
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    a = OptimizationUA(posterior, max_steps=40, seed=7).attribute(x)
    b = OptimizationUA(posterior, max_steps=40, seed=7).attribute(x)
    c = OptimizationUA(posterior, max_steps=40, seed=8).attribute(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_ablation_switches_change_what_is_learned():
    x = _spot_image()
    base = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0)
    fixed = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0, learn_blur=False)
    plain = OptimizationUA(SpotPosterior((4, 12)), lam=0.5, seed=0, gumbel=False)
    sigma0 = 0.05 * 16
    assert fixed.attribute_with_diagnostics(x).sigma.item() == pytest.approx(sigma0)
    assert base.attribute_with_diagnostics(x).sigma.item() > sigma0  # wider blur, lower spot
    plain_maps = plain.attribute(x)
    assert divmod(plain_maps[0].argmax().item(), 16) == (4, 12)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(1, 8, 8), r"\[B, C, H, W\]"),
        (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
        (torch.full((1, 1, 8, 8), 2.0), r"\[0, 1\]"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_images_are_rejected(x, match):
    with pytest.raises(ValueError, match=match):
        OptimizationUA(as_posterior(tiny_cnn_members())).attribute(x)


def test_bad_segments_and_settings_are_rejected():
    method = OptimizationUA(as_posterior(tiny_cnn_members()))
    with pytest.raises(ValueError, match="segments"):
        method.attribute(torch.rand(2, 1, 8, 8), segments=torch.zeros(3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="tau"):
        OptimizationUA(as_posterior(tiny_cnn_members()), tau=0.0)
    with pytest.raises(ValueError, match="generator"):
        method.attribute(torch.rand(2, 1, 8, 8), generator=[torch.Generator()])


def test_logits_passed_as_probabilities_are_rejected():
    members = tiny_cnn_members()
    method = OptimizationUA(lambda x: torch.stack([m(x) for m in members], 1))
    with pytest.raises(ValueError, match="output='logits'"):
        method.attribute(torch.rand(1, 1, 8, 8))


def test_epistemic_with_one_sample_is_rejected():
    method = OptimizationUA(as_posterior(tiny_cnn_members(members=1)), "epistemic")
    with pytest.raises(ValueError, match="S >= 2"):
        method.attribute(torch.rand(1, 1, 8, 8))
