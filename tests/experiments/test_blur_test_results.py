"""The sentences of the README and of docs/reproduction.md about MNIST's blurring test at
N = 500 are those of its files: the leader, the ties, the ranks and their paired
standard errors (``blur_test_pairs.json``, which a test recomputes from the per-image
values)."""

import json
from pathlib import Path

import pytest

from uattr.experiments.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "results" / "mnist-test-n500-seed0"
PAPER_ROWS = ("grad", "smoothgrad", "integrated gradients", "blur ig", "fullgrad",
              "ua-backprop", "clue", "delta-clue")  # papers/002 Table 1's eight
MURR = ("MURR 2%", "MURR 5%")


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


@pytest.fixture(scope="module")
def rows():
    return {row["method"]: row for row in json.loads((TABLE / "blur_test.json").read_text())}


@pytest.fixture(scope="module")
def pair():
    pairs = json.loads((TABLE / "blur_test_pairs.json").read_text())
    by = {(p["method"], p["against"], next(k for k in p if k.endswith(" difference"))): p
          for p in pairs}
    return lambda a, b, column: by[(a, b, f"{column} difference")]


def _ranked(rows, column, among=None):
    names = [m for m in rows if among is None or m in among]
    return sorted(names, key=lambda m: -rows[m][column])


def test_the_leader_and_the_tie_are_those_of_the_files(rows, pair):
    method, shap, lime = "optimization (pixels)", "kernelshap-fixed", "lime (pixels)"
    for column in MURR:
        assert _ranked(rows, column)[:3] == [shap, method, lime]
        assert pair(shap, method, column)["in s.e."] > 3  # a clear lead
        assert abs(pair(lime, method, column)["in s.e."]) < 2  # a tie
    lead = [pair(shap, method, c) for c in MURR]
    tie = max(abs(pair(lime, method, c)["in s.e."]) for c in MURR)
    readme = _text(ROOT / "README.md")
    assert (f"fixed-mask KernelSHAP leads (median MURR {rows[shap]['MURR 2%']:.2f} at 2% and "
            f"{rows[shap]['MURR 5%']:.2f} at 5% of the pixels), ahead of the optimization-based "
            f"method per pixel ({rows[method]['MURR 2%']:.2f}, {rows[method]['MURR 5%']:.2f}) "
            f"by {lead[0]['in s.e.']:.1f} and {lead[1]['in s.e.']:.1f} paired standard errors; "
            f"LIME ties the method ({rows[lime]['MURR 2%']:.2f}, {rows[lime]['MURR 5%']:.2f}; "
            f"within {tie:.1f})") in readme
    page = _text(ROOT / "docs" / "reproduction.md")
    assert (f"MURR {rows[shap]['MURR 2%']:.3f} / {rows[shap]['MURR 5%']:.3f} and AUC-URR "
            f"{rows[shap]['AUC-URR 2%']:.3f} / {rows[shap]['AUC-URR 5%']:.3f}. Per image its "
            f"MURR is {lead[0]['MURR 2% difference']:.3f} / {lead[1]['MURR 5% difference']:.3f}"
            f" above the optimization-based method's ({lead[0]['in s.e.']:.1f} / "
            f"{lead[1]['in s.e.']:.1f} paired standard errors)") in page
    ties = [pair(lime, method, c) for c in MURR]
    assert (f"tied with LIME over pixels ({rows[lime]['MURR 2%']:.3f} / "
            f"{rows[lime]['MURR 5%']:.3f}; per image {-ties[0]['MURR 2% difference']:.3f} "
            f"below the method at 2% and {ties[1]['MURR 5% difference']:.3f} above at 5%, "
            f"{abs(ties[0]['in s.e.']):.1f} / {ties[1]['in s.e.']:.1f} paired standard "
            "errors)") in page


def test_ua_backprop_is_sixth_of_the_papers_eight_rows(rows):
    for column in MURR:
        ranked = _ranked(rows, column, PAPER_ROWS)
        assert ranked.index("ua-backprop") == 5
        assert set(ranked[:5]) == {"clue", "delta-clue", "blur ig", "smoothgrad", "grad"}
        assert set(ranked[6:]) == {"fullgrad", "integrated gradients"}
    ua = rows["ua-backprop"]
    assert (f"it is sixth of papers/002's eight rows ({ua['MURR 2%']:.2f}, "
            f"{ua['MURR 5%']:.2f})") in _text(ROOT / "README.md")
    assert (f"it is sixth in both MURR columns ({ua['MURR 2%']:.3f} / {ua['MURR 5%']:.3f})"
            in _text(ROOT / "docs" / "reproduction.md"))


def test_the_second_order_sentence_is_that_of_the_files(rows, pair):
    gi, lrp = rows["covgi"], rows["covlrp"]
    gradient_based = (*FAMILIES["gradient"], *FAMILIES["second-order"])
    for column in MURR:
        assert _ranked(rows, column, gradient_based)[:2] == ["guided backprop", "covgi"]
    over = [pair("covgi", "grad", c) for c in MURR]
    under = [pair("guided backprop", "covgi", c) for c in MURR]
    gap = [pair("covgi", "covlrp", c) for c in MURR]
    assert all(p["in s.e."] > 2 for p in (*over, *gap))
    page = _text(ROOT / "docs" / "reproduction.md")
    assert (f"CovGI is the second gradient-based map** (MURR {gi['MURR 2%']:.3f} / "
            f"{gi['MURR 5%']:.3f}), {over[0]['MURR 2% difference']:.3f} / "
            f"{over[1]['MURR 5% difference']:.3f} above Grad ({over[0]['in s.e.']:.1f} / "
            f"{over[1]['in s.e.']:.1f} paired standard errors) and "
            f"{under[0]['MURR 2% difference']:.3f} / {under[1]['MURR 5% difference']:.3f} "
            f"below Guided Backprop ({under[0]['in s.e.']:.1f} / {under[1]['in s.e.']:.1f}); "
            f"CovLRP ({lrp['MURR 2%']:.3f} / {lrp['MURR 5%']:.3f}) is "
            f"{gap[0]['MURR 2% difference']:.3f} / {gap[1]['MURR 5% difference']:.3f} below "
            f"CovGI ({gap[0]['in s.e.']:.1f} / {gap[1]['in s.e.']:.1f})") in page
