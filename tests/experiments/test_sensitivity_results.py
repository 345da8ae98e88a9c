"""The sensitivity sentences of docs/reproduction.md are those of the committed table
(``uattr bench sensitivity --n 500``) and its paired differences."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "mnist-test-n500-seed0"
DEFAULT = "λ = 3, τ = 0.1"


def test_the_sensitivity_sentences_are_those_of_the_table():
    rows = json.loads((FOLDER / "sensitivity.json").read_text())
    pairs = [p for p in json.loads((FOLDER / "sensitivity_pairs.json").read_text())
             if p["against"] == DEFAULT]
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())
    iou = sorted(r["IoU"] for r in rows)
    ada = sorted(r["ADA"] for r in rows)
    farthest = max(pairs, key=lambda p: abs(p["in s.e."]))
    assert len(rows) == 9 and len(pairs) == 8
    assert (f"the IoU stays between {iou[0]:.3f} and {iou[-1]:.3f} and the ADA between "
            f"{ada[0]:.3f} and {ada[-1]:.3f}") in page
    assert (f"the setting farthest from the defaults is {abs(farthest['in s.e.']):.1f} paired "
            f"standard errors away ({farthest['method']}: "
            f"{farthest['IoU difference']:+.3f};") in page
    assert abs(farthest["in s.e."]) < 3  # "flat": within noise of the defaults
