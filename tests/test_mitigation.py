"""Uncertainty mitigation with attention: eq. 12 on hand-made maps, the normalisation,
and the attention network (α = 0 is the plain network)."""

import math

import pytest
import torch

from uattr.mitigation import AttentionCNN, attention, normalise_map, with_attention
from uattr.zoo.models import SmallCNN


def test_attention_is_eq_12_on_a_hand_made_map():
    m = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    expected = torch.tensor([[[0.0, 0.1875], [0.25, 0.0]]])  # (1 - M) M by hand
    assert torch.equal(attention(m), expected)
    with pytest.raises(ValueError, match="normalised must lie in"):
        attention(m + 0.5)


def test_the_normalised_map_is_a_rescaled_softmax_that_peaks_at_one():
    maps = torch.tensor([[[2.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    got = normalise_map(maps, temperature=0.25)
    # image 0: m / max = [1, 0.5, 0, 0]; exp((m̂ - 1) / T)
    expected = torch.tensor([[1.0, math.exp(-2.0)], [math.exp(-4.0), math.exp(-4.0)]])
    torch.testing.assert_close(got[0], expected, rtol=1e-6, atol=0)
    # the same map at any scale gives the same M
    torch.testing.assert_close(normalise_map(1e-4 * maps)[0], got[0], rtol=1e-5, atol=0)
    # a map with no information gives M = 1, so no attention at all
    assert torch.equal(got[1], torch.ones(2, 2))
    assert torch.equal(attention(got[1]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="maps must be finite"):
        normalise_map(torch.full((1, 2, 2), float("nan")))


def _plain_and_attention(space: str, alpha: float) -> tuple[SmallCNN, AttentionCNN]:
    torch.manual_seed(0)
    model = AttentionCNN(alpha=alpha, space=space).eval()
    return model.net, model


@pytest.mark.parametrize("space", ["latent", "input"])
def test_alpha_zero_gives_exactly_the_plain_network(space):
    plain, model = _plain_and_attention(space, 0.0)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model(with_attention(x, a)), plain(x))


def test_latent_attention_scales_the_last_features_by_one_plus_alpha_a():
    plain, model = _plain_and_attention("latent", 3.0)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    # a constant attention c scales every feature map by 1 + 3c: the same as scaling
    # the last convolution's output by hand
    a = torch.full((2, 28, 28), 0.2)
    h = plain.features[:4](x.contiguous(memory_format=torch.channels_last))
    by_hand = plain.classifier(plain.features[4:](1.6 * h))
    torch.testing.assert_close(model(with_attention(x, a)), by_hand)
    # input space: the image itself is scaled
    plain_in, model_in = _plain_and_attention("input", 3.0)
    torch.testing.assert_close(model_in(with_attention(x, a)), plain_in(1.6 * x))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="space must be one of"):
        AttentionCNN(space="output")
    with pytest.raises(ValueError, match=r"attention_maps must be \[B, H, W\]"):
        with_attention(torch.rand(2, 1, 28, 28), torch.rand(2, 14, 14))


def test_a_row_that_ties_no_attention_on_average_gains_exactly_zero():
    from uattr.experiments.benchmarks.mitigation import _row

    # accuracies in % of 2000 test images (multiples of 0.05) whose paired differences
    # (-0.35, -0.35, +0.7) cancel: float subtraction alone leaves 4.7e-15
    baseline = [{"ACC": a, "NLL": 0.3} for a in (93.35, 93.35, 94.05)]
    scores = [{"ACC": a, "NLL": 0.3} for a in (93.0, 93.0, 94.75)]
    row = _row("grad", "latent", scores, baseline, None)
    assert row["ΔACC"] == 0.0 and row["ΔACC in s.e."] == 0.0
    assert row["ΔACC sd"] == pytest.approx(0.7 * math.sqrt(3) / 2, rel=1e-9)  # sd of the three
