import math

import pytest
import torch
from torch import nn

from uattr.uq import Ensemble, as_posterior, decompose, predict_probs, uncertainty


def test_two_opposite_members_are_purely_epistemic():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [B=1, S=2, C=2]
    u = decompose(probs)
    assert u["total"].item() == pytest.approx(math.log(2))
    assert u["aleatoric"].item() == pytest.approx(0.0, abs=1e-7)
    assert u["epistemic"].item() == pytest.approx(math.log(2))


def test_identical_members_have_no_epistemic_uncertainty():
    p = torch.tensor([0.2, 0.3, 0.5])
    probs = p.expand(1, 4, 3).clone()
    u = decompose(probs)
    expected = -(p * p.log()).sum().item()
    assert u["total"].item() == pytest.approx(expected, rel=1e-6)
    assert u["aleatoric"].item() == pytest.approx(expected, rel=1e-6)
    assert u["epistemic"].item() == pytest.approx(0.0, abs=1e-6)


def test_mixed_case_by_hand():
    # members [0.5, 0.5] and [1, 0]: p̄ = [0.75, 0.25]
    probs = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    u = decompose(probs)
    total = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    aleatoric = 0.5 * math.log(2)
    assert u["total"].item() == pytest.approx(total, rel=1e-6)
    assert u["aleatoric"].item() == pytest.approx(aleatoric, rel=1e-6)
    assert u["epistemic"].item() == pytest.approx(total - aleatoric, rel=1e-6)


def test_epistemic_uncertainty_of_members_that_nearly_agree_keeps_its_digits():
    # members [0.5 ± d, 0.5 ∓ d]: U_e = log 2 - H(0.5 + d) ≈ 2d², a difference of two
    # numbers near log 2. Reference in float64 from the same float32 probabilities; float32
    # arithmetic keeps only ~3 digits of it at d = 0.01, float64 all of float32's.
    for d in (0.01, 0.003):
        probs = torch.tensor([[[0.5 + d, 0.5 - d], [0.5 - d, 0.5 + d]]])
        wide = probs.double()
        mean = wide.mean(1)
        total = -(mean * mean.log()).sum()
        aleatoric = -(wide * wide.log()).sum(-1).mean()
        u = decompose(probs)
        assert u["epistemic"].dtype == torch.float32
        assert u["epistemic"].item() == pytest.approx((total - aleatoric).item(), rel=1e-6)


def test_zero_probabilities_give_no_nan_even_in_gradients():
    probs = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], requires_grad=True)
    for kind in ("total", "aleatoric", "epistemic"):
        value = uncertainty(probs, kind)
        assert value.item() == 0.0
    uncertainty(probs, "total").sum().backward()
    assert torch.isfinite(probs.grad).all()


def test_callable_uncertainty_is_used():
    probs = torch.tensor([[[0.9, 0.1], [0.6, 0.4]]])
    value = uncertainty(probs, lambda p: 1 - p.mean(1).max(-1).values)
    assert value.item() == pytest.approx(0.25)


class _Stacked(nn.Module):
    """TorchUncertainty's layout: members stacked as [(S·B), C], member-major."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.cat([m(x) for m in self.members])


def test_every_layout_gives_the_same_posterior():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(3)]
    x = torch.rand(5, 1, 2, 2)
    expected = torch.stack([m(x).softmax(-1) for m in members], 1)  # [B, S, C]
    from_list = as_posterior(members)(x)
    from_stacked = as_posterior(_Stacked(members), num_samples=3)(x)
    from_bsc = as_posterior(lambda z: torch.stack([m(z) for m in members], 1))(x)
    from_probs = as_posterior(lambda z: expected, output="probs")(x)
    for probs in (from_list, from_stacked, from_bsc, from_probs):
        torch.testing.assert_close(probs, expected)


def test_probabilities_given_as_logits_warn():
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    with pytest.warns(UserWarning, match="output='probs'"):
        as_posterior([lambda x: probs, lambda x: probs])(torch.zeros(2, 1, 1, 1))


def test_predict_probs_batches_large_inputs_identically():
    members = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(2)]
    post = Ensemble(members)
    x = torch.rand(23, 1, 2, 2)
    torch.testing.assert_close(predict_probs(post, x, batch_size=5), post(x).detach())


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (torch.rand(2, 3), r"\[B, S, C\]"),
        (torch.full((1, 2, 2), float("nan")), "NaN"),
        (torch.tensor([[[0.7, 0.7]]]), "sum to 1"),
        (torch.tensor([[[1.5, -0.5]]]), "non-negative"),
    ],
)
def test_bad_probabilities_are_rejected(probs, match):
    with pytest.raises(ValueError, match=match):
        uncertainty(probs, "total")


def test_epistemic_needs_two_samples():
    with pytest.raises(ValueError, match="S >= 2"):
        uncertainty(torch.tensor([[[0.3, 0.7]]]), "epistemic")


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind must be one of"):
        uncertainty(torch.tensor([[[0.3, 0.7]]]), "variance")


def test_single_model_without_num_samples_is_rejected():
    post = as_posterior(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    with pytest.raises(ValueError, match="no posterior samples"):
        post(torch.rand(2, 1, 2, 2))


def test_stacked_output_of_the_wrong_length_is_rejected():
    post = as_posterior(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), num_samples=3)
    with pytest.raises(ValueError, match=r"\[\(S·B\), C\]"):
        post(torch.rand(2, 1, 2, 2))


@pytest.mark.parametrize(("kwargs", "match"), [({"output": "scores"}, "output must be"),
                                                ({"num_samples": 0}, "num_samples")])
def test_bad_wrapper_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        as_posterior([nn.Identity()], **kwargs)


def test_empty_ensemble_is_rejected():
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def test_a_single_sample_is_that_sample_of_the_posterior():
    from tests._models import tiny_posteriors
    from uattr.uq import SingleSample

    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    posteriors = tiny_posteriors()
    # a posterior without sample_probs: the slice of its full forward
    posteriors["callable"] = as_posterior(lambda z: posteriors["ensemble"].logits(z))
    for kind, posterior in posteriors.items():
        full = posterior(x)  # [B, S, C]
        for s in range(full.shape[1]):
            alone = SingleSample(posterior, s)(x)
            assert alone.shape == (3, 1, full.shape[2]), kind
            torch.testing.assert_close(alone, full[:, s : s + 1], rtol=1e-5, atol=1e-7)


def test_uncertainty_fn_is_the_bridge_to_captum():
    """Captum's Saliency over ``uncertainty_fn`` is the gradient of U computed by hand, and
    its Integrated Gradients keep completeness: the attributions sum to U(x) − U(0)."""
    from captum.attr import IntegratedGradients, Saliency

    from tests._models import tiny_cnn_members
    from uattr import as_posterior, uncertainty_fn

    posterior = as_posterior(tiny_cnn_members(in_channels=3, members=3, seed=4))
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    u = uncertainty_fn(posterior, "epistemic")
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(u(leaf).sum(), leaf)
    saliency = Saliency(u).attribute(x, abs=False)
    assert torch.allclose(saliency, grad, rtol=1e-5, atol=1e-7)
    attributions = IntegratedGradients(u).attribute(x, baselines=torch.zeros_like(x),
                                                    n_steps=200)
    expected = u(x) - u(torch.zeros_like(x))  # [B]
    # a Gauss-Legendre sum of 200 points on a smooth path: within 1% of U's change
    assert torch.allclose(attributions.sum((1, 2, 3)), expected,
                          atol=1e-2 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        uncertainty_fn(posterior, "variance")
