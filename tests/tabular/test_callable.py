"""Any uncertainty score can be explained: the width of a conformal interval (MAPIE's,
split-conformalised quantile regression) grows with one feature, and Shapley values of
the width put that feature first."""

import numpy as np
import pytest

from uattr.tabular import row_uncertainty, shapley_values


def test_shapley_values_of_a_mapie_interval_width_find_the_noisy_feature():
    mapie = pytest.importorskip("mapie.regression")
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1500, 4))
    y = x[:, 0] + rng.normal(size=1500) * (0.05 + 1.0 * np.abs(x[:, 2]))  # noise from x2
    regressor = mapie.ConformalizedQuantileRegressor(
        GradientBoostingRegressor(loss="quantile", n_estimators=60, max_depth=2,
                                  random_state=0), confidence_level=0.9)
    regressor.fit(x[:1000], y[:1000]).conformalize(x[1000:1400], y[1000:1400])

    def width(rows):  # [B]: the interval's upper minus its lower bound
        intervals = regressor.predict_interval(rows)[1]  # [B, 2, 1]
        return intervals[:, 1, 0] - intervals[:, 0, 0]

    u = row_uncertainty(width, n_features=4)
    test = x[1400:]
    noisy = test[np.abs(test[:, 2]) > 0.6]  # rows whose width the noise of x2 drives
    phi = shapley_values(u, noisy, x[:20]).numpy()
    assert len(noisy) >= 30
    assert (phi.argmax(1) == 2).mean() >= 0.8  # 38 of 41 here; chance is 1 in 4
    np.testing.assert_allclose(phi.sum(1), width(noisy) - width(x[:20]).mean(), atol=1e-9)
