"""Rows added to a committed detection table (``uattr bench detection --add-to``) give the
table that one run measuring every row gives, and a table of other weights, settings or
images is refused.

On scikit-learn's 8×8 digits with a two-member ensemble (seconds)."""

import json
import shutil

import numpy as np
import pytest

from uattr.cli import main
from uattr.experiments.benchmarks.added_rows import check_same_run, read_committed

COMMON = ["--dataset", "digits", "--members", "2", "--epochs", "8", "--n", "10"]
# What moves between two runs of the same rows: the clock, and the threads it ran on
TIMED = {"s/image", "threads"}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """``whole``: grad, CovGI and occlusion measured in one run; ``added``: grad and
    occlusion, then CovGI added to its results folder."""
    root = tmp_path_factory.mktemp("added")
    common = [*COMMON, "--cache-dir", str(root / "cache")]
    assert main(["bench", "detection", *common, "--out", str(root / "whole-run"),
                 "--results", str(root / "whole"),
                 "--methods", "grad", "covgi", "occlusion"]) == 0
    assert main(["bench", "detection", *common, "--out", str(root / "added-run"),
                 "--results", str(root / "added"), "--methods", "grad", "occlusion"]) == 0
    assert main(["bench", "detection", *common, "--out", str(root / "added-run-2"),
                 "--methods", "covgi", "--add-to", str(root / "added")]) == 0
    return root, common


def _read(folder, name):
    return json.loads((folder / name).read_text())


def _by_method(rows):
    """``{method: {column: value}}``, the numbers of each row but its timings."""
    return {row["method"]: {k: v for k, v in row.items()
                            if k not in TIMED and isinstance(v, float | int)}
            for row in rows}


def test_an_added_row_gives_the_table_of_one_run(tables):
    root, _ = tables
    whole, added = root / "whole", root / "added"
    # every value of every row, the gap to the best row and its paired s.e. included
    measured, expected = (_by_method(_read(f, "detection.json")) for f in (added, whole))
    assert measured.keys() == expected.keys()
    for name, row in expected.items():
        assert measured[name] == pytest.approx(row, rel=1e-12, abs=1e-15), name
    assert _read(added, "detection_per_image.json") == _read(whole, "detection_per_image.json")
    assert _read(added, "detection_families.json") == _read(whole, "detection_families.json")
    pairs = lambda folder: {(p["method"], p["against"]): p["IoU difference"]  # noqa: E731
                            for p in _read(folder, "detection_pairs.json")}
    assert pairs(added) == pytest.approx(pairs(whole), rel=1e-12, abs=1e-15)
    # the slice a test recomputes holds the new row's maps beside the stored ones
    one, other = np.load(whole / "detection_slice.npz"), np.load(added / "detection_slice.npz")
    rows = [str(r) for r in other["rows"]]
    assert sorted(rows) == ["covgi", "grad", "occlusion"]
    order = [str(r) for r in one["rows"]]
    for i, name in enumerate(rows):
        np.testing.assert_array_equal(other[f"map{i}"], one[f"map{order.index(name)}"])
        np.testing.assert_array_equal(other[f"iou{i}"], one[f"iou{order.index(name)}"])
    np.testing.assert_array_equal(other["images"], one["images"])
    # the record keeps the earlier run's, and each runtime row its threads
    record = _read(added, "run-detection.json")
    assert record["methods"] == ["covgi"]
    assert record["added to"]["methods"] == ["grad", "occlusion"]
    assert record["weights"] == record["added to"]["weights"] != {}
    assert {row["method"] for row in _read(added, "runtime.json")} == set(rows)


@pytest.mark.parametrize(("extra", "message"), [
    (["--methods", "grad"], "--methods: ['grad'] are rows of"),
    (["--methods", "covlrp", "--seed", "1"], "seed: table 0, this command 1"),
    (["--methods", "covlrp", "--lam", "2"], "lam: table 3.0, this command 2.0"),
])
def test_a_row_present_or_other_settings_are_refused(tables, extra, message, capsys):
    root, common = tables
    before = (root / "added" / "detection.json").read_text()
    assert main(["bench", "detection", *common, "--out", str(root / "refused"),
                 "--add-to", str(root / "added"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert (root / "added" / "detection.json").read_text() == before  # nothing written


@pytest.mark.parametrize(("extra", "message"), [
    (["--methods", "all"], "--methods: with --add-to, name the rows to add"),
    (["--methods", "covlrp", "--results", "elsewhere"], "--results: with --add-to"),
])
def test_the_command_line_refuses_before_any_work(tables, extra, message, capsys):
    root, common = tables
    assert main(["bench", "detection", *common, "--out", str(root / "refused"),
                 "--add-to", str(root / "added"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_no_detection_table_is_refused(tmp_path, capsys):
    assert main(["bench", "detection", *COMMON, "--methods", "covgi",
                 "--add-to", str(tmp_path)]) == 2
    assert "has no detection_per_image.json" in capsys.readouterr().err


def test_other_weights_are_refused(tables, tmp_path):
    root, _ = tables
    copy = tmp_path / "copy"
    shutil.copytree(root / "added", copy)
    committed = read_committed(copy)
    arguments = {k: v for k, v in committed.record.items() if k != "added to"}
    weights = dict(committed.record["weights"])
    check_same_run(committed, arguments, weights, ["covlrp"])  # the table's own: accepted
    name = next(iter(weights))
    weights[name] = "0" * 64  # one member retrained
    with pytest.raises(ValueError, match=f"other weights .*{name}"):
        check_same_run(committed, arguments, weights, ["covlrp"])


def test_images_of_another_seed_are_refused(tables, tmp_path):
    from uattr.experiments.benchmarks.added_rows import detection_set_of

    root, _ = tables
    committed = read_committed(root / "added")
    kept = detection_set_of(committed, "digits", "test", None, 0)
    assert kept["indices"].tolist() == committed.detection_set["indices"]
    with pytest.raises(ValueError, match="not those that seed 1 puts on digits test"):
        detection_set_of(committed, "digits", "test", None, 1)


def test_every_committed_table_with_added_rows_names_the_weights_of_all_its_rows():
    from pathlib import Path

    results = Path(__file__).resolve().parents[2] / "docs" / "results"
    added = [json.loads(p.read_text()) for p in results.glob("*/run-detection.json")]
    added = [record for record in added if "added to" in record]
    assert added  # the spread's ensembles 1 and 2, MC-Dropout and photo-mnist
    for record in added:
        earlier = record["added to"]["weights"]
        assert earlier.items() <= record["weights"].items(), record["command"]


def test_a_table_whose_files_disagree_is_refused(tables, tmp_path):
    root, _ = tables
    copy = tmp_path / "copy"
    shutil.copytree(root / "added", copy)
    path = copy / "detection_per_image.json"
    stored = json.loads(path.read_text())
    del stored["IoU"]["grad"]  # a row without its per-image values
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"per-image values .* \(missing \['grad'\]"):
        read_committed(copy)
