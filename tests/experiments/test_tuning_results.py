"""The sentences of docs/hyperparameters.md about UA-Backprop's temperatures are those of
the committed sweep (``python tuning/ua_backprop.py``), and the defaults are its choice."""

import json
from pathlib import Path

from uattr.attribution.ua_backprop import _DEFAULT_TAU2

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "docs" / "results" / "mnist-valid-n100-seed0" / "ua_backprop_tuning.json"


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


def test_ua_backprops_defaults_are_the_sweeps_choice_and_its_sentences_its_figures():
    rows = json.loads(SWEEP.read_text())
    page = _text(ROOT / "docs" / "hyperparameters.md")
    for path, label in (("fullgrad", "FullGrad"), ("gradient", "gradient")):
        grid = [row for row in rows if row["path"] == path]
        best = max(grid, key=lambda row: row["IoU"])
        worst = min(grid, key=lambda row: row["IoU"])
        # "the whole grid lies within two standard errors of its best"
        assert best["IoU"] - worst["IoU"] < 2 * best["IoU s.e."]
        at_one = max((row for row in grid if row["τ1"] == 1.0), key=lambda row: row["IoU"])
        # the default is the best τ2 for τ1 = 1, to the two digits it is written with
        assert abs(_DEFAULT_TAU2[path] - at_one["τ2"]) / at_one["τ2"] < 0.1
        scale = at_one["τ2"] / at_one["τ2 / scale"]
        row = (f"| {label} | {worst['IoU']:.3f} / {worst['ADA']:.2f} | {best['IoU']:.3f} / "
               f"{best['ADA']:.2f} (τ1 = {best['τ1']:g}, τ2 = {best['τ2 / scale']:g} × "
               f"{scale:.3f}) | τ2 = {at_one['τ2 / scale']:g} × {scale:.3f}: "
               f"{at_one['IoU']:.3f} / {at_one['ADA']:.2f} |")
        assert row in page
    plain = rows[0]
    assert plain["path"].startswith("plain gradient")
    assert f"scores {plain['IoU']:.3f} / {plain['ADA']:.2f} on the same images" in page
