"""Every number in the result tables of the README and docs/reproduction.md comes from a
table committed under docs/results/ (DESIGN §7): a table of results is preceded by

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


PAGES = ("README.md", "docs/reproduction.md")
# hyperparameters.md: its marked tables are checked too; it still has unmarked ones
QUOTING = (*PAGES, "docs/hyperparameters.md")
TABLES = [(page, *table) for page in QUOTING for table in _tables((ROOT / page).read_text())]
MARKED = [t[1:] for t in TABLES if t[1] is not None]
MARKED_IDS = [f"{page} line {line}" for page, source, _, line in TABLES if source is not None]


def test_every_table_of_results_names_its_file():
    unmarked = [f"{page} line {line}" for page, source, rows, line in TABLES
                if source is None and page in PAGES
                and any(DECIMAL.match(cell) for row in rows[1:] for cell in row)]
    assert not unmarked, f"tables without a results marker: {unmarked}"
    quoted = {t[0] for t in MARKED}
    assert "docs/results/mnist-test-n500-seed0/detection.json" in quoted
    assert "docs/results/mnist-test-n500-mc-dropout-cuda-seed0/detection.json" in quoted


def test_the_pages_link_only_to_files_that_exist():
    for page in (*PAGES, "docs/quickstart.md"):
        text = (ROOT / page).read_text()
        targets = re.findall(r"\]\(([^)#\s]+)", text) + re.findall(r'src="([^"]+)"', text)
        missing = [t for t in targets if not t.startswith("http")
                   and not ((ROOT / page).parent / t).exists()]
        assert not missing, f"{page} links to missing files {missing}"


@pytest.mark.parametrize(("source", "rows", "line"), MARKED, ids=MARKED_IDS)
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
    assert len(classes) == 15  # every class the tables compare
    assert classes - listed == set()


# ------------------------------------------------------------------ figures in the prose
FOLDER_LINK = re.compile(r"results/([\w.\-]+)")
FIGURE = re.compile(r"(?<![\w.\-/§:])(\d+\.\d+)(?![\w.]*/)")  # not "§4.2" nor a path
CODE = re.compile(r"`[^`]*`")


def _sections(text: str) -> list[tuple[str, str]]:
    """``(heading, text)`` of each section (``##``/``###``) of a page, code blocks out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    parts = re.split(r"\n(?=#{1,3} )", text)
    return [(part.splitlines()[0], part) for part in parts if part.strip()]


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def _folder_values(folder: str) -> list[float]:
    """Every number of the tables of a results folder (its JSON but the per-image files)."""
    found = []
    for path in sorted((ROOT / "docs/results" / folder).rglob("*.json")):
        if not path.name.endswith("_per_image.json"):
            found += _numbers(json.loads(path.read_text()))
    return found


def _shown_as(figure: str, values: list[float]) -> bool:
    """Whether some value, rounded as ``figure`` is written (or as a percentage, or
    negated: "0.030 below"), is ``figure``."""
    digits = len(figure.split(".")[1])
    target = float(figure)
    return any(abs(round(scaled, digits) - target) < 1e-9
               for v in values for scaled in (v, -v, 100 * v))


# Sections whose figures come from validation runs made before results were committed:
# their tables are to be regenerated (the page says "not yet re-measured" at its top), and
# this list must shrink to nothing, never grow. A section fixed and still listed fails.
PROSE_NOT_YET_BACKED: set[tuple[str, str]] = set()
SHIPPED_SCORES = _numbers([  # test scores only: a shipped setting is not a measurement
    {key: value for key, value in entry.get("scores", {}).items()
     if "accuracy" in key or key.startswith("test_")}
    for entry in json.loads((ROOT / "src/uattr/weights/manifest.json").read_text()).values()])
SECTIONS = [(page, heading, body) for page in QUOTING
            for heading, body in _sections((ROOT / page).read_text())]


@pytest.mark.parametrize(("page", "heading", "body"), SECTIONS,
                         ids=[f"{page}: {heading[:50]}" for page, heading, _ in SECTIONS])
def test_every_figure_in_the_prose_is_a_value_of_a_table_its_section_links(page, heading,
                                                                           body):
    """A decimal figure written in a sentence (outside tables and code, where settings are
    written) must be a value of the JSON tables of a results folder the same section
    links (``results/<folder>``) or a test score of the shipped weights (their
    manifest), as rounded: no figure lives only in prose."""
    folders = sorted(set(FOLDER_LINK.findall(body)))
    values = [v for folder in folders for v in _folder_values(folder)] + SHIPPED_SCORES
    prose = CODE.sub("", "\n".join(line for line in body.splitlines()
                                   if not line.startswith("|") and "<!--" not in line))
    unbacked = [f for f in FIGURE.findall(prose) if not _shown_as(f, values)]
    if (page, heading) in PROSE_NOT_YET_BACKED:
        assert unbacked, f"{page}, {heading!r} is backed now: take it off the list"
        assert "not yet re-measured" in (ROOT / page).read_text().lower()
        return
    assert not unbacked, (f"{page}, section {heading!r}: figures {unbacked} are in no table "
                          f"of the results it links ({folders or 'none'})")


def test_the_readme_picture_sentence_is_that_of_its_summary():
    summary = json.loads((ROOT / "docs/results/explain-user-images/summary.json").read_text())
    shares = [1 - row["U total, box blurred"] / row["U total"] for row in summary["images"]]
    removed = sorted(share for share in shares if share > 0)
    text = " ".join((ROOT / "README.md").read_text().split())
    words = {4: "four", 5: "five", 6: "six"}
    assert (f"On {words[len(removed)]} of the six, blurring the box found removes "
            f"{100 * removed[0]:.0f}-{100 * removed[-1]:.0f}% of the total uncertainty; on the "
            f"other two it removes none") in text


def test_the_first_run_sentence_is_that_of_its_record():
    record = json.loads((ROOT / "docs/results/first-run/run-first-run.json").read_text())
    assert record["command"] == "make run" and record["pip cache"] is False
    assert record["every weight shipped"]  # "trained nothing"
    total, main = record["seconds"], record["main job seconds"]
    text = " ".join((ROOT / "README.md").read_text().split())
    assert (f"on a fresh clone `make run` took {total:.0f} s on two cores, {total - main:.0f} s "
            f"of installs (without pip's cache) and the main job's {main:.0f} s, and trained "
            "nothing") in text
    assert f"the main job would take about {3.5 * main / 60:.0f} minutes" in text
