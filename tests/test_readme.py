"""Every number in the README's result tables comes from a table committed under
docs/results/ (DESIGN §7): a table of results is preceded by

    <!-- results: docs/results/<run>/<table>.json -->

(what ``uattr table FILE --columns ...`` prints), its first column names the row, its
header cells are columns of that file, and every cell is the file's value as the run
folder's Markdown writes it (bold allowed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from uattr.experiments.runs import format_cell

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- results: (\S+) -->")
DECIMAL = re.compile(r"^\*{0,2}-?\d+\.\d+\*{0,2}$")


def _tables(text: str) -> list[tuple[str | None, list[list[str]], int]]:
    """``(marked file or None, rows of cells, line number)`` of each Markdown table."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        before = [line for line in lines[max(0, start - 2) : start] if line.strip()]
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        cells = [[c.strip() for c in line.strip().strip("|").split("|")]
                 for line in lines[start:i]]
        found.append((marker.group(1) if marker else None, [cells[0], *cells[2:]], start + 1))
    return found


TABLES = _tables((ROOT / "README.md").read_text())
MARKED = [t for t in TABLES if t[0] is not None]


def test_every_table_of_results_names_its_file():
    unmarked = [line for source, rows, line in TABLES if source is None
                and any(DECIMAL.match(cell) for row in rows[1:] for cell in row)]
    assert not unmarked, f"README tables without a results marker at lines {unmarked}"
    assert "docs/results/mnist-test-n500-seed0/detection.json" in {t[0] for t in MARKED}


@pytest.mark.parametrize(("source", "rows", "line"), MARKED,
                         ids=[f"README line {line}" for _, _, line in MARKED])
def test_the_readme_quotes_its_file_exactly(source, rows, line):
    path = ROOT / source
    assert path.is_file(), f"line {line}: {source} is not committed"
    stored = json.loads(path.read_text())
    header, body = rows[0], rows[1:]
    columns = {key for row in stored for key in row}  # a row may lack a column ("–")
    missing = [c for c in header if c not in columns]
    assert not missing, f"line {line}: columns {missing} are not in {source}"
    # a row is found by its text cells (method, posterior, variant, ...)
    keys = [c for c in header if any(isinstance(row.get(c), str) for row in stored)]
    assert keys, f"line {line}: no text column names the rows"
    for cells in body:
        shown = [c.strip("*") for c in cells]
        wanted = {c: shown[header.index(c)] for c in keys}
        matches = [row for row in stored
                   if all(format_cell(row.get(c)) == v for c, v in wanted.items())]
        assert len(matches) == 1, f"line {line}: {len(matches)} rows of {source} are {wanted}"
        assert shown == [format_cell(matches[0].get(c)) for c in header], f"line {line}: {wanted}"


def test_every_registered_method_is_in_the_readme_method_table():
    """A method added to the registry is documented where users look for methods."""
    from tests._models import tiny_cnn_members, tiny_vae
    from uattr.experiments.registry import detection_methods
    from uattr.experiments.settings import MethodSettings
    from uattr.uq import as_posterior

    text = (ROOT / "README.md").read_text()
    table = text[text.index("| family | methods (`uattr.attribution`)"):]
    table = table[: table.index("\n\n")]
    listed = set(re.findall(r"`(\w+)`", table))
    posterior = as_posterior(tiny_cnn_members(members=2))
    rows = detection_methods(posterior, MethodSettings(), tiny_vae(shape=(1, 28, 28)))
    classes = {type(spec.method).__name__ for spec in rows.values()}
    assert len(classes) == 13  # every class the tables compare
    assert classes - listed == set()
