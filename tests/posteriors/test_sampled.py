"""Sampled posteriors: MC-Dropout, MC-DropConnect, Flipout; frozen and fresh noise."""

import math

import pytest
import torch
from torch import nn

from tests._models import tiny_dropout_cnn, tiny_posteriors
from uattr import Flipout, MCDropConnect, MCDropout, UABackprop, uncertainty
from uattr.posteriors.stochastic import FlipoutLinear, flipout_kl, to_flipout

X = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def _build(kind: str, seed: int = 0, freeze: bool = True):
    net = tiny_dropout_cnn(seed=1)
    if kind == "mc-dropout":
        return MCDropout(net, samples=5, seed=seed, freeze=freeze)
    if kind == "dropconnect":
        return MCDropConnect(net, p=0.3, samples=5, seed=seed, freeze=freeze)
    return Flipout(to_flipout(net, rho_init=-2.0).eval(), samples=5, seed=seed, freeze=freeze)


@pytest.mark.parametrize("kind", ["mc-dropout", "dropconnect", "flipout"])
def test_frozen_noise_is_a_fixed_function_of_the_seed(kind):
    posterior = _build(kind)
    first = posterior(X)
    torch.testing.assert_close(posterior(X), first, rtol=0, atol=0)  # the same, exactly
    torch.testing.assert_close(_build(kind)(X), first, rtol=0, atol=0)  # a new object too
    assert (first[:, 0] - first[:, 1]).abs().max() > 1e-3  # the samples differ
    assert (_build(kind, seed=1)(X) - first).abs().max() > 1e-3  # another seed differs
    # the draws are shared by the batch: an image's samples do not depend on the others
    torch.testing.assert_close(posterior(X[2:3]), first[2:3])
    fresh = _build(kind, freeze=False)
    assert (fresh(X) - fresh(X)).abs().max() > 1e-3  # unfrozen: new noise at every call


def test_mc_dropout_with_p_zero_is_the_deterministic_network():
    net = tiny_dropout_cnn(p=0.0, seed=2)
    probs = MCDropout(net, samples=3)(X)  # [B, S, C]
    expected = net(X).softmax(-1)
    for s in range(3):
        torch.testing.assert_close(probs[:, s], expected)
    assert uncertainty(probs, "epistemic").max() < 1e-6


def test_mc_dropout_masks_are_bernoulli_and_rescaled():
    # a dropout of p = 0.25 on 4000 ones, then their sum: each sample's logit is
    # (kept count) / 0.75, so it is a multiple of 1/0.75 near 4000
    net = nn.Sequential(nn.Dropout(0.25), nn.Linear(4000, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.ones(4000), torch.zeros(4000)]))
        net[1].bias.zero_()
    logits = MCDropout(net, samples=8).logits(torch.ones(2, 4000))[:, :, 0]  # [B, S]
    kept = logits * 0.75
    torch.testing.assert_close(kept, kept.round(), atol=1e-2, rtol=0)
    assert ((kept / 4000 - 0.75).abs() < 0.03).all()
    assert kept[0].unique().numel() == 8  # eight different masks ...
    torch.testing.assert_close(kept[0], kept[1])  # ... shared by both images


def test_dropconnect_drops_weights_not_inputs_and_keeps_the_mean():
    layer = nn.Linear(4000, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(0.5)
    posterior = MCDropConnect(layer, p=0.4, samples=6)
    logits = posterior.logits(torch.ones(3, 4000))  # [B, S, C]
    kept = (logits - 0.5) * 0.6  # weights kept per output unit; the bias is never dropped
    torch.testing.assert_close(kept, kept.round(), atol=1e-2, rtol=0)
    assert ((kept / 4000 - 0.6).abs() < 0.03).all()
    assert (kept[0, :, 0] != kept[0, :, 1]).any()  # each weight has its own mask
    torch.testing.assert_close(layer.weight, torch.ones(2, 4000))  # the model is untouched
    assert MCDropConnect(layer, p=0.0, samples=2).logits(torch.ones(1, 4000))[0, 0, 0] == 4000.5


def test_flipout_samples_are_mu_plus_sigma_eps_and_the_kl_is_the_gaussian_one():
    layer = FlipoutLinear(1, 1, rho_init=math.log(math.e - 1))  # softplus(ρ) = σ = 1
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.bias.fill_(0.0)
    # KL(N(0.5, 1) || N(0, 1)) = 0.5² / 2
    assert flipout_kl(layer).item() == pytest.approx(0.125, abs=1e-6)
    samples = Flipout(layer, samples=4000).logits(torch.ones(1, 1))[0, :, 0]  # w_s · 1
    assert samples.mean().item() == pytest.approx(0.5, abs=0.06)
    assert samples.std().item() == pytest.approx(1.0, abs=0.05)
    assert layer.weight_noise is None  # the noise is removed after the call
    layer.eval()
    assert layer(torch.ones(1, 1)).item() == 0.5  # no sample set: the mean network


def test_the_flipout_estimator_is_unbiased_in_training():
    torch.manual_seed(0)
    net = to_flipout(nn.Sequential(nn.Linear(3, 2)), rho_init=0.0)  # σ = log 2
    x = torch.tensor([[1.0, -2.0, 0.5]])
    mean = net.eval()(x)[0]
    net.train()
    out = torch.cat([net(x) for _ in range(4000)])  # a fresh ΔW at every call
    torch.testing.assert_close(out.mean(0), mean, atol=0.1, rtol=0)
    # Var(Σ_i x_i ΔW_i) = σ² Σ_i x_i² for each output
    assert out.var(0).mean().item() == pytest.approx(math.log(2) ** 2 * 5.25, rel=0.06)
    rows = net(x.repeat(50, 1))  # one ΔW, but every image its own sign flips
    assert rows.std(0).min() > 0.1


@pytest.mark.parametrize("kind", ["ensemble", "mc-dropout", "dropconnect", "flipout"])
def test_ua_backprop_is_complete_on_every_posterior(kind):
    posterior = tiny_posteriors()[kind]
    maps = UABackprop(posterior, "total").attribute(X)
    torch.testing.assert_close(maps.sum((1, 2)), uncertainty(posterior(X), "total").detach(),
                               rtol=1e-4, atol=1e-5)


def test_sampled_posteriors_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"no nn\.Dropout"):
        MCDropout(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="samples must be a positive int"):
        MCDropout(tiny_dropout_cnn(), samples=0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        MCDropConnect(nn.Linear(3, 2), p=1.0)
    with pytest.raises(ValueError, match="no Flipout layers"):
        Flipout(nn.Linear(3, 2))
