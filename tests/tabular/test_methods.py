"""Attribution methods on rows: Shapley values of U (exact, sampled, against shap),
occlusion, the optimization-based mask and CovGI, on scores whose answers are known."""

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from uattr.ops.rng import index_generators
from uattr.tabular import (
    RowUncertainty,
    attribute_rows,
    covariance_gi,
    covariance_lrp,
    occlusion,
    optimized_mask,
    row_uncertainty,
    shapley_values,
)

A = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5], dtype=torch.float64)


def additive(x):  # u(x) = Σ_f a_f x_f²: every feature's effect is its own
    return (x**2 * A).sum(1) + 3.0


def interaction(x):  # u(x) = x0 · x1 + x2: the product splits evenly
    return x[:, 0] * x[:, 1] + x[:, 2]


@pytest.fixture(scope="module")
def rows():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(
        7, 5, generator=g, dtype=torch.float64)


def test_shapley_of_an_additive_score_is_each_features_own_effect(rows):
    x, background = rows
    u = RowUncertainty(additive, 5)
    expected = A * (x**2 - (background**2).mean(0))  # φ_f = a_f (x_f² − E_b b_f²)
    torch.testing.assert_close(shapley_values(u, x, background), expected, rtol=0, atol=1e-12)
    # every permutation credits an additive score exactly: sampling is exact here
    torch.testing.assert_close(shapley_values(u, x, background, exact_max_features=2,
                                              n_permutations=4), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(occlusion(u, x, background), expected, rtol=0, atol=1e-12)


def test_an_interaction_is_split_evenly_and_the_values_sum_to_the_gap(rows):
    x, background = rows
    u = RowUncertainty(interaction, 5)
    phi = shapley_values(u, x, background)
    b0, b1 = background[:, 0], background[:, 1]
    # v(∅) = E b0b1, v({0}) = x0 E b1, v({1}) = E b0 x1, v({0, 1}) = x0x1: feature 0 gets
    # the mean of its two marginal gains
    first = 0.5 * ((x[:, 0] * b1.mean() - (b0 * b1).mean())
                   + (x[:, 0] * x[:, 1] - b0.mean() * x[:, 1]))
    torch.testing.assert_close(phi[:, 0], first, atol=1e-12, rtol=0)
    gap = interaction(x) - interaction(background).mean()
    torch.testing.assert_close(phi.sum(1), gap, atol=1e-12, rtol=0)
    sampled = shapley_values(u, x, background, exact_max_features=2, n_permutations=6)
    torch.testing.assert_close(sampled.sum(1), gap, atol=1e-12, rtol=0)  # efficiency, exact
    assert phi[:, 3:].abs().max() < 1e-12  # features the score never reads


def test_exact_shapley_of_a_forest_equals_shaps_kernel_explainer():
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] + rng.normal(size=300) * (0.2 + np.abs(x[:, 1])) > 0
    u = row_uncertainty(RandomForestClassifier(10, min_samples_leaf=5,
                                               random_state=0).fit(x, y))
    background = x[:8]
    ours = shapley_values(u, x[8:11], background).numpy()
    explainer = shap.KernelExplainer(lambda rows: u(torch.tensor(rows)).numpy(), background)
    # 1000 samples ≥ 2^4 − 2 coalitions: shap enumerates them all and solves exactly, so the
    # two agree to the float64 least squares (about 1e-12 relative), not to sampling error
    reference = explainer.shap_values(x[8:11], nsamples=1000, silent=True)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)


def test_sampled_shapley_is_batch_invariant_with_a_generator_per_row(rows):
    x, background = rows
    u = RowUncertainty(interaction, 5)

    def sampled(indices):
        return shapley_values(u, x[indices], background, exact_max_features=2,
                              n_permutations=4, generator=index_generators(0, indices))
    torch.testing.assert_close(sampled([3]), sampled([0, 1, 2, 3, 4])[3:4], rtol=0, atol=0)
    assert not torch.equal(sampled([3]), sampled([2]))  # distinct rows, distinct values


def test_the_optimized_mask_removes_only_the_feature_that_causes_the_uncertainty():
    # u = 0.05 + x2² (differentiable); the background is 0: removing x2 takes U to 0.05
    u = RowUncertainty(lambda x: 0.05 + x[:, 2] ** 2, 4, differentiable=True)
    x = torch.tensor([[1.0, -2.0, 2.0, 0.5], [3.0, 1.0, -1.5, 2.0]], dtype=torch.float64)
    mask = optimized_mask(u, x, torch.zeros(3, 4, dtype=torch.float64), lam=1.0, steps=150)
    assert (mask[:, 2] > 0.9).all() and (mask[:, [0, 1, 3]] < 0.1).all(), mask
    alone = optimized_mask(u, x[1:], torch.zeros(3, 4, dtype=torch.float64), lam=1.0,
                           steps=150, generator=index_generators(0, [1]))
    both = optimized_mask(u, x, torch.zeros(3, 4, dtype=torch.float64), lam=1.0, steps=150,
                          generator=index_generators(0, [0, 1]))
    torch.testing.assert_close(alone, both[1:], rtol=0, atol=1e-12)


def _linear_members(weights):
    members = []
    for w in weights:
        layer = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([w, [0.0, 0.0, 0.0]]))
        members.append(layer)
    return members


def test_covgi_sums_to_the_members_variance_and_credits_the_feature_they_disagree_on():
    # bias-free linear members that differ only in their weight of feature 1
    members = _linear_members([[1.0, 0.5, 2.0], [1.0, 1.5, 2.0], [1.0, -1.0, 2.0]])
    u = row_uncertainty(members, output="logits")
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype=torch.float64)
    phi = covariance_gi(u, x)
    outputs = u.members(x)  # [B, S]: the logit of the predicted class
    torch.testing.assert_close(phi.sum(1), outputs.var(1, correction=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(phi[:, [0, 2]], torch.zeros(2, 2, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_methods_refuse_what_they_cannot_do(rows):
    x, background = rows
    plain = RowUncertainty(additive, 5)
    with pytest.raises(ValueError, match="differentiable"):
        optimized_mask(plain, x, background)
    with pytest.raises(ValueError, match="needs gradients"):
        attribute_rows(plain, x, "covgi")
    with pytest.raises(ValueError, match="background"):
        attribute_rows(plain, x, "shapley")
    with pytest.raises(ValueError, match="method must be one of"):
        attribute_rows(plain, x, "lrp")
    with pytest.raises(ValueError, match="5 features"):
        shapley_values(plain, x[:, :4], background)
    with pytest.raises(ValueError, match="one value per row"):
        shapley_values(RowUncertainty(lambda r: r, 5), x, background)


def test_covlrp_with_gamma_zero_equals_covgi_on_bias_free_relu_members():
    # LRP-0 on bias-free ReLU layers is Gradient×Input (up to ε = 1e-9 and float32)
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(),
                             nn.Linear(5, 2, bias=False)) for _ in range(4)]
    u = row_uncertainty(members, output="logits")
    x = torch.randn(6, 3, dtype=torch.float64)
    gi, lrp = covariance_gi(u, x), covariance_lrp(u, x, gamma=0)
    # float32 relevances of order 1: their products keep about 6 digits
    torch.testing.assert_close(lrp, gi, atol=1e-5 * gi.abs().max().item(), rtol=0)
    assert gi.abs().max() > 1e-3  # the members do disagree


def _lrp_gamma_by_hand(net: nn.Sequential, x: torch.Tensor, target: torch.Tensor,
                       gamma: float) -> torch.Tensor:
    """LRP of a Linear-ReLU-Linear network's output ``target`` ``[B, F]``: LRP-0 on the last
    layer, ``R_j = a_j w_cj`` (its relevance ``f_c`` over ``z_c = f_c``), the γ-rule on the
    first, ``R_i = x_i Σ_j w⁺γ_ji R_j / (w⁺γ_j · x + b_j)``."""
    w1, b1 = net[0].weight.double(), net[0].bias.double()
    w2 = net[2].weight.double()
    hidden = torch.relu(x @ w1.T + b1)  # [B, H]
    r_hidden = hidden * w2[target]  # [B, H]
    w_gamma = w1 + gamma * w1.clamp(min=0)  # [H, F]
    z = x @ w_gamma.T + b1  # [B, H]
    return x * ((r_hidden / z) @ w_gamma)


def test_covlrp_is_the_covariance_of_lrp_gamma_by_hand_and_leaves_the_members_alone():
    torch.manual_seed(1)
    members = [nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)) for _ in range(4)]
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in members]
    u = row_uncertainty(members, output="logits")
    x = torch.randn(5, 3, dtype=torch.float64)
    phi = covariance_lrp(u, x, gamma=0.2)
    with torch.no_grad():
        logits = torch.stack([net(x.float()) for net in members], 1).double()  # [B, S, C]
    target = logits.softmax(-1).mean(1).argmax(-1)
    relevance = torch.stack([_lrp_gamma_by_hand(net, x, target, 0.2) for net in members], 1)
    centred = relevance - relevance.mean(1, keepdim=True)  # [B, S, F]
    by_hand = (centred * centred.sum(2, keepdim=True)).mean(1)
    torch.testing.assert_close(phi, by_hand, atol=1e-5 * by_hand.abs().max().item(), rtol=0)
    # the γ-rule is not Gradient×Input: CovLRP and CovGI differ on these members
    gi = covariance_gi(u, x)
    assert (phi - gi).abs().max() > 100 * 1e-5 * by_hand.abs().max()
    # Captum's rules and weight changes went to copies
    for net, state in zip(members, before, strict=True):
        assert not any(hasattr(m, "rule") for m in net.modules())
        assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="gamma"):
        covariance_lrp(u, x, gamma=-1)


def test_a_dataframe_keeps_its_feature_names_and_index(rows):
    pd = pytest.importorskip("pandas")
    x, background = rows
    frame = pd.DataFrame(x.numpy(), columns=list("abcde"), index=[10, 11, 12, 13, 14, 15])
    phi = attribute_rows(RowUncertainty(additive, 5), frame, "occlusion",
                         background=pd.DataFrame(background.numpy(), columns=list("abcde")))
    assert list(phi.columns) == list("abcde") and list(phi.index) == list(range(10, 16))
    np.testing.assert_allclose(phi.to_numpy(), (A * (x**2 - (background**2).mean(0))).numpy(),
                               atol=1e-12)


def test_mc_dropout_rows_give_the_sampled_variance_and_covgi_by_hand():
    from uattr import MCDropout
    from uattr.tabular import variance_decomposition
    from uattr.zoo.tabular import GaussianMLP

    torch.manual_seed(0)
    posterior = MCDropout(GaussianMLP(3, hidden=16, dropout=0.3), samples=6, seed=1)
    u = row_uncertainty(posterior, "total", output="gaussian")
    x = torch.randn(4, 3, dtype=torch.float64)
    out = posterior.logits(x.float()).double()  # [B, S, 2], the frozen samples
    torch.testing.assert_close(u(x), variance_decomposition(out[..., 0], out[..., 1].exp())[
        "total"], rtol=1e-6, atol=0)
    phi = covariance_gi(u, x)
    # by hand: each sample's Gradient×Input of its mean, then the covariance of its sum
    sums = []
    for s in range(6):
        leaf = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(posterior.logits(leaf.float())[:, s, 0].sum(), leaf)
        sums.append((grad * x).sum(1))
    sums = torch.stack(sums, 1)  # [B, S]
    torch.testing.assert_close(phi.sum(1), sums.var(1, correction=0), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="use 'covgi'"):
        covariance_lrp(u, x)


def test_covgi_of_an_ensemble_in_one_backward_call_is_that_of_one_call_per_member():
    # each member reads its own copy of the rows, so one call separates their gradients;
    # the reference asks for member s's gradient alone, S times
    torch.manual_seed(3)
    members = [nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)) for _ in range(4)]
    u = row_uncertainty(members, output="logits")
    x = torch.randn(5, 4, dtype=torch.float64)
    rows = x.clone().requires_grad_(True)
    outputs = u.members(rows)  # [B, S]
    grads = torch.stack([torch.autograd.grad(outputs[:, s].sum(), rows, retain_graph=True)[0]
                         for s in range(len(members))], 1)  # [B, S, F]
    relevance = grads * x[:, None]
    centred = relevance - relevance.mean(1, keepdim=True)
    by_hand = (centred * centred.sum(2, keepdim=True)).mean(1)  # [B, F]
    phi = covariance_gi(u, x)
    # float32 networks: a relative 1e-6 is some ten float32 roundings
    torch.testing.assert_close(phi, by_hand, atol=1e-6 * by_hand.abs().max().item(), rtol=0)
    assert by_hand.abs().max() > 1e-3  # the members disagree: a map that could be wrong
