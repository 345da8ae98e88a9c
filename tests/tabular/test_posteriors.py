"""The uncertainty of tabular models: forests, bagging, lists of models, PyTorch networks
and callables give the probabilities and uncertainties computed here by hand."""

import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import (
    BaggingClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from uattr.tabular import classifier_probs, regressor_moments, row_uncertainty


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(size=300) * (0.2 + np.abs(x[:, 1])) > 0).astype(int)
    return x, y


def test_the_forest_posterior_is_its_trees_predict_proba_stacked(data):
    x, y = data
    forest = RandomForestClassifier(8, min_samples_leaf=5, random_state=0).fit(x, y)
    probs = classifier_probs(forest, torch.tensor(x[:20])).numpy()  # [B, S, C]
    stacked = np.stack([tree.predict_proba(x[:20]) for tree in forest.estimators_], 1)
    np.testing.assert_array_equal(probs, stacked)
    np.testing.assert_allclose(probs.mean(1), forest.predict_proba(x[:20]), atol=1e-12)


def test_a_bagged_member_that_missed_a_class_gives_it_zero(data):
    x, _ = data
    labels = np.array(["a", "b", "c"])[np.r_[np.zeros(294, int), np.ones(3, int),
                                             np.full(3, 2)]]
    # k-NN takes no sample_weight, so each member is fit on its own rows alone
    bagging = BaggingClassifier(KNeighborsClassifier(3), n_estimators=6,
                                max_samples=20, max_features=3, random_state=0).fit(x, labels)
    assert any(len(m.classes_) < 3 for m in bagging.estimators_)  # the case under test
    probs = classifier_probs(bagging, torch.tensor(x[:10])).numpy()
    np.testing.assert_allclose(probs.mean(1), bagging.predict_proba(x[:10]), atol=1e-12)


def test_a_list_of_classifiers_is_aligned_on_the_union_of_their_labels(data):
    x, y = data
    # the first never saw "maybe", the second never saw "no": columns maybe / no / yes
    first = LogisticRegression().fit(x, np.array(["no", "yes"])[y])
    second = LogisticRegression().fit(x, np.array(["maybe", "yes"])[y])
    probs = classifier_probs([first, second], torch.tensor(x[:5])).numpy()  # [5, 2, 3]
    np.testing.assert_allclose(probs[:, 0, 1:], first.predict_proba(x[:5]), atol=1e-12)
    np.testing.assert_allclose(probs[:, 1, [0, 2]], second.predict_proba(x[:5]), atol=1e-12)
    assert (probs[:, 0, 0] == 0).all() and (probs[:, 1, 1] == 0).all()


def test_a_torch_ensemble_gives_the_hand_computed_entropies():
    # member 1: logits (0, 0) -> (1/2, 1/2); member 2: (ln 3, 0) -> (3/4, 1/4)
    one, two = nn.Linear(1, 2, bias=False), nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        one.weight.zero_()
        two.weight.copy_(torch.tensor([[math.log(3)], [0.0]]))
    u = {kind: row_uncertainty([one, two], kind, output="logits")(torch.ones(1, 1))
         for kind in ("total", "aleatoric", "epistemic")}

    def h(p):
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    assert u["total"].item() == pytest.approx(h(5 / 8), abs=1e-6)
    assert u["aleatoric"].item() == pytest.approx((math.log(2) + h(3 / 4)) / 2, abs=1e-6)
    assert u["epistemic"].item() == pytest.approx(h(5 / 8) - (math.log(2) + h(3 / 4)) / 2,
                                                  abs=1e-6)


def test_gaussian_heads_split_the_variance_by_hand():
    # member s predicts mean m_s and log-variance log v_s: total = mean v + var m
    heads = [nn.Linear(1, 2) for _ in range(2)]
    with torch.no_grad():
        for head, (mean, variance) in zip(heads, [(1.0, 0.5), (3.0, 1.5)], strict=True):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([mean, math.log(variance)]))
    x = torch.zeros(1, 1)
    assert row_uncertainty(heads, "epistemic", output="gaussian")(x).item() == (
        pytest.approx(1.0, abs=1e-6))
    assert row_uncertainty(heads, "aleatoric", output="gaussian")(x).item() == (
        pytest.approx(1.0, abs=1e-6))
    assert row_uncertainty(heads, "total", output="gaussian")(x).item() == (
        pytest.approx(2.0, abs=1e-6))


def test_a_forest_regressor_has_only_the_epistemic_part(data):
    x, _ = data
    forest = RandomForestRegressor(6, random_state=0).fit(x, x[:, 0] * 2)
    means, variances = regressor_moments(forest, torch.tensor(x[:7]))
    assert variances is None and means.shape == (7, 6)
    trees = np.stack([t.predict(x[:7]) for t in forest.estimators_], 1)
    np.testing.assert_allclose(row_uncertainty(forest, "epistemic")(torch.tensor(x[:7])),
                               trees.var(1), atol=1e-12)
    with pytest.raises(ValueError, match="epistemic"):
        row_uncertainty(forest, "total")


def test_members_that_predict_a_std_give_the_aleatoric_part(data):
    x, _ = data
    members = [BayesianRidge().fit(x[i::2], x[i::2, 0] + i) for i in range(2)]
    rows = torch.tensor(x[:3])
    stds = np.stack([m.predict(x[:3], return_std=True)[1] for m in members], 1)
    means = np.stack([m.predict(x[:3]) for m in members], 1)
    np.testing.assert_allclose(row_uncertainty(members, "total")(rows),
                               (stds**2).mean(1) + means.var(1), rtol=1e-12)


def test_bad_models_and_rows_get_clear_errors(data):
    x, y = data
    with pytest.raises(ValueError, match="stages of one model"):
        row_uncertainty(GradientBoostingClassifier(n_estimators=3).fit(x, y))
    with pytest.raises(ValueError, match="not a fitted ensemble"):
        row_uncertainty(RandomForestClassifier())
    with pytest.raises(ValueError, match="n_features"):
        row_uncertainty(lambda rows: rows.sum(1))
    with pytest.raises(ValueError, match="output"):
        row_uncertainty([nn.Linear(2, 2)])
    forest = row_uncertainty(RandomForestClassifier(3, random_state=0).fit(x, y))
    from uattr.tabular import check_rows
    with pytest.raises(ValueError, match=r"NaN or inf \(rows \[1\]\)"):
        check_rows(np.array([[0.0, 1, 2, 3], [np.nan, 1, 2, 3]]), forest.n_features)
    with pytest.raises(ValueError, match="4 features"):
        check_rows(np.zeros((2, 3)), forest.n_features)
    with pytest.raises(ValueError, match="numeric"):
        check_rows(np.array([["a", "b"]], dtype=object))
