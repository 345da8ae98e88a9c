"""Rows added to a committed mitigation table (``uattr bench mitigation --add-to``) give the
table that one run training every row gives; a table whose "no attention" does not come
out again here (another CPU or thread count), or that has the row already, is refused.

On scikit-learn's 8×8 digits with a two-member ensemble (seconds)."""

import json
import shutil

import pytest

from uattr.cli import main

COMMON = ["--dataset", "digits", "--members", "2", "--epochs", "8", "--n", "60",
          "--test-images", "120", "--runs", "2", "--input-space", "covgi"]


def _rows(folder):
    """The table's rows without the maps' seconds (a clock, not a result)."""
    rows = json.loads((folder / "mitigation.json").read_text())
    return [{k: v for k, v in row.items() if k != "maps s/image"} for row in rows]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """``whole``: grad and CovGI (latent and input) trained in one run; ``added``: grad,
    then CovGI added to its results folder by a second command."""
    root = tmp_path_factory.mktemp("mitigation-added")
    common = [*COMMON, "--cache-dir", str(root / "cache")]
    assert main(["bench", "mitigation", *common, "--out", str(root / "whole-run"),
                 "--results", str(root / "whole"), "--methods", "grad", "covgi"]) == 0
    assert main(["bench", "mitigation", *common, "--out", str(root / "added-run"),
                 "--results", str(root / "added"), "--methods", "grad"]) == 0
    assert main(["bench", "mitigation", *common, "--out", str(root / "added-run-2"),
                 "--methods", "covgi", "--add-to", str(root / "added")]) == 0
    return root, common


def test_an_added_row_gives_the_table_of_one_run(tables):
    root, _ = tables
    # one machine, one thread count: every training is the same to the last bit, so the
    # rows, their paired ΔACC and its standard errors included, are equal, not close
    assert _rows(root / "added") == _rows(root / "whole")
    record = json.loads((root / "added" / "run-mitigation.json").read_text())
    assert record["methods"] == ["covgi"] and record["added to"]["methods"] == ["grad"]
    assert record["threads"] >= 1 and record["weights"] == record["added to"]["weights"]


def test_a_table_whose_plain_network_trains_otherwise_is_refused(tables, tmp_path, capsys):
    root, common = tables
    copy = tmp_path / "elsewhere"
    shutil.copytree(root / "added", copy)
    rows = json.loads((copy / "mitigation.json").read_text())
    rows = [row for row in rows if row["method"] != "covgi"]
    rows[0]["ACC sd"] += 0.5  # as if its seeds had been trained on another CPU
    (copy / "mitigation.json").write_text(json.dumps(rows))
    assert main(["bench", "mitigation", *common, "--out", str(tmp_path / "run"),
                 "--methods", "covgi", "--add-to", str(copy)]) == 2
    assert "no attention trained here" in capsys.readouterr().err
    assert json.loads((copy / "mitigation.json").read_text()) == rows  # left as it was


@pytest.mark.parametrize(("extra", "message"), [
    (["--methods", "grad"], "['grad'] are rows of"),
    ([], "--methods: with --add-to, name the rows to add"),
    (["--methods", "covlrp", "--alpha", "1"], "was made with other settings"),
])
def test_the_command_line_refuses_what_cannot_join_the_table(tables, extra, message, capsys):
    root, common = tables
    assert main(["bench", "mitigation", *common, "--out", str(root / "refused"),
                 "--add-to", str(root / "whole"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_no_mitigation_table_is_refused(tmp_path, capsys):
    assert main(["bench", "mitigation", *COMMON, "--methods", "grad",
                 "--add-to", str(tmp_path)]) == 2
    assert "has no mitigation.json" in capsys.readouterr().err
