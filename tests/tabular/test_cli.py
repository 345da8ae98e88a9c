"""``uattr tabular``: a CSV file in, per-row attributions, a figure and a record out; bad
input stops it with one line that names the argument, and nothing written."""

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import BaggingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from uattr.cli import main


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """400 rows whose label noise grows with 'noisy' (and 'plain' does nothing)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    noise = 0.05 + 3 / (1 + np.exp(-4 * (x[:, 1] - 1)))
    frame = pd.DataFrame({"signal": x[:, 0], "noisy": x[:, 1], "plain": x[:, 2],
                          "label": np.where(x[:, 0] + noise * rng.normal(size=400) > 0,
                                            "yes", "no")})
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_the_forest_is_unsure_because_of_the_noisy_feature(csv, tmp_path, capsys):
    path, frame = csv
    out = tmp_path / "out"
    # rows far from the boundary whose labels are noisy: 'noisy' should come first
    rows = frame.index[(frame["noisy"] > 1.3) & (frame["signal"].abs() > 0.8)]
    assert main(["tabular", "--csv", str(path), "--target", "label", "--forest",
                 "--rows", *map(str, rows), "--out", str(out)]) == 0
    table = pd.read_csv(out / "attributions.csv")
    assert list(table.columns) == ["row", "U", "signal", "noisy", "plain"]
    assert table["row"].tolist() == rows.tolist() and len(rows) >= 8
    features = table[["signal", "noisy", "plain"]].to_numpy()
    assert (features.argmax(1) == 1).mean() >= 0.75  # 'noisy' drives most of them
    record = json.loads((out / "run-tabular.json").read_text())
    # efficiency: each row's values sum to its U minus the background's mean U
    np.testing.assert_allclose(features.sum(1),
                               table["U"] - record["base (E[U] over the background)"],
                               atol=1e-9)
    assert (out / "summary.png").stat().st_size > 10_000
    assert "RandomForestClassifier" in capsys.readouterr().out


def test_without_rows_it_explains_the_most_uncertain_ones(csv, tmp_path):
    path, _ = csv
    out = tmp_path / "out"
    assert main(["tabular", "--csv", str(path), "--target", "label", "--forest",
                 "--most-uncertain", "5", "--method", "occlusion", "--out", str(out)]) == 0
    table = pd.read_csv(out / "attributions.csv")
    assert table["U"].is_monotonic_decreasing and len(table) == 5


def test_a_joblib_bagging_model_and_chosen_rows(csv, tmp_path):
    path, frame = csv
    features = frame.drop(columns="label")
    model = BaggingClassifier(LogisticRegression(), n_estimators=4, random_state=0).fit(
        features, frame["label"])
    joblib.dump(model, tmp_path / "model.joblib")
    out = tmp_path / "out"
    assert main(["tabular", "--csv", str(path), "--target", "label", "--model",
                 str(tmp_path / "model.joblib"), "--rows", "3", "1", "--method", "occlusion",
                 "--uncertainty", "epistemic", "--out", str(out)]) == 0
    table = pd.read_csv(out / "attributions.csv")
    assert table["row"].tolist() == [3, 1]
    assert json.loads((out / "run-tabular.json").read_text())["uncertainty"] == "epistemic"


def test_a_forest_regressor_explains_its_epistemic_part_unasked(csv, tmp_path, capsys):
    _path, frame = csv
    numeric = frame.assign(label=frame["signal"] * 2.5)  # a continuous target
    numeric.to_csv(tmp_path / "reg.csv", index=False)
    assert main(["tabular", "--csv", str(tmp_path / "reg.csv"), "--target", "label",
                 "--forest", "--most-uncertain", "2", "--out", str(tmp_path / "o")]) == 0
    assert "epistemic uncertainty of RandomForestRegressor" in capsys.readouterr().out
    forest = RandomForestRegressor  # the same estimator as --forest fits
    assert forest.__name__ in (tmp_path / "o" / "run-tabular.json").read_text()


def _bad(tmp_path, frame, **change):
    data = frame.copy()
    for column, values in change.items():
        data[column] = values
    data.to_csv(tmp_path / "bad.csv", index=False)
    return str(tmp_path / "bad.csv")


@pytest.mark.parametrize("case, expected", [
    ("unknown target", "--target 'nope' is not a column"),
    ("text feature", "feature columns ['colour'] are not numeric"),
    ("missing value", "rows [2] have missing feature values"),
    ("row out of range", "--rows must lie in [0, 399], got [400]"),
    ("no predict_proba", "has no predict_proba"),
    ("not an ensemble", "not a fitted ensemble"),
    ("not a model file", "not a model saved with joblib.dump"),
    ("other features", "was fitted on the features"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(csv, tmp_path, capsys, case,
                                                        expected):
    path, frame = csv
    features = frame.drop(columns="label")
    args = ["--csv", str(path), "--target", "label", "--forest"]
    if case == "unknown target":
        args[3] = "nope"
    elif case == "text feature":
        args[1] = _bad(tmp_path, frame, colour="red")
    elif case == "missing value":
        args[1] = _bad(tmp_path, frame, plain=[*frame["plain"][:2], np.nan,
                                               *frame["plain"][3:]])
    elif case == "row out of range":
        args += ["--rows", "400"]
    else:
        model = {"no predict_proba": [LinearSVC().fit(features, frame["label"])],
                 "not an ensemble": LogisticRegression().fit(features, frame["label"]),
                 "other features": [LogisticRegression().fit(
                     features.rename(columns={"plain": "other"}), frame["label"])],
                 "not a model file": None}[case]
        if model is None:
            (tmp_path / "model.joblib").write_text("not a pickle")
        else:
            joblib.dump(model, tmp_path / "model.joblib")
        args[4:] = ["--model", str(tmp_path / "model.joblib")]
    out = tmp_path / "never"
    assert main(["tabular", *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1, error
    assert not out.exists()
