"""The spread of a detection table across ensembles, on tables computed by hand."""

import json
from pathlib import Path

import numpy as np
import pytest

from uattr.experiments.spread import detection_spread, read_per_image


def _tables():
    # three ensembles, three images each; "b" is first on ensembles 0 and 1, "a" on 2
    return [
        {"a": np.array([0.0, 0.5, 1.0]), "b": np.array([1.0, 1.0, 0.7]),
         "oracle: c": np.array([1.0, 1.0, 1.0])},
        {"a": np.array([0.2, 0.2, 0.2]), "b": np.array([0.4, 0.4, 0.4]),
         "oracle: c": np.array([0.9, 0.9, 0.9])},
        {"a": np.array([0.9, 0.9, 0.6]), "b": np.array([0.3, 0.3, 0.3]),
         "oracle: c": np.array([1.0, 1.0, 1.0])},
    ]


def test_each_row_has_its_mean_its_spread_across_ensembles_and_its_rank():
    rows = {r["method"]: r for r in detection_spread(_tables())}
    a, b, oracle = rows["a"], rows["b"], rows["oracle: c"]
    assert [a[f"IoU, ensemble {k}"] for k in range(3)] == pytest.approx([0.5, 0.2, 0.8])
    assert a["IoU mean"] == pytest.approx(0.5)
    # std (ddof 1) of 0.5, 0.2, 0.8 is 0.3; over √3
    assert a["s.e. across ensembles"] == pytest.approx(0.3 / 3 ** 0.5)
    assert (a["first in"], b["first in"]) == (1, 2)
    assert (a["mean rank"], b["mean rank"]) == (pytest.approx(5 / 3), pytest.approx(4 / 3))
    assert oracle["first in"] is None and oracle["mean rank"] is None
    # paired s.e. of a − best per ensemble: [-1, -0.5, 0.3] (s.e. 0.3786), [-0.2]×3 (0),
    # and 0 on ensemble 2 where a is the best; their mean
    first = np.std([-1.0, -0.5, 0.3], ddof=1) / 3 ** 0.5
    assert a["paired s.e. across images"] == pytest.approx(first / 3)
    assert b["paired s.e. across images"] == pytest.approx(
        np.std([0.3 - 0.9, 0.3 - 0.9, 0.3 - 0.6], ddof=1) / 3 ** 0.5 / 3)


def test_one_table_is_refused_and_per_image_files_are_read(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        detection_spread(_tables()[:1])
    (tmp_path / "detection_per_image.json").write_text(
        json.dumps({"indices": [4, 2], "IoU": {"grad": [0.25, 0.5]}}))
    assert read_per_image(tmp_path)["grad"].tolist() == [0.25, 0.5]
    with pytest.raises(FileNotFoundError, match="regenerate"):
        read_per_image(tmp_path / "missing")


def test_paired_differences_are_hand_computed_means_and_paired_standard_errors():
    from uattr.experiments.spread import paired_differences, paired_differences_by_column

    table = {"a": np.array([0.5, 0.7, 0.9]), "b": np.array([0.4, 0.4, 0.6]),
             "c": np.array([0.5, 0.7, 0.9])}
    rows = {(r["method"], r["against"]): r for r in paired_differences(table)}
    assert len(rows) == 6  # every ordered pair, never a row against itself
    # a − b = [0.1, 0.3, 0.3]: mean 7/30, std (ddof 1) = √(1/75), s.e. = √(1/225) = 1/15
    assert rows[("a", "b")]["IoU difference"] == pytest.approx(7 / 30)
    assert rows[("a", "b")]["its s.e."] == pytest.approx(1 / 15)
    assert rows[("a", "b")]["in s.e."] == pytest.approx(3.5)
    assert rows[("b", "a")]["in s.e."] == pytest.approx(-3.5)
    assert rows[("a", "c")]["its s.e."] == 0 and rows[("a", "c")]["in s.e."] is None
    # another column names its difference
    murr = paired_differences(table, "MURR 2%")
    assert murr[0]["MURR 2% difference"] == paired_differences(table)[0]["IoU difference"]
    # a table stored per image and column: one block per column, in the columns' order
    by_column = paired_differences_by_column(
        {row: {"x": list(v), "y": list(2 * v)} for row, v in table.items()}, "URR ")
    assert [next(k for k in p if k.endswith("difference")) for p in by_column] == \
        ["URR x difference"] * 6 + ["URR y difference"] * 6
    assert by_column[6]["URR y difference"] == pytest.approx(2 * 7 / 30)  # a − b, doubled


PAIRS = sorted((Path(__file__).resolve().parents[2] / "docs/results").rglob("*_pairs.json"))


@pytest.mark.parametrize("path", PAIRS, ids=[p.parent.name + "/" + p.name for p in PAIRS])
def test_a_committed_pairs_table_follows_from_the_per_image_values_beside_it(path):
    """The paired differences the pages quote are what paired_differences gives on the
    committed per-image IoU (float64 sums of at most 500 values: 1e-12 is ample)."""
    from uattr.experiments.spread import paired_differences, paired_differences_by_column

    stem = path.name[: -len("_pairs.json")]
    stored = json.loads((path.parent / f"{stem}_per_image.json").read_text())
    # a table stored per image and column (the blurring test's values, a faithfulness
    # table's URRs) has one block of pairs per column; a detection table's IoU, one
    if "values" in stored:
        expected = paired_differences_by_column(stored["values"])
    elif "URR" in stored:
        expected = paired_differences_by_column(stored["URR"], "URR ")
    else:
        expected = paired_differences(read_per_image(path.parent, stem))
    stored = json.loads(path.read_text())
    assert [(r["method"], r["against"]) for r in stored] == \
        [(r["method"], r["against"]) for r in expected]
    for old, new in zip(stored, expected, strict=True):
        difference = next(key for key in new if key.endswith(" difference"))
        for key in (difference, "its s.e.", "in s.e."):
            assert (old[key] is None) == (new[key] is None)
            if new[key] is not None:
                assert old[key] == pytest.approx(new[key], rel=1e-12, abs=1e-12)
