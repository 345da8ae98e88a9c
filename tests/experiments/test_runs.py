import csv
import json

import numpy as np

from uattr.experiments.runs import RunFolder, config_key, markdown_table, threads_label


def test_table_is_written_in_three_formats(tmp_path):
    folder = RunFolder(tmp_path)
    rows = [{"method": "a", "IoU": 0.5}, {"method": "b", "IoU": 0.25}]
    folder.write_table("t", rows)
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    with open(tmp_path / "t.csv") as f:
        assert [r["IoU"] for r in csv.DictReader(f)] == ["0.5", "0.25"]
    assert "| b | 0.250 |" in (tmp_path / "t.md").read_text()


def test_a_cell_is_reused_only_with_the_same_config(tmp_path):
    folder = RunFolder(tmp_path)
    folder.save_cell("m", {"lam": 3}, {"IoU": 0.4}, np.arange(4.0))
    record, array = folder.load_cell("m", {"lam": 3})
    assert record == {"IoU": 0.4} and array.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert folder.load_cell("m", {"lam": 2}) is None
    assert folder.load_cell("other", {"lam": 3}) is None
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary file


def test_config_key_ignores_key_order():
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert markdown_table([]) == ""


def test_publish_copies_the_tables_figures_and_reports_but_never_the_cells(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_table("t", [{"method": "a", "IoU": 0.5}])
    folder.write_text("report-x.md", "# report\n")
    folder.save_cell("m", {"lam": 3}, {"IoU": 0.4}, np.arange(4.0))
    written = folder.publish(tmp_path / "results")
    names = sorted(p.name for p in written)
    assert names == ["report-x.md", "t.csv", "t.json", "t.md"]
    copied, original = (tmp_path / d / "t.json" for d in ("results", "run"))
    assert copied.read_text() == original.read_text()
    assert not (tmp_path / "results" / "cells").exists()


def test_threads_are_named_in_the_singular_only_for_one():
    assert [threads_label(t) for t in (1, "1", 2, "1/2")] == [
        "1 thread", "1 thread", "2 threads", "1/2 threads"]
