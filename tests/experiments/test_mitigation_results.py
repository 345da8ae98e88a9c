"""The sentences of the README and of docs/reproduction.md about uncertainty mitigation
with attention (papers/002 Table 2) are those of its file."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "results" / "mnist-test-mitigation" / "mitigation.json"


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


@pytest.fixture(scope="module")
def rows():
    return {(row["method"], row["space"]): row for row in json.loads(TABLE.read_text())}


def test_the_standard_errors_are_those_of_the_paired_seeds(rows):
    for row in rows.values():
        assert row["ΔACC s.e."] == pytest.approx(row["ΔACC sd"] / row["runs"] ** 0.5)


def test_no_gain_is_two_standard_errors_and_the_largest_are_stated(rows):
    gains = {key: row for key, row in rows.items() if row["ΔACC in s.e."] is not None}
    assert max(row["ΔACC in s.e."] for row in gains.values()) < 2
    ranked = sorted(gains, key=lambda key: -gains[key]["ΔACC"])
    assert [m for m, _ in ranked[:3]] == ["ua-backprop", "covgi", "fullgrad"]
    assert ranked[0] == ("ua-backprop", "latent")
    page = _text(ROOT / "docs" / "reproduction.md")
    ua, gi, full = rows["ua-backprop", "latent"], rows["covgi", "latent"], rows["fullgrad",
                                                                                "latent"]
    grad, worst = rows["grad", "latent"], gains[ranked[-1]]
    below = [key for key, row in gains.items() if row["ΔACC"] < 0]
    assert ranked[-1] == ("blur ig", "latent")
    assert (f"the largest gain is UA-Backprop's +{ua['ΔACC']:.2f} points "
            f"({ua['ΔACC in s.e.']:.1f} standard errors), then CovGI's +{gi['ΔACC']:.2f} "
            f"({gi['ΔACC in s.e.']:.1f}) and FullGrad's +{full['ΔACC']:.2f} "
            f"({full['ΔACC in s.e.']:.1f}); Grad ties no attention (+{grad['ΔACC']:.2f}), and "
            f"{_WORDS[len(below)]} of the {_WORDS[len(gains)]} rows with attention lie below it, "
            f"down to Blur "
            f"IG's −{-worst['ΔACC']:.2f} (−{-worst['ΔACC in s.e.']:.1f})") in page
    assert grad["ΔACC"] == 0.0  # "ties": the paired mean is exactly zero
    nll = [row["NLL"] for key, row in rows.items() if key[0] != "no attention"]
    plain = rows["no attention", "–"]
    assert (f"NLL ranges over {min(nll):.3f}-{max(nll):.3f} against {plain['NLL']:.3f} ± "
            f"{plain['NLL sd']:.3f} without attention") in page
    # the lowest NLL is the optimization-based method's, about two standard deviations of
    # no attention's below it, at a ΔACC within the noise
    lowest = min((row for key, row in rows.items() if key[0] != "no attention"),
                 key=lambda row: row["NLL"])
    assert lowest["method"] == "optimization (pixels)"
    assert 1.5 < (plain["NLL"] - lowest["NLL"]) / plain["NLL sd"] < 2.5
    assert 1.5 < (plain["NLL"] - lowest["NLL"]) / lowest["NLL sd"] < 2.5
    assert abs(lowest["ΔACC in s.e."]) < 1
    assert (f"The lowest is the optimization-based method's, {lowest['NLL']:.3f} ± "
            f"{lowest['NLL sd']:.3f}, about two of those standard deviations below no "
            f"attention, where its accuracy gains +{lowest['ΔACC']:.2f} points "
            f"({lowest['ΔACC in s.e.']:.1f} standard errors)") in page
    # "the paper's UA-Backprop lowers NLL by more (than any row here); ours hardly moves it"
    assert plain["NLL (paper)"] - ua["NLL (paper)"] > plain["NLL"] - lowest["NLL"]
    assert abs(plain["NLL"] - ua["NLL"]) < plain["NLL sd"]
    assert (f"The paper's UA-Backprop lowers NLL by more ({plain['NLL (paper)']:.3f} → "
            f"{ua['NLL (paper)']:.3f}); ours hardly moves it ({ua['NLL']:.3f})") in page
    assert (f"Our plain network is stronger than the paper's ({plain['ACC (%)']:.2f}% against "
            f"{plain['ACC (paper)']:.2f}% on 500 images)") in page
    paper_gain = ua["ACC (paper)"] - plain["ACC (paper)"]
    readme = _text(ROOT / "README.md")
    assert (f"(UA-Backprop {paper_gain:.2f} points there, {ua['ΔACC']:.2f} here); no row lies "
            f"two standard errors above training without attention, UA-Backprop's "
            f"+{ua['ΔACC']:.2f} points ({ua['ΔACC in s.e.']:.1f}) the largest") in readme
    assert (f"The optimization-based method's attention gives the lowest NLL, "
            f"{lowest['NLL']:.3f} against {plain['NLL']:.3f} without attention (about two "
            "standard deviations of either), for no gain in accuracy") in readme
    assert (f"papers/002 has UA-Backprop {paper_gain:.2f} points above no attention "
            f"({ua['ACC (paper)']:.2f}% against {plain['ACC (paper)']:.2f}%)") in page


_WORDS = {6: "six", 12: "twelve", 11: "eleven", 5: "five", 7: "seven"}


def test_the_validation_alpha_sentences_are_those_of_the_sweep_and_alpha_its_choice():
    from uattr.experiments.benchmarks.mitigation import MitigationSettings

    sweep = json.loads((ROOT / "docs/results/mnist-valid-mitigation/mitigation_alpha.json")
                       .read_text())
    plain = next(row for row in sweep if row["α"] == 0)
    rows = [row for row in sweep if row["α"] != 0]
    for row in rows:  # the standard errors are those of the paired seeds
        assert row["ΔACC in s.e."] == pytest.approx(row["ΔACC"] / row["ΔACC s.e."])
    page = _text(ROOT / "docs" / "hyperparameters.md")
    gains = [row["ΔACC"] for row in rows]
    farthest = max(abs(row["ΔACC in s.e."]) for row in rows)
    assert farthest < 2  # "no α moves the accuracy two standard errors"
    assert (f"without attention ({plain['ACC (%)']:.3f} ± {plain['ACC sd']:.3f}%): the paired "
            f"differences lie between −{-min(gains):.3f} and +{max(gains):.3f} points, at "
            f"most {farthest:.1f} standard errors") in page
    latent = [row for row in rows if row["space"] == "latent"]
    best = max(latent, key=lambda row: row["ACC (%)"])
    lowest_nll = min(latent, key=lambda row: row["NLL"])
    assert best["α"] == MitigationSettings().alpha  # the default is the sweep's choice
    assert best["NLL"] - lowest_nll["NLL"] < best["NLL sd"]  # "within one standard deviation"
    assert (f"latent-space accuracy ({best['ACC (%)']:.3f}%, +{best['ΔACC']:.3f} ± "
            f"{best['ΔACC s.e.']:.3f}, {best['ΔACC in s.e.']:.1f} standard errors), and its NLL "
            f"({best['NLL']:.3f}) is within one standard deviation of the best, "
            f"α = {lowest_nll['α']:g}'s {lowest_nll['NLL']:.3f}") in page
