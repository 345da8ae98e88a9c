"""Explanation uncertainty for tabular regression on scikit-learn's diabetes data."""

import pytest
import torch
from torch import nn

from uattr import Ensemble, MCDropout
from uattr.explanation.tabular import explain_features, predictive_variance
from uattr.viz import feature_bars
from uattr.zoo.tabular import GaussianMLP, load_diabetes, train_gaussian_mlp


def test_predictive_variance_by_hand():
    outputs = torch.tensor([[[1.0, 0.0], [3.0, torch.log(torch.tensor(3.0))]]])  # [1, 2, 2]
    parts = predictive_variance(outputs)
    assert parts["aleatoric"].item() == pytest.approx((1 + 3) / 2)
    assert parts["epistemic"].item() == pytest.approx(1.0)  # means 1 and 3: variance 1
    assert parts["total"].item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"\[B, S, 2\]"):
        predictive_variance(outputs[..., :1])


@pytest.fixture(scope="module")
def diabetes():
    train, test = load_diabetes("train"), load_diabetes("test")
    return train, test, train_gaussian_mlp(train, epochs=300)


def test_the_mlp_learns_the_diabetes_data(diabetes):
    train, test, model = diabetes
    assert train.x.shape == (353, 10) and test.x.shape == (89, 10)
    assert abs(train.x.mean().item()) < 1e-5  # standardised on the training split
    with torch.no_grad():
        rmse = (model(test.x)[:, 0] - test.y).pow(2).mean().sqrt().item()
    assert rmse < 0.85  # predicting the mean would give about 1 (standardised target)


def test_integrated_gradients_of_each_sample_sum_to_its_change_from_the_baseline(diabetes):
    _, test, model = diabetes
    posterior = MCDropout(model, samples=6)
    x = test.x[:5]
    # the midpoint rule's error falls as 1/steps on a ReLU network: 0.017 at 256 steps
    result = explain_features(posterior.logits, x, "integrated gradients", steps=4096)
    means = posterior.logits(x)[..., 0].detach()  # [B, S]
    at_baseline = posterior.logits(torch.zeros_like(x))[..., 0].detach()
    torch.testing.assert_close(result.attributions.sum(-1), means - at_baseline,
                               atol=1e-3, rtol=1e-3)
    assert result.std.max() > 0  # the dropout samples explain differently
    torch.testing.assert_close(result.mean, result.attributions.abs().mean(1))


def test_lime_recovers_the_terms_of_linear_members():
    # member s predicts μ_s(x) = w_s · x: LIME with baseline 0 must find w_s,f · x_f
    members = [nn.Linear(4, 2) for _ in range(3)]
    with torch.no_grad():
        for s, member in enumerate(members):
            member.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0] * 4]) * (s + 1))
            member.bias.zero_()
    x = torch.tensor([[1.0, 1.0, 2.0, -1.0]])
    result = explain_features(Ensemble(members).logits, x, "lime", lime_samples=4000)
    expected = torch.stack([m.weight[0] * x[0] for m in members])[None].detach()  # [1, 3, 4]
    torch.testing.assert_close(result.attributions, expected, rtol=0.03, atol=0.03)


def test_the_bar_chart_shows_mean_and_std_per_feature():
    mean, std = torch.tensor([0.5, 0.2, 0.9]), torch.tensor([0.1, 0.05, 0.3])
    figure = feature_bars(mean, std, ["a", "b", "c"])
    heights = [patch.get_height() for patch in figure.axes[0].patches]
    assert heights == pytest.approx([0.5, 0.2, 0.9])
    with pytest.raises(ValueError, match="len\\(names\\)"):
        feature_bars(mean, std, ["a"])


def test_bad_rows_are_refused():
    model = GaussianMLP(3)
    with pytest.raises(ValueError, match=r"x must be a finite tensor \[B, F\]"):
        explain_features(Ensemble([model]).logits, torch.full((2, 3), float("nan")))
