"""The sentences of docs/reproduction.md about the mask rule and the warm start are those
of the committed table (``uattr bench stopping --n 500``) and its paired differences."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "mnist-test-n500-seed0"


def test_the_stopping_sentences_are_those_of_the_table():
    rows = {(r["start"], r["stop"]): r for r in json.loads((FOLDER / "stopping.json").read_text())}
    pairs = json.loads((FOLDER / "stopping_pairs.json").read_text())
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())

    def pair(row: str, against: str) -> dict:
        return next(p for p in pairs if p["method"] == f"slic, {row}"
                    and p["against"] == f"slic, {against}")

    loss, mask, warm = rows["cold", "loss rule"], rows["cold", "mask rule"], \
        rows["warm", "mask rule"]
    m = pair("cold start, mask rule", "cold start, loss rule")
    w = pair("warm start, mask rule", "cold start, loss rule")
    wc = pair("warm start, mask rule", "cold start, mask rule")
    # the loss rule runs every image to the limit; the mask rule ends every one
    assert loss["share at the limit"] == 1 and mask["share at the limit"] == 0
    assert mask["mean steps"] <= 150  # the paper's order of steps
    assert abs(m["IoU difference"] - mask["IoU - loss rule"]) < 1e-12
    assert m["in s.e."] < -2 and w["in s.e."] < -2 and wc["in s.e."] < -2
    assert (f"after {mask['mean steps']:.0f} steps on average, the paper's order of steps, with "
            f"{mask['forward/image']:.0f} forward passes per image against the loss rule's "
            f"{loss['forward/image']:.0f}, at {mask['IoU']:.3f} IoU: {-m['IoU difference']:.3f} "
            f"below the loss rule ({-m['in s.e.']:.1f} paired standard errors)") in page
    assert (f"stops sooner ({warm['mean steps']:.0f} steps) at {warm['IoU']:.3f}, "
            f"{-w['IoU difference']:.3f} below the loss rule ({-w['in s.e.']:.1f} s.e.) and "
            f"{-wc['IoU difference']:.3f} below the cold start with the same rule "
            f"({-wc['in s.e.']:.1f} s.e.)") in page
    # the warm start pays one forward and one backward pass of its own
    # (the counts are means over 500 images: exact to float64 rounding)
    assert abs(warm["backward/image"] - warm["mean steps"] - 1) < 1e-9
    assert abs(warm["forward/image"] - mask["forward/image"]
               - (warm["mean steps"] - mask["mean steps"] + 1)) < 1e-9


def test_the_colour_stopping_sentences_are_those_of_the_table():
    folder = ROOT / "docs" / "results" / "photo-mnist-test-n500-seed0"
    rows = {(r["start"], r["stop"]): r for r in json.loads((folder / "stopping.json").read_text())}
    pairs = {(p["method"], p["against"]): p
             for p in json.loads((folder / "stopping_pairs.json").read_text())}
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())
    loss, mask, warm = rows["cold", "loss rule"], rows["cold", "mask rule"], \
        rows["warm", "mask rule"]
    m = pairs["slic, cold start, mask rule", "slic, cold start, loss rule"]
    w = pairs["slic, warm start, mask rule", "slic, cold start, loss rule"]
    wc = pairs["slic, warm start, mask rule", "slic, cold start, mask rule"]
    assert loss["share at the limit"] == 1
    assert m["in s.e."] < -2 and w["in s.e."] < -2 and wc["in s.e."] < -2
    # "neither data set reaches 150 steps within 0.01 IoU of the loss rule"
    assert mask["mean steps"] > 150 or m["IoU difference"] < -0.01
    assert (f"it ends all but {mask['share at the limit']:.3f} of the images before the limit, "
            f"after {mask['mean steps']:.0f} steps on average ({mask['forward/image']:.0f} "
            f"forward passes per image against the loss rule's {loss['forward/image']:.0f}), "
            f"at {mask['IoU']:.3f} IoU, {-m['IoU difference']:.3f} below the loss rule "
            f"({-m['in s.e.']:.1f} paired standard errors)") in page
    assert (f"it stops after {warm['mean steps']:.0f} steps at {warm['IoU']:.3f} IoU, "
            f"{-w['IoU difference']:.3f} below the loss rule ({-w['in s.e.']:.1f} s.e.) and "
            f"{-wc['IoU difference']:.3f} below the cold start with the same rule "
            f"({-wc['in s.e.']:.1f} s.e.)") in page
    detection = next(r for r in json.loads((folder / "detection.json").read_text())
                     if r["method"] == "optimization (slic)")
    assert (f"The loss rule's row ({loss['IoU']:.3f}) draws its Gumbel noise per image"
            in page)
    assert f"the detection table above ({detection['IoU']:.3f} for the same method)" in page


def test_the_readme_sentence_on_stopping_is_that_of_both_tables():
    def mask_row(folder: str) -> dict:
        rows = json.loads((ROOT / "docs" / "results" / folder / "stopping.json").read_text())
        return next(r for r in rows if (r["start"], r["stop"]) == ("cold", "mask rule"))

    mnist, colour = mask_row("mnist-test-n500-seed0"), mask_row("photo-mnist-test-n500-seed0")
    cost = f"{-mnist['IoU - loss rule']:.3f}"
    assert cost == f"{-colour['IoU - loss rule']:.3f}"  # "alike"
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"the mask rule costs {cost} IoU on MNIST and on colour photo-mnist alike, after "
            f"{mnist['mean steps']:.0f} and {colour['mean steps']:.0f} steps") in readme
