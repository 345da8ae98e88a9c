"""The sentences of the README and of docs/reproduction.md about MNIST's detection table
at N = 500 are those of its files: every figure, every lead and its standard errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
TABLE = RESULTS / "mnist-test-n500-seed0"


def _rows(path: Path) -> dict[str, dict]:
    return {row["method"]: row for row in json.loads(path.read_text())}


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


def _paired(a: str, b: str) -> tuple[float, float]:
    per = json.loads((TABLE / "detection_per_image.json").read_text())["IoU"]
    difference = np.array(per[a]) - np.array(per[b])
    return difference.mean(), difference.std(ddof=1) / len(difference) ** 0.5


@pytest.fixture(scope="module")
def rows():
    return _rows(TABLE / "detection.json")


def test_the_stated_leaders_and_their_leads_are_those_of_the_file(rows):
    page = _text(ROOT / "docs" / "reproduction.md")
    best = max((m for m in rows if not m.startswith("oracle")), key=lambda m: rows[m]["IoU"])
    assert best == "delta-clue" and rows[best]["IoU - best"] == 0.0
    assert (f"δ-CLUE {rows['delta-clue']['IoU']:.3f} and CLUE {rows['clue']['IoU']:.3f} IoU"
            in page)
    pixels, slic = rows["optimization (pixels)"], rows["optimization (slic)"]
    assert (f"per pixel ({pixels['IoU']:.3f}) is {-pixels['IoU - best']:.3f} behind δ-CLUE "
            f"({-pixels['IoU - best'] / pixels['its s.e.']:.1f} paired standard errors), on "
            f"slic segments ({slic['IoU']:.3f}) {-slic['IoU - best']:.3f} "
            f"({-slic['IoU - best'] / slic['its s.e.']:.1f})") in page
    lead, se = _paired("optimization (pixels)", "ua-backprop")
    assert (f"per pixel {lead:.3f} IoU above UA-Backprop ({rows['ua-backprop']['IoU']:.3f}), "
            f"{lead / se:.1f} paired standard errors") in page
    # first of papers/000's methods: every row but the generative ones and the oracles
    papers000 = [m for m in rows if m not in ("clue", "delta-clue")
                 and not m.startswith("oracle")]
    assert max(papers000, key=lambda m: rows[m]["IoU"]) == "optimization (pixels)"
    readme = _text(ROOT / "README.md")
    assert (f"δ-CLUE ({rows['delta-clue']['IoU']:.2f}) and CLUE ({rows['clue']['IoU']:.2f}) "
            f"are first; the optimization-based method is first of papers/000's methods "
            f"({pixels['IoU']:.2f} per pixel, {slic['IoU']:.2f} on slic segments), "
            f"{lead:.3f} above UA-Backprop ({lead / se:.1f} paired standard errors)") in readme


def test_the_stated_rank_correlations_with_other_tables_are_those_of_the_files(rows):
    page = _text(ROOT / "docs" / "reproduction.md")
    mc = _rows(RESULTS / "mnist-test-n500-mc-dropout-cuda-seed0" / "detection.json")
    common = sorted(m for m in set(mc) & set(rows) if not m.startswith("oracle"))
    rho_iou = spearmanr([mc[m]["IoU"] for m in common], [rows[m]["IoU"] for m in common])
    rho_ada = spearmanr([mc[m]["ADA"] for m in common], [rows[m]["ADA"] for m in common])
    assert (f"Over the {len(common)} methods measured on both posteriors, the Spearman rank "
            f"correlation with the ensemble's table is {rho_iou.statistic:.2f} in IoU and "
            f"{rho_ada.statistic:.2f} in ADA") in page
