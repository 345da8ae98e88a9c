"""The sentences of the README and of docs/reproduction.md about MNIST's faithfulness
table at N = 500 are those of its files: the leaders of each half, the ties and their
paired standard errors (``faithfulness_pairs.json``, which a test recomputes from the
per-image values)."""

import json
from pathlib import Path

import pytest

from uattr.experiments.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "results" / "mnist-test-n500-seed0"
GRADIENT = ("gradient 0.5%", "gradient 1%")
BLUR = ("blur 2%", "blur 5%")
METHOD = "optimization (pixels)"


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


@pytest.fixture(scope="module")
def rows():
    return {row["method"]: row
            for row in json.loads((TABLE / "faithfulness.json").read_text())}


@pytest.fixture(scope="module")
def pair():
    """``pair(a, b, column)``: (a − b over the same images, that in paired s.e.)."""
    by = {}
    for p in json.loads((TABLE / "faithfulness_pairs.json").read_text()):
        column = next(k for k in p if k.endswith(" difference"))
        by[(p["method"], p["against"], column)] = (p[column], p["in s.e."])
        by[(p["against"], p["method"], column)] = (-p[column], -p["in s.e."])
    return lambda a, b, column: by[(a, b, f"URR {column} difference")]


def _first(rows, column):
    return max(rows, key=lambda m: rows[m][column])


def test_the_gradient_half_sentences_are_those_of_the_file(rows, pair):
    for column in (*GRADIENT, "gradient avg"):
        assert _first(rows, column) == "blur ig"
    lead = [pair("blur ig", METHOD, c) for c in GRADIENT]
    ties = [pair(m, METHOD, c)[1] for m in ("smoothgrad", "grad") for c in GRADIENT]
    assert max(abs(t) for t in ties) < 2
    page = _text(ROOT / "docs" / "reproduction.md")
    blur_ig, method, smooth, grad = (rows[m] for m in ("blur ig", METHOD, "smoothgrad",
                                                      "grad"))
    assert (f"On the gradient columns Blur IG leads** ({blur_ig['gradient 0.5%']:.3f} / "
            f"{blur_ig['gradient 1%']:.3f}), {lead[0][0]:.3f} / {lead[1][0]:.3f} above the "
            f"optimization-based method ({method['gradient 0.5%']:.3f} / "
            f"{method['gradient 1%']:.3f}; {lead[0][1]:.1f} / {lead[1][1]:.1f} paired "
            f"standard errors). SmoothGrad ({smooth['gradient 0.5%']:.3f} / "
            f"{smooth['gradient 1%']:.3f}) and Grad ({grad['gradient 0.5%']:.3f} / "
            f"{grad['gradient 1%']:.3f}) tie the method (within "
            f"{max(abs(t) for t in ties):.1f})") in page


def test_the_blur_half_sentences_are_those_of_the_file(rows, pair):
    shap, lime = "kernelshap-fixed", "lime (pixels)"
    for column in (*BLUR, "blur avg"):
        ranked = sorted(rows, key=lambda m: -rows[m][column])
        assert ranked[:3] == [shap, METHOD, lime]
    lead = [pair(shap, METHOD, c) for c in BLUR]
    over = [pair(METHOD, lime, c) for c in BLUR]
    assert min(s for _, s in (*lead, *over)) > 2
    page = _text(ROOT / "docs" / "reproduction.md")
    assert (f"On the blur columns fixed-mask KernelSHAP leads** ({rows[shap]['blur 2%']:.3f} "
            f"/ {rows[shap]['blur 5%']:.3f}), {lead[0][0]:.3f} / {lead[1][0]:.3f} above the "
            f"method ({lead[0][1]:.1f} / {lead[1][1]:.1f} paired standard errors), as in the "
            f"blurring test; the method is second, {over[0][0]:.3f} / {over[1][0]:.3f} above "
            f"LIME over pixels ({rows[lime]['blur 2%']:.3f} / {rows[lime]['blur 5%']:.3f}; "
            f"{over[0][1]:.1f} / {over[1][1]:.1f})") in page
    gradient = [m for m in rows if m in FAMILIES["gradient"]]
    positive = [m for m in gradient if all(rows[m][c] > 0 for c in BLUR)]
    assert positive == ["guided backprop"]
    assert all(rows[m][c] < 0 for m in set(gradient) - set(positive) for c in BLUR)
    for name, label in (("grad", "Grad's"), ("blur ig", "Blur IG's"),
                        ("ua-backprop", "UA-Backprop's")):
        assert (f"{label} {'blur URRs are ' if name == 'grad' else ''}"
                f"−{-rows[name]['blur 2%']:.3f} / −{-rows[name]['blur 5%']:.3f}") in page
    assert (f"only Guided Backprop's are positive ({rows['guided backprop']['blur 2%']:.3f} "
            f"/ {rows['guided backprop']['blur 5%']:.3f})") in page
    paper = rows[METHOD]
    assert all(rows[m][c] < paper[f"{c} (paper)"] for m in rows for c in BLUR)
    assert (f"the paper reports for the method on CIFAR-10 ({paper['blur 2% (paper)']:.3f} / "
            f"{paper['blur 5% (paper)']:.3f})") in page


def test_the_readme_sentence_is_that_of_the_file(rows, pair):
    shap = "kernelshap-fixed"
    assert _first(rows, "gradient avg") != _first(rows, "blur avg")  # "no method leads both"
    lead = [pair(shap, METHOD, c)[1] for c in BLUR]
    readme = _text(ROOT / "README.md")
    assert (f"On the gradient columns Blur IG leads (mean URR {rows['blur ig']['gradient avg']:.2f}"
            f" over 0.5% and 1% of the pixels, against {rows[METHOD]['gradient avg']:.2f} for "
            "the optimization-based method), and Grad and SmoothGrad tie the method; on the "
            f"blur columns fixed-mask KernelSHAP leads ({rows[shap]['blur avg']:.2f} over 2% "
            f"and 5%, {lead[0]:.1f} and {lead[1]:.1f} paired standard errors above the "
            f"method's {rows[METHOD]['blur avg']:.2f})") in readme
    assert all(rows[m][c] < 0 for m in ("grad", "blur ig", "ua-backprop") for c in BLUR)


def test_the_second_order_sentence_is_that_of_the_file(rows, pair):
    gi, lrp = rows["covgi"], rows["covlrp"]
    gaps = {(m, c): pair("grad", m, c) for m in ("covgi", "covlrp") for c in GRADIENT}
    assert all(gap > 0 and se > 2 for gap, se in gaps.values())  # both below Grad
    above = [pair("covgi", "grad", c) for c in BLUR]
    assert all(se > 2 for _, se in above)
    assert all(rows["covlrp"][c] < rows["grad"][c] for c in BLUR)
    assert all(rows[m][c] < 0 for m in ("covgi", "covlrp") for c in BLUR)
    negative = [m for m in (*FAMILIES["gradient"], *FAMILIES["second-order"])
                if all(rows[m][c] < 0 for c in BLUR)]
    for c in BLUR:  # CovGI's is the least negative of them
        assert max(negative, key=lambda m: rows[m][c]) == "covgi"
    g = [f"{gaps[m, c][0]:.3f}" for m in ("covgi", "covlrp") for c in GRADIENT]
    s = [f"{gaps[m, c][1]:.1f}" for m in ("covgi", "covlrp") for c in GRADIENT]
    page = _text(ROOT / "docs" / "reproduction.md")
    assert ("The second-order maps lose to the plain gradient on the gradient columns**: "
            f"CovGI {gi['gradient 0.5%']:.3f} / {gi['gradient 1%']:.3f} and CovLRP "
            f"{lrp['gradient 0.5%']:.3f} / {lrp['gradient 1%']:.3f}, {g[0]} / {g[1]} and "
            f"{g[2]} / {g[3]} below Grad ({s[0]} / {s[1]} and {s[2]} / {s[3]} paired standard "
            "errors). On the blur columns neither is positive: CovGI's URRs "
            f"(−{-gi['blur 2%']:.3f} / −{-gi['blur 5%']:.3f}) are {above[0][0]:.3f} / "
            f"{above[1][0]:.3f} above Grad's ({above[0][1]:.1f} / {above[1][1]:.1f}), the least "
            f"negative of the gradient-based maps, and CovLRP's (−{-lrp['blur 2%']:.3f} / "
            f"−{-lrp['blur 5%']:.3f}) are below Grad's.") in page
