"""The sentences of the README and of docs/reproduction.md about MNIST's detection table
at N = 500 are those of its files: every figure, every lead and its standard errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from uattr.experiments.registry import AMORTIZED

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
    ranked = sorted((m for m in rows if not m.startswith("oracle")),
                    key=lambda m: -rows[m]["IoU"])
    assert ranked[:2] == ["delta-clue", "clue"] and rows["delta-clue"]["IoU - best"] == 0.0
    lead, se = _paired("delta-clue", "clue")
    assert (f"δ-CLUE {rows['delta-clue']['IoU']:.3f} and CLUE {rows['clue']['IoU']:.3f} IoU "
            f"({lead:.3f} apart, {lead / se:.1f} paired standard errors)") in page
    pixels, slic = rows["optimization (pixels)"], rows["optimization (slic)"]
    assert (f"per pixel ({pixels['IoU']:.3f}) is {-pixels['IoU - best']:.3f} behind δ-CLUE "
            f"({-pixels['IoU - best'] / pixels['its s.e.']:.1f} paired standard errors), on "
            f"slic segments ({slic['IoU']:.3f}) {-slic['IoU - best']:.3f} "
            f"({-slic['IoU - best'] / slic['its s.e.']:.1f})") in page
    # first of papers/000's methods (every row but the generative ones, uattr's amortised
    # explainer and the oracles), by less than two paired standard errors over the next
    papers000 = [m for m in ranked if m not in ("clue", "delta-clue", *AMORTIZED)]
    assert papers000[:2] == ["optimization (pixels)", "optimization (slic)"]
    assert papers000[2] == "ua-backprop"
    lead, se = _paired("optimization (pixels)", "ua-backprop")
    slic_lead, slic_se = _paired("optimization (slic)", "ua-backprop")
    assert lead / se < 2, "the page calls this lead within the noise"
    assert (f"per pixel {lead:.3f} IoU above UA-Backprop ({rows['ua-backprop']['IoU']:.3f}), "
            f"{lead / se:.1f} paired standard errors (on slic {slic_lead:.3f}, "
            f"{slic_lead / slic_se:.1f})") in page
    tie, tie_se = _paired("optimization (pixels)", "optimization (slic)")
    assert (f"per pixel {tie:.3f} IoU above slic ({tie / tie_se:.1f} paired standard "
            "errors)") in page
    readme = _text(ROOT / "README.md")
    behind = -pixels["IoU - best"]
    assert (f"δ-CLUE ({rows['delta-clue']['IoU']:.2f}) and CLUE ({rows['clue']['IoU']:.2f}) "
            f"are first; the optimization-based method is first of papers/000's methods "
            f"({pixels['IoU']:.2f} per pixel, {slic['IoU']:.2f} on slic segments) but only "
            f"{lead:.3f} above UA-Backprop ({lead / se:.1f} paired standard errors: within "
            f"the noise), and {behind:.3f} below δ-CLUE "
            f"({behind / pixels['its s.e.']:.1f})") in readme


MC_DROPOUT = RESULTS / "mnist-test-n500-mc-dropout-cuda-seed0"


def test_the_mc_dropout_sentences_are_those_of_its_files(rows):
    page = _text(ROOT / "docs" / "reproduction.md")
    record = json.loads((MC_DROPOUT / "run-detection.json").read_text())["weights"]
    ensemble = json.loads((TABLE / "run-detection.json").read_text())["weights"]
    dropout = next(v for k, v in record.items() if "mc-dropout" in k)
    assert dropout == next(v for k, v in ensemble.items() if k.endswith("/member0.pt"))
    assert "Its weights are byte for byte those of the ensemble's member 0" in page
    mc = _rows(MC_DROPOUT / "detection.json")
    per = json.loads((MC_DROPOUT / "detection_per_image.json").read_text())["IoU"]

    def paired(a: str, b: str) -> tuple[float, float]:
        difference = np.array(per[a]) - np.array(per[b])
        return difference.mean(), difference.std(ddof=1) / len(difference) ** 0.5

    common = sorted(m for m in set(mc) & set(rows) if not m.startswith("oracle"))
    rho_iou = spearmanr([mc[m]["IoU"] for m in common], [rows[m]["IoU"] for m in common])
    rho_ada = spearmanr([mc[m]["ADA"] for m in common], [rows[m]["ADA"] for m in common])
    assert (f"Over the {len(common)} methods measured on both posteriors, the Spearman rank "
            f"correlation with the ensemble's table is {rho_iou.statistic:.2f} in IoU and "
            f"{rho_ada.statistic:.2f} in ADA") in page
    ranked = sorted(common, key=lambda m: -mc[m]["IoU"])
    assert ranked[:2] == ["clue", "optimization (slic)"]
    assert ranked[-1] == "lime"
    slic, pixels, ua = (mc[m]["IoU"] for m in ("optimization (slic)", "optimization (pixels)",
                                                 "ua-backprop"))
    # "above every baseline of papers/000": every row but CLUE, δ-CLUE and its own
    baselines = [m for m in common if m not in ("clue", "delta-clue") and
                 not m.startswith("optimization")]
    assert max(mc[m]["IoU"] for m in baselines) == ua
    lead, se = paired("optimization (slic)", "ua-backprop")
    assert (f"({slic:.3f} against {ua:.3f} for UA-Backprop, {lead / se:.1f} paired standard "
            "errors)") in page
    lead, se = paired("optimization (pixels)", "ua-backprop")
    assert lead / se < 2  # "within the noise"
    assert (f"per pixel ({pixels:.3f}) it is {lead:.3f} above UA-Backprop, {lead / se:.1f} "
            "paired standard errors: within the noise") in page
    oracles = [mc[m]["IoU"] for m in mc if m.startswith("oracle")]
    assert all(abs(iou - 0.8) < 0.05 for iou in oracles)  # "about 0.8"
    from uattr.experiments.registry import FAMILIES

    change = {m: mc[m]["IoU"] - rows[m]["IoU"] for m in common}
    gradient = [m for m in common if m in FAMILIES["gradient"]]
    others = [m for m in common
              if m in (*FAMILIES["optimization"], *FAMILIES["perturbation"])]
    losses = sorted(-change[m] for m in gradient)
    assert losses[0] > 0 and max(gradient, key=lambda m: -change[m]) == "grad"
    assert (f"The gradient methods lose {losses[0]:.3f}-{losses[-1]:.3f} IoU on MC-Dropout** "
            "(Grad the most)") in page
    assert (f"stay within {max(abs(change[m]) for m in others):.3f} of their values on the "
            "ensemble") in page
    over_slic, se_slic = paired("clue", "optimization (slic)")
    over_delta, se_delta = paired("clue", "delta-clue")
    assert over_slic / se_slic < 2  # "a tie"
    assert (f"CLUE is first here** ({mc['clue']['IoU']:.3f} IoU), {over_slic:.3f} above the "
            f"optimization-based method on slic segments ({over_slic / se_slic:.1f} paired "
            f"standard errors: a tie) and {over_delta:.3f} above δ-CLUE "
            f"({over_delta / se_delta:.1f})") in page


def test_the_quickstarts_advice_is_that_of_the_file(rows):
    page = _text(ROOT / "docs" / "quickstart.md")
    lead, se = _paired("optimization (pixels)", "ua-backprop")
    assert lead / se < 2  # "within the noise"
    assert (f"δ-CLUE and CLUE are first (IoU {rows['delta-clue']['IoU']:.3f} and "
            f"{rows['clue']['IoU']:.3f};") in page
    assert (f"then the optimization-based method ({rows['optimization (pixels)']['IoU']:.3f} "
            "per pixel and on slic segments), within the noise of UA-Backprop "
            f"({rows['ua-backprop']['IoU']:.3f})") in page
    both = {f"{rows[f'optimization ({unit})']['IoU']:.3f}" for unit in ("pixels", "slic")}
    assert len(both) == 1  # "per pixel and on slic segments": one figure for both


SPREAD = RESULTS / "mnist-test-n500-spread"
ENSEMBLES = [TABLE, RESULTS / "mnist-test-n500-ensemble1-seed0",
             RESULTS / "mnist-test-n500-ensemble2-seed0"]


def test_the_spread_sentences_are_those_of_the_three_ensembles_files():
    from uattr.experiments.spread import detection_spread, paired_differences, read_per_image

    tables = [read_per_image(folder) for folder in ENSEMBLES]
    # the committed spread follows from the three per-image files
    stored = {row["method"]: row for row in json.loads((SPREAD / "spread.json").read_text())}
    for row in detection_spread(tables):
        assert row == pytest.approx(stored[row["method"]])
    page = _text(ROOT / "docs" / "reproduction.md")
    shared = [m for m in tables[0] if all(m in t for t in tables)]
    ranks = [sorted(shared, key=lambda m, t=t: -t[m].mean()) for t in tables]
    assert all(order[:2] in (["delta-clue", "clue"], ["clue", "delta-clue"]) for order in ranks)
    assert all(order[2] == "optimization (pixels)" for order in ranks)
    dc, cl, px = stored["delta-clue"], stored["clue"], stored["optimization (pixels)"]
    assert (f"δ-CLUE first on {dc['first in']}, CLUE on {cl['first in']}; "
            f"{dc['IoU mean']:.3f} and {cl['IoU mean']:.3f} IoU on average") in page
    assert (f"({px['IoU mean']:.3f} on average, {px['s.e. across ensembles']:.3f} standard error "
            "across ensembles)") in page

    def pair(table, a, b):
        return next(p for p in paired_differences({m: table[m] for m in (a, b)})
                    if p["method"] == a)

    lead = [pair(t, "optimization (pixels)", "ua-backprop") for t in tables]
    differences = ", ".join(f"{p['IoU difference']:+.3f}" for p in lead)
    standard_errors = ", ".join(f"{p['in s.e.']:.1f}" for p in lead)
    assert (f"per pixel {differences} on ensembles 0, 1 and 2 ({standard_errors} paired "
            "standard errors across images)") in page
    assert f"about {np.mean([p['IoU difference'] for p in lead]):.2f} IoU" in page
    readme = _text(ROOT / "README.md")
    assert (f"the method third every time, its lead over UA-Backprop {differences} on "
            f"ensembles 0, 1 and 2 ({standard_errors} paired standard errors)") in readme
    others = [m for m in shared if m not in ("clue", "delta-clue") and "optimization" not in m]
    for k in (1, 2):  # Guided Backprop leads the other methods of papers/000 there
        assert max(others, key=lambda m, t=tables[k]: t[m].mean()) == "guided backprop"
    spreads = [r["s.e. across ensembles"] for r in stored.values()]
    assert f"standard error across ensembles is {min(spreads):.3f}-{max(spreads):.3f} IoU" \
        in page


def test_the_second_order_sentence_is_that_of_the_file(rows):
    page = _text(ROOT / "docs" / "reproduction.md")
    lrp, gi = rows["covlrp"], rows["covgi"]
    gaps = {(m, ref): _paired(ref, m) for m in ("covlrp", "covgi")
            for ref in ("grad", "ua-backprop")}
    assert all(gap > 0 and gap / se > 3 for gap, se in gaps.values())  # "less often"
    ahead, se = _paired("covlrp", "covgi")
    assert (f"CovLRP {lrp['IoU']:.3f} and CovGI {gi['IoU']:.3f} IoU, "
            f"{gaps['covlrp', 'grad'][0]:.3f} and {gaps['covgi', 'grad'][0]:.3f} below Grad "
            f"({gaps['covlrp', 'grad'][0] / gaps['covlrp', 'grad'][1]:.1f} and "
            f"{gaps['covgi', 'grad'][0] / gaps['covgi', 'grad'][1]:.1f} paired standard "
            f"errors) and {gaps['covlrp', 'ua-backprop'][0]:.3f} and "
            f"{gaps['covgi', 'ua-backprop'][0]:.3f} below UA-Backprop "
            f"({gaps['covlrp', 'ua-backprop'][0] / gaps['covlrp', 'ua-backprop'][1]:.1f} and "
            f"{gaps['covgi', 'ua-backprop'][0] / gaps['covgi', 'ua-backprop'][1]:.1f})") in page
    assert (f"CovLRP's γ-rule is {ahead:.3f} ahead of CovGI's Gradient×Input "
            f"({ahead / se:.1f} s.e.)") in page
    # the passes: CovGI one forward and one backward (each member runs back once, on its
    # own copy of the images), CovLRP one LRP pass through each member's copy
    assert (gi["forward/image"], gi["backward/image"]) == (1, 1)
    assert (lrp["forward/image"], lrp["backward/image"]) == (2, 1)


def _pairs(folder: Path, a: str, b: str) -> tuple[float, float]:
    """Row ``a``'s mean IoU lead over row ``b`` in ``folder`` and that lead in paired
    standard errors."""
    per = json.loads((folder / "detection_per_image.json").read_text())["IoU"]
    difference = np.array(per[a]) - np.array(per[b])
    return difference.mean(), difference.mean() / (difference.std(ddof=1)
                                                  / len(difference) ** 0.5)


def test_the_second_order_rows_across_ensembles_are_those_of_the_files():
    page = _text(ROOT / "docs" / "reproduction.md")

    def listed(a: str, b: str) -> tuple[str, str]:
        leads = [_pairs(folder, a, b) for folder in ENSEMBLES]
        return (", ".join(f"{lead:.3f}" for lead, _ in leads),
                ", ".join(f"{in_se:.1f}" for _, in_se in leads))

    lrp, lrp_se = listed("grad", "covlrp")
    gi, gi_se = listed("grad", "covgi")
    assert all(_pairs(f, "grad", m)[0] > 0 for f in ENSEMBLES for m in ("covgi", "covlrp"))
    assert (f"CovLRP by {lrp} IoU on ensembles 0, 1 and 2 ({lrp_se} paired standard errors "
            f"across images) and CovGI by {gi} ({gi_se})") in page
    leads = [_pairs(folder, "covlrp", "covgi") for folder in ENSEMBLES]
    assert all(lead > 0 for lead, _ in leads)  # "ahead of CovGI on all three"
    assert (f"({', '.join(f'{lead:+.3f}' for lead, _ in leads)}; "
            f"{', '.join(f'{in_se:.1f}' for _, in_se in leads)} paired standard errors)") in page


def test_covgi_on_mc_dropout_is_that_of_the_file(rows):
    page = _text(ROOT / "docs" / "reproduction.md")
    mc = _rows(MC_DROPOUT / "detection.json")["covgi"]
    gain = mc["IoU"] - rows["covgi"]["IoU"]
    tie, tie_se = _pairs(MC_DROPOUT, "covgi", "grad")
    behind, behind_se = _pairs(MC_DROPOUT, "ua-backprop", "covgi")
    assert abs(tie_se) < 2  # "ties"
    assert (f"CovGI gains on MC-Dropout**: {mc['IoU']:.3f} IoU, {gain:.3f} above its value on "
            f"the ensemble; there it ties Grad ({tie:+.3f}, {tie_se:.1f} paired standard errors) "
            f"and stays {behind:.3f} below UA-Backprop ({behind_se:.1f})") in page
    # measured on a CPU beside rows made on a GPU: the runtime table says where each ran
    devices = {row["method"]: row["device"]
               for row in json.loads((MC_DROPOUT / "runtime.json").read_text())}
    assert devices["covgi"].startswith("cpu") and devices["grad"].startswith("cuda")
