"""Explanation distributions over posterior samples, and deletion / insertion curves."""

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from torch import nn

from tests._models import tiny_posteriors
from uattr import LIME, ExplanationUncertainty, IntegratedGradients, segment
from uattr.explanation import explanation_statistics, mean_cv
from uattr.metrics import deletion_insertion
from uattr.uq import SingleSample

X = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(5))


def test_mean_std_cv_agree_with_numpy_and_the_guard_zeroes_empty_pixels():
    maps = torch.tensor([[[[1.0, 0.0], [2.0, 1e-12]]], [[[3.0, 0.0], [2.0, 0.0]]],
                         [[[2.0, 0.0], [2.0, 0.0]]]]).permute(1, 0, 2, 3)  # [B=1, S=3, 2, 2]
    mean, std, cv = explanation_statistics(maps)
    numpy = maps.numpy()
    np.testing.assert_allclose(mean.numpy(), numpy.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), numpy.std(1), rtol=1e-6)
    assert cv[0, 0, 0].item() == pytest.approx(np.std([1, 3, 2]) / 2)
    assert cv[0, 1, 0].item() == 0.0  # three equal explanations: no spread
    assert cv[0, 0, 1].item() == 0.0  # no sample finds the pixel relevant: guarded, not NaN
    assert cv[0, 1, 1].item() == 0.0  # (1e-12 / 3 is below 1e-6 of the largest mean)
    with pytest.raises(ValueError, match="non-negative"):
        explanation_statistics(-maps)


def test_mean_cv_averages_only_where_the_mean_is_positive():
    mean = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # [B=2, 2, 2]
    cv = torch.tensor([[[0.5, 9.0], [1.5, 9.0]], [[7.0, 7.0], [7.0, 7.0]]])
    # image 0: (0.5 + 1.5) / 2 (the 9s lie where the CV is undefined); image 1: no pixel
    torch.testing.assert_close(mean_cv(mean, cv), torch.tensor([1.0, 0.0]))


class _Scores(nn.Module):
    """``x -> P[:, s, t]`` for Captum, one sample at a time."""

    def __init__(self, posterior, targets):
        super().__init__()
        self.posterior, self.targets = posterior, targets

    def forward(self, x):
        return self.posterior(x).gather(2, self.targets[..., None])[..., 0]  # [B, S]


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize("kind", ["ensemble", "mc-dropout", "dropconnect", "flipout"])
def test_guided_backprop_of_each_sample_is_captums(kind):
    posterior = tiny_posteriors()[kind]
    explainer = ExplanationUncertainty(posterior, "guided backprop")
    result = explainer.explain(X)
    scores = _Scores(posterior, result.targets)
    for s in range(result.maps.shape[1]):
        expected = CaptumGuidedBackprop(scores).attribute(X.clone().requires_grad_(),
                                                          target=s)
        torch.testing.assert_close(result.maps[:, s], expected.abs().mean(1).detach())
    plain = torch.autograd.functional.jacobian(lambda z: scores(z).sum(0), X)  # [S, B, ...]
    assert (plain.abs().mean(2).transpose(0, 1) - result.maps).abs().max() > 1e-4  # guided
    torch.testing.assert_close(result.mean, result.maps.mean(1))


def test_integrated_gradients_of_each_sample_are_complete():
    posterior = tiny_posteriors()["mc-dropout"]
    result = ExplanationUncertainty(posterior, "integrated gradients", ig_steps=200).explain(X)
    targets = result.targets  # [B, S]
    scores = lambda z: posterior(z).gather(2, targets[..., None])[..., 0]  # noqa: E731
    gaps = (scores(X) - scores(torch.zeros_like(X))).detach()  # [B, S]
    for s in range(targets.shape[1]):
        # sample s alone, its class score (rows: whole copies of the batch of 4)
        score = lambda p, t=targets[:, s]: p[:, 0].gather(1, t.repeat(len(p) // 4)[:, None])[:, 0]  # noqa: E731
        signed = IntegratedGradients(SingleSample(posterior, s), score, n_steps=200,
                                     reference=0.0, rule="riemann_middle").attribute_signed(X)
        # Σ_pixels IG_s = f_s(x) - f_s(black), for every image
        torch.testing.assert_close(signed.sum((1, 2, 3)), gaps[:, s], atol=2e-4, rtol=1e-3)
        torch.testing.assert_close(result.maps[:, s], signed.abs().mean(1))


def test_lime_of_each_sample_is_lime_of_that_samples_score():
    posterior = tiny_posteriors()["dropconnect"]
    segments = segment.grid(X, 3)
    labels = torch.full((4,), 2)
    explainer = ExplanationUncertainty(posterior, "lime", target="label", lime_samples=300)
    result = explainer.explain(X, labels=labels, segments=segments,
                               generator=[torch.Generator().manual_seed(i) for i in range(4)])
    assert (result.targets == 2).all()
    for s in range(result.maps.shape[1]):
        lime = LIME(posterior, lambda p, s=s: p[:, s, 2], n_samples=300)
        expected = lime.attribute(X, segments=segments,
                                  generator=[torch.Generator().manual_seed(i)
                                             for i in range(4)])
        torch.testing.assert_close(result.maps[:, s], expected.abs(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["guided backprop", "integrated gradients"])
def test_an_image_gets_the_same_distribution_alone_or_in_a_batch(method):
    explainer = ExplanationUncertainty(tiny_posteriors()["flipout"], method, ig_steps=16)
    together = explainer.explain(X)
    alone = explainer.explain(X[1:2])
    torch.testing.assert_close(alone.maps[0], together.maps[1], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(alone.cv[0], together.cv[1], rtol=1e-4, atol=1e-6)


def test_targets_follow_the_sample_the_mean_or_the_label():
    posterior = tiny_posteriors()["ensemble"]
    probs = posterior(X)
    assert torch.equal(ExplanationUncertainty(posterior, target="sample").targets(X),
                       probs.argmax(-1))
    mean = ExplanationUncertainty(posterior, target="mean").targets(X)
    assert torch.equal(mean, probs.mean(1).argmax(-1)[:, None].expand_as(mean))
    with pytest.raises(ValueError, match="labels must be a tensor"):
        ExplanationUncertainty(posterior, target="label").targets(X)
    with pytest.raises(ValueError, match="method must be one of"):
        ExplanationUncertainty(posterior, "smoothgrad")


def test_deletion_and_insertion_curves_by_hand():
    # score = the mean of the image: 4 pixels of values 4, 3, 2, 1, the map ranks them
    # 1st, 2nd, 3rd, 4th; two steps change 2 pixels each
    x = torch.tensor([4.0, 3.0, 2.0, 1.0]).view(1, 1, 2, 2) / 4
    maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    curves = deletion_insertion(lambda z: z.mean((1, 2, 3)), x, maps, steps=2)
    torch.testing.assert_close(curves["deletion"], torch.tensor([[2.5, 0.75, 0.0]]) / 4)
    torch.testing.assert_close(curves["insertion"], torch.tensor([[0.0, 1.75, 2.5]]) / 4)
    # trapezoid over fractions 0, 0.5, 1
    assert curves["deletion_auc"].item() == pytest.approx((2.5 + 2 * 0.75 + 0) / 4 / 4)
    assert curves["insertion_auc"].item() == pytest.approx((0 + 2 * 1.75 + 2.5) / 4 / 4)
    reverse = deletion_insertion(lambda z: z.mean((1, 2, 3)), x, -maps, steps=2)
    assert reverse["deletion_auc"] > curves["deletion_auc"]  # a worse order deletes later
    with pytest.raises(ValueError, match="maps must have shape"):
        deletion_insertion(lambda z: z.mean((1, 2, 3)), x, maps[0])
