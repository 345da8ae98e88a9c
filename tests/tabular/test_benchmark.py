"""The tabular benchmark's parts: the synthetic sets plant what their docstring says, the
rank of the cause counts ties against it, and the scores are the hand-computed ones."""

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier

from uattr.tabular import row_uncertainty, shapley_values
from uattr.tabular.benchmark import cause_ranks, scores
from uattr.tabular.synthetic import SETS, make_set


def test_the_rank_of_the_cause_counts_ties_against_it():
    phi = np.array([[0.1, 0.5, 0.2],   # cause 1: first
                    [0.3, 0.1, 0.2],   # cause 1: last
                    [0.0, 0.0, 0.0],   # a flat map finds nothing: last
                    [0.2, 0.2, 0.1]])  # tied for first: second
    assert cause_ranks(phi, np.array([1, 1, 2, 0])).tolist() == [1, 3, 3, 2]


def test_the_scores_by_hand():
    result = scores(np.array([1, 3, 3, 2]), features=3)
    assert result["top-1"] == 0.25
    assert result["rank score"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert result["top-1 s.e."] == pytest.approx(np.std([1, 0, 0, 0], ddof=1) / 2)


@pytest.mark.parametrize("name", SETS)
def test_each_set_plants_its_cause_where_its_docstring_says(name):
    data = make_set(name, n_train=2000, n_test=200, seed=3)
    again = make_set(name, n_train=2000, n_test=200, seed=3)
    np.testing.assert_array_equal(data.x_test, again.x_test)  # seeded: the same rows
    rows = np.arange(200)
    assert np.all((np.abs(data.x_test[:, 0] + data.x_test[:, 1]) >= 1 - 1e-12)
                  & (np.abs(data.x_test[:, 0] + data.x_test[:, 1]) <= 2 + 1e-12))
    cause = data.x_test[rows, data.causes]
    if name == "shift":
        assert data.causes.tolist() == [5] * 200 and cause.min() >= 2.5
        assert np.abs(data.x_train[:, 5]).max() <= 1  # outside the training range
    else:
        assert np.all((cause >= 1.5) & (cause <= 2.5))
    if name == "two-causes":
        assert set(data.causes) == {3, 6}
        other = data.x_test[rows, np.where(data.causes == 3, 6, 3)]
        assert other.max() <= 0.5
        # the distractors follow their causes
        assert np.corrcoef(data.x_train[:, 3], data.x_train[:, 4])[0, 1] > 0.9


def test_a_forest_on_the_noise_set_is_unsure_because_of_x3():
    data = make_set("noise", n_train=2000, n_test=40, seed=5)
    forest = RandomForestClassifier(40, min_samples_leaf=10, random_state=0).fit(
        data.x_train, data.y_train)
    u = row_uncertainty(forest, "aleatoric")
    assert u(torch.tensor(data.x_test)).mean() > 1.3 * u(torch.tensor(data.x_train[:40])).mean()
    phi = shapley_values(u, data.x_test, data.x_train[:16]).numpy()
    assert (cause_ranks(phi, data.causes) == 1).mean() >= 0.8


def test_each_method_family_finds_the_cause_with_the_shipped_mlps():
    """Occlusion and the optimization mask on the noise set (aleatoric), CovGI and CovLRP
    on the shifted set (epistemic: the members' spread), 40 rows each."""
    from uattr.tabular import attribute_rows
    from uattr.tabular.models import mlp_ensemble

    for name, methods, top1 in (("noise", ("occlusion", "optimization"), 0.8),
                                ("shift", ("covgi", "covlrp"), 0.3)):
        data = make_set(name, n_test=40, seed=0)  # the benchmark's training rows
        networks, hashes = mlp_ensemble(data, 0)
        assert hashes  # loaded from the shipped weights, not trained here
        u = row_uncertainty(networks, data.kind, output="logits")
        for method in methods:
            background = None if method.startswith("cov") else data.x_train[:32]
            phi = attribute_rows(u, data.x_test, method, background=background).numpy()
            ranks = cause_ranks(phi, data.causes)
            # first on most rows, or (the second-order methods) far above chance (1/8)
            assert (ranks == 1).mean() >= top1, (name, method)
            assert scores(ranks, 8)["rank score"] > 0.75, (name, method)
