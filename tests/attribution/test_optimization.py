import math
import warnings

import pytest
import torch
from torch import nn

from tests._models import SpotPosterior, tiny_cnn_members
from uattr import OptimizationUA, UninformativeMapWarning, as_posterior, segment
from uattr.attribution.base import UncertaintyAttribution
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


def test_a_blur_of_fixed_width_is_computed_once_and_changes_no_map(monkeypatch):
    import uattr.attribution.optimization as optimization

    blur = optimization.gaussian_blur
    x = torch.cat([_spot_image(), _spot_image((10, 5))])
    kwargs = dict(lam=0.5, seed=0, max_steps=60, early_stop=False)
    calls = []

    def counted(images, sigma, **kw):
        calls.append(images.shape[0])
        return blur(images, sigma, **kw)

    monkeypatch.setattr(optimization, "gaussian_blur", counted)
    fixed = OptimizationUA(SpotPosterior((4, 12)), learn_blur=False, **kwargs).attribute(x)
    assert calls == [2]  # the whole batch, once
    calls.clear()
    OptimizationUA(SpotPosterior((4, 12)), **kwargs).attribute(x)
    assert calls == [2] * 61  # at every step, and for the binary mask's U at the end
    # a learned width that never moves (this blur ignores it) blurs the images anew at
    # every step: the very same maps as the width fixed and the images blurred once
    monkeypatch.setattr(optimization, "gaussian_blur",
                        lambda images, sigma, **kw: blur(images, 0.05 * 16, **kw))
    assert torch.equal(OptimizationUA(SpotPosterior((4, 12)), **kwargs).attribute(x), fixed)


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


def test_the_mask_rule_stops_once_the_binary_mask_has_settled():
    # Without draws or a learnable blur every logit's gradient keeps its sign from the
    # first step on (the spot's quadrant: U falls as a blur of 2.4 px dims the spot, by
    # more than the quadrant's λ/4; the others: only the sparsity term), so Adam moves
    # each logit the same way at every step and the binary mask 1[v > 0] is the final
    # one from step 1. The first check
    # (step c) sees it change from the all-zero start, the next `patience` checks see it
    # unchanged: the rule stops at exactly (patience + 1) · c steps, with the mask that
    # all 50 steps reach.
    x = _spot_image()
    quadrants = segment.grid(x, cell=8)
    settings = dict(lam=0.5, gumbel=False, learn_blur=False, sigma_init=0.15, seed=0,
                    max_steps=50)
    free = OptimizationUA(SpotPosterior((4, 12)), early_stop=False, **settings)
    final = free.attribute_with_diagnostics(x, segments=quadrants)
    assert (final.probs[0] > 0.5).tolist() == [False, True, False, False]
    for check_every, patience in ((10, 2), (10, 1), (7, 3)):
        stopped = OptimizationUA(SpotPosterior((4, 12)), stop="mask", mask_every=check_every,
                                 mask_patience=patience, **settings).attribute_with_diagnostics(
            x, segments=quadrants)
        assert stopped.steps.item() == (patience + 1) * check_every
        assert stopped.converged.all()
        assert torch.equal(stopped.probs > 0.5, final.probs > 0.5)
    # the loss rule runs on to the limit: the loss still falls by more than 0.1% per check
    by_loss = OptimizationUA(SpotPosterior((4, 12)), **settings).attribute_with_diagnostics(
        x, segments=quadrants)
    assert by_loss.steps.item() == 50 and not by_loss.converged.any()


def _steep_linear_ensemble():
    """Three seeded linear members over 8×8 images with weights ×20 (their Gumbel-sigmoid
    masks keep moving for a while) and two seeded images."""
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(64, 3)) for _ in range(3)]
    with torch.no_grad():
        for member in members:
            member[1].weight.mul_(20)
    return as_posterior(members), torch.rand(2, 1, 8, 8,
                                             generator=torch.Generator().manual_seed(4))


def test_the_mask_rule_stops_where_its_definition_says_along_the_recorded_path():
    # A steep linear ensemble over 64 pixels with the Gumbel-sigmoid: its binary mask keeps
    # flipping for a while. The checks draw nothing, so the stopped run is the free run cut
    # short: it must stop at the first check (every 10 steps) that ends `mask_patience`
    # checks in a row at which at most `mask_tol` of the pixels flipped, read off the free
    # run's recorded probabilities; and allowing more flips can only stop it sooner.
    posterior, x = _steep_linear_ensemble()
    settings = dict(lam=0.1, lr=0.03, seed=1, max_steps=150)
    free = OptimizationUA(posterior, early_stop=False, check_every=10, **settings)
    binary = free.attribute_with_diagnostics(x, trace=True).trace.probs > 0.5  # [T, B, 64]
    flipped = (binary[1:] != binary[:-1]).float().mean(-1)  # [T-1, B]: at steps 10, 20, ...
    steps = []
    for share in (0.0, 0.05, 0.3):
        stopped = OptimizationUA(posterior, stop="mask", mask_tol=share, mask_every=10,
                                 mask_patience=2, **settings).attribute_with_diagnostics(x)
        for b in range(2):
            quiet = (flipped[:, b] <= share).tolist()
            ends = [10 * (t + 1) for t in range(1, len(quiet)) if quiet[t] and quiet[t - 1]]
            assert stopped.steps[b].item() == (ends[0] if ends else 150)
        steps.append(stopped.steps)
    assert (steps[0] >= steps[1]).all() and (steps[1] >= steps[2]).all()
    assert (steps[0] > steps[2]).all()  # the flips were there to be tolerated


def test_the_movement_rule_stops_within_its_bound_with_the_optimal_mask():
    # The toy of the mask rule's test: without draws or a learnable blur each logit moves
    # one way from the first step (asserted below on the free run), so each p_k is
    # monotone and the movements between checks add up to at most |p_k(end) - p_k(0)|
    # <= 0.5 per segment. Their mean over the segments is then at least `tol` at no more
    # than 0.5 / tol checks: with patience 1 the rule stops by check floor(0.5 / tol) + 1,
    # i.e. within c · (floor(0.5 / tol) + 1) steps, and since the binary mask is final
    # from step 1 it stops on the optimum (the spot's quadrant alone).
    x = _spot_image()
    quadrants = segment.grid(x, cell=8)
    settings = dict(lam=0.5, gumbel=False, learn_blur=False, sigma_init=0.15, seed=0,
                    lr=0.1, max_steps=400)
    free = OptimizationUA(SpotPosterior((4, 12)), early_stop=False, check_every=10,
                          **settings).attribute_with_diagnostics(x, segments=quadrants,
                                                                 trace=True)
    steps_of_p = free.trace.probs[:, 0].diff(dim=0)  # [T-1, 4]
    assert ((steps_of_p >= 0).all(0) | (steps_of_p <= 0).all(0)).all()  # monotone
    for tol, every in ((0.05, 10), (0.02, 10), (0.05, 7)):
        stopped = OptimizationUA(SpotPosterior((4, 12)), stop="movement", move_tol=tol,
                                 mask_every=every, **settings).attribute_with_diagnostics(
            x, segments=quadrants)
        assert stopped.converged.all()
        assert stopped.steps.item() <= every * (math.floor(0.5 / tol) + 1)
        assert (stopped.probs[0] > 0.5).tolist() == [False, True, False, False]


def test_the_movement_rule_stops_where_its_definition_says_along_the_recorded_path():
    # With the Gumbel-sigmoid the probabilities wander; the checks draw nothing, so the
    # stopped run is the free run cut short. It must stop at the first check (every 10
    # steps) ending `move_patience` checks in a row at which the image's probabilities
    # moved by less than `move_tol` on average over its own segments, read off the free
    # run's record: image 0 has 64 one-pixel segments, image 1 four quadrants, so a mean
    # over the batch's 64 slots would stop image 1 far too early.
    posterior, x = _steep_linear_ensemble()
    segments = torch.stack([segment.pixels(x[:1])[0], segment.grid(x[1:], cell=4)[0]])
    counts = torch.tensor([64.0, 4.0])
    settings = dict(lam=0.1, lr=0.03, seed=1, max_steps=150)
    free = OptimizationUA(posterior, early_stop=False, check_every=10, **settings)
    probs = free.attribute_with_diagnostics(x, segments=segments, trace=True).trace.probs
    moved = (probs[1:] - probs[:-1]).abs().sum(-1) / counts  # [T-1, B]: steps 10, 20, ...
    stops = []
    for tol, patience in ((0.01, 1), (0.02, 1), (0.02, 2), (0.05, 1)):
        stopped = OptimizationUA(posterior, stop="movement", move_tol=tol, mask_every=10,
                                 move_patience=patience, **settings)
        steps = stopped.attribute_with_diagnostics(x, segments=segments).steps
        for b in range(2):
            quiet = (moved[:, b] < tol).tolist()
            ends = [10 * (t + 1) for t in range(patience - 1, len(quiet))
                    if all(quiet[t - patience + 1 : t + 1])]
            assert steps[b].item() == (ends[0] if ends else 150)
        stops.append(steps)
    assert (stops[0] >= stops[1]).all() and (stops[2] >= stops[1]).all()
    assert (stops[0] > stops[3]).any()  # the movement was there to be tolerated


def _linear_uncertainty_posterior(weights):
    """U(x) = 0.25 + <weights, x> exactly: a posterior whose first sample's first class
    probability is that (the rest fills the simplex), read by an uncertainty callable."""
    def posterior(x):
        p0 = 0.25 + (x * weights).sum((1, 2, 3))  # [B]
        p = torch.stack([p0, 1 - p0], -1)[:, None]  # [B, 1, 2]
        return p.expand(-1, 2, -1)
    return as_posterior(posterior, output="probs")


def _first_sample_first_class(p):
    return p[:, 0, 0]


def test_the_first_order_blur_effect_is_exact_for_a_linear_uncertainty():
    from uattr.attribution.optimization import first_order_blur_effect
    from uattr.ops.perturb import gaussian_blur

    gen = torch.Generator().manual_seed(5)
    weights = 0.002 * torch.randn(1, 3, 10, 12, generator=gen)
    posterior = _linear_uncertainty_posterior(weights)
    method = OptimizationUA(posterior, _first_sample_first_class)
    x = torch.rand(2, 3, 10, 12, generator=gen)
    effect = first_order_blur_effect(method.uncertainty_of, x, 1.2)  # [B, H, W]
    region = torch.zeros(10, 12, dtype=torch.bool)
    region[2:6, 3:9] = True
    blurred = torch.where(region, gaussian_blur(x, 1.2), x)
    fall = method.uncertainty_of(x) - method.uncertainty_of(blurred)
    # U is linear: its fall is the effect summed over the region, to float32 rounding of
    # sums of ~100 terms of size ~1e-3 around U ~ 0.25 (ε·0.25·10 ≈ 3e-7)
    torch.testing.assert_close(fall, effect[:, region].sum(1), rtol=0, atol=3e-6)


LAM = 8e-4  # a quadrant's share λ/4 = 2e-4 is of the size of its first-order effects


def test_the_warm_start_begins_at_the_one_pass_map():
    from uattr.attribution.optimization import first_order_blur_effect

    gen = torch.Generator().manual_seed(6)
    weights = 0.001 * torch.rand(1, 1, 8, 8, generator=gen)
    weights[..., :4, :] *= 10  # blurring the top half moves U more than the bottom
    posterior = _linear_uncertainty_posterior(weights)
    x = torch.rand(3, 1, 8, 8, generator=gen)
    quadrants = segment.grid(x, cell=4)  # 4 segments of 16 pixels
    method = OptimizationUA(posterior, _first_sample_first_class, lam=LAM, init="first-order",
                            init_scale=2.0, early_stop=False, max_steps=20)
    traced = method.attribute_with_diagnostics(x, segments=quadrants, trace=True)
    effect = first_order_blur_effect(method.uncertainty_of, x, 0.05 * 8)  # σ0
    per_segment = torch.stack([effect.flatten(1)[:, quadrants[0].flatten() == k].sum(1)
                               for k in range(4)], 1)  # [B, 4]
    cost = LAM / 4
    logits = 2.0 * ((per_segment - cost) / cost).clamp(-1, 1)
    assert (logits.abs() < 2.0).sum() >= 4 and (logits == 2.0).any() and (logits == -2.0).any()
    torch.testing.assert_close(traced.trace.probs[0], torch.sigmoid(logits), rtol=0, atol=1e-6)
    assert traced.trace.steps[0].item() == 0
    # the cold start begins at p = 0.5 everywhere
    cold = OptimizationUA(posterior, _first_sample_first_class, lam=LAM, early_stop=False,
                          max_steps=20).attribute_with_diagnostics(x, segments=quadrants,
                                                                   trace=True)
    assert torch.equal(cold.trace.probs[0], torch.full((3, 4), 0.5))


def test_stop_and_init_settings_are_checked():
    posterior = SpotPosterior((4, 12))
    with pytest.raises(ValueError, match="stop must be one of"):
        OptimizationUA(posterior, stop="steps")
    with pytest.raises(ValueError, match="init must be one of"):
        OptimizationUA(posterior, init="random")
    with pytest.raises(ValueError, match="mask_tol"):
        OptimizationUA(posterior, mask_tol=1.0)
    with pytest.raises(ValueError, match="init_scale"):
        OptimizationUA(posterior, init_scale=0.0)


class _FixedMap(UncertaintyAttribution):
    """An explainer whose map is given: ``maps [B, H, W]`` whatever the images."""

    name = "fixed"

    def __init__(self, posterior, maps, seed: int = 0):
        super().__init__(posterior)
        self.maps, self.seed = maps, seed

    def attribute(self, x, *, segments=None):
        return self.maps[: len(x)]

    def settings(self):
        return {"seed": self.seed}


@pytest.mark.filterwarnings("ignore::uattr.UninformativeMapWarning")  # 20 steps: not found
def test_an_explainer_start_begins_at_its_map_averaged_over_each_segment():
    gen = torch.Generator().manual_seed(7)
    posterior = _linear_uncertainty_posterior(0.001 * torch.rand(1, 1, 8, 8, generator=gen))
    x = torch.rand(2, 1, 8, 8, generator=gen)
    quadrants = segment.grid(x, cell=4)  # 4 segments of 16 pixels
    start = torch.rand(2, 8, 8, generator=gen)
    start[0, :4, :4] = 1.0  # a quadrant the explainer is sure of
    start[1, 4:, 4:] = 0.0  # and one it rules out
    method = OptimizationUA(posterior, _first_sample_first_class, lam=LAM, early_stop=False,
                            max_steps=20, init=_FixedMap(posterior, start), init_scale=3.0)
    traced = method.attribute_with_diagnostics(x, segments=quadrants, trace=True)
    means = torch.stack([start.flatten(1)[:, quadrants[0].flatten() == k].mean(1)
                         for k in range(4)], 1)  # [B, 4], q_bk
    expected = torch.sigmoid(3.0 * (2 * means - 1))
    assert expected[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert expected[1, 3] == pytest.approx(torch.sigmoid(torch.tensor(-3.0)).item())
    # mean of 16 values in [0, 1] and a sigmoid: float32 rounding, far below 1e-6
    torch.testing.assert_close(traced.trace.probs[0], expected, rtol=0, atol=1e-6)
    assert traced.trace.steps[0].item() == 0


def test_an_explainer_start_is_part_of_the_settings_and_its_maps_are_checked():
    posterior = SpotPosterior((4, 12))
    x = _spot_image()
    one, other = (_FixedMap(posterior, torch.full((1, 16, 16), q)) for q in (0.2, 0.8))
    other.seed = 1
    keys = [OptimizationUA(posterior, init=e).key_settings()["init"] for e in (one, other)]
    assert keys[0]["class"] == "_FixedMap"
    assert keys[0] != keys[1]  # a cell of one start is not the other's
    with pytest.raises(ValueError, match=r"init: _FixedMap's maps must be probabilities in"):
        OptimizationUA(posterior, init=_FixedMap(posterior, torch.full((1, 16, 16), 1.5)),
                       max_steps=2).attribute(x)
    with pytest.raises(ValueError, match=r"init must be one of .* or an explainer"):
        OptimizationUA(posterior, init=torch.zeros(1, 16, 16))
