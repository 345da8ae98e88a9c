"""The sensitivity sentences of docs/reproduction.md (``uattr bench sensitivity --n 500``)
and of docs/hyperparameters.md (``--split valid --n 100``) are those of the committed
tables and their paired differences."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
DEFAULT = "λ = 3, τ = 0.1"


@pytest.mark.parametrize(("folder", "page"), [
    ("mnist-test-n500-seed0", "reproduction.md"),
    ("mnist-valid-n100-seed0", "hyperparameters.md"),
])
def test_the_sensitivity_sentences_are_those_of_the_table(folder, page):
    rows = json.loads((RESULTS / folder / "sensitivity.json").read_text())
    pairs = [p for p in json.loads((RESULTS / folder / "sensitivity_pairs.json").read_text())
             if p["against"] == DEFAULT]
    text = " ".join((ROOT / "docs" / page).read_text().split())
    iou = sorted(r["IoU"] for r in rows)
    ada = sorted(r["ADA"] for r in rows)
    farthest = max(pairs, key=lambda p: abs(p["in s.e."]))
    assert len(rows) == 9 and len(pairs) == 8
    assert (f"the IoU stays between {iou[0]:.3f} and {iou[-1]:.3f} and the ADA between "
            f"{ada[0]:.3f} and {ada[-1]:.3f}") in text
    assert (f"the setting farthest from the defaults is {abs(farthest['in s.e.']):.1f} paired "
            f"standard errors away ({farthest['method']}: "
            f"{farthest['IoU difference']:+.3f};") in text
    assert abs(farthest["in s.e."]) < 3  # "flat": within noise of the defaults
