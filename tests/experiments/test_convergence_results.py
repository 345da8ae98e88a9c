"""The convergence sentences of docs/reproduction.md are those of the committed table
(``uattr bench convergence --n 500``) and its paired differences."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "mnist-test-n500-seed0"


def test_the_convergence_sentences_are_those_of_the_table():
    rows = {(r["segments"], r["variant"]): r
            for r in json.loads((FOLDER / "convergence.json").read_text())}
    pairs = {(p["method"], p["against"]): p
             for p in json.loads((FOLDER / "convergence_pairs.json").read_text())}
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())
    # the stopping rule ends no image before the limit, in any variant
    assert all(r["share at the limit"] == 1 for r in rows.values())
    pixel, full = rows["pixels", "without Gumbel"], rows["pixels", "full method"]
    slic_lp, slic = rows["slic", "without Gumbel"], rows["slic", "full method"]
    near = pairs["Eq. (3) per pixel + LP", "optimization (pixels)"]
    gumbel = pairs["optimization (slic)", "Eq. (3) + segments + LP"]
    assert abs(near["in s.e."]) < 1 and gumbel["in s.e."] > 2
    assert abs(near["IoU difference"] - (pixel["IoU"] - full["IoU"])) < 1e-9
    assert (f"({pixel['IoU']:.3f} against {full['IoU']:.3f} IoU, {near['in s.e.']:.1f} paired "
            "standard errors apart)") in page
    assert (f"({slic['IoU']:.3f} against {slic_lp['IoU']:.3f}, {gumbel['in s.e.']:.1f} "
            "s.e.)") in page
