"""The sentences of docs/reproduction.md about the ablation on detection are those of the
committed table (``uattr bench ablation --n 500 --parts detection``) and its pairs."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "results" / "mnist-test-n500-seed0"
ORACLE = "oracle: "


def test_the_ablation_sentences_are_those_of_the_table_and_its_pairs():
    rows = {r["method"]: r for r in json.loads((FOLDER / "ablation_detection.json").read_text())}
    pairs = json.loads((FOLDER / "ablation_detection_pairs.json").read_text())
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())

    def pair(row: str, against: str) -> dict:
        return next(p for p in pairs if p["method"] == row and p["against"] == against)

    def pm(p: dict) -> str:
        return f"{abs(p['IoU difference']):.3f} ± {p['its s.e.']:.3f}"

    lp_o = pair(ORACLE + "Eq. (3) + segments + LP", ORACLE + "Eq. (3) + segments")
    gu_o = pair(ORACLE + "Eq. (3) + segments + LP + Gumbel", ORACLE + "Eq. (3) + segments + LP")
    assert lp_o["in s.e."] > 2 and gu_o["in s.e."] > 2  # "each component helps" there
    assert (f"the learnable blur adds {pm(lp_o)} IoU and the Gumbel-sigmoid another "
            f"{pm(gu_o)}") in page
    chain = " → ".join(f"{rows[ORACLE + name]['IoU']:.3f}" for name in (
        "Eq. (3) + segments", "Eq. (3) + segments + LP", "Eq. (3) + segments + LP + Gumbel"))
    assert chain in page
    seg = pair("Eq. (3) + segments", "Eq. (3) per pixel")
    lp = pair("Eq. (3) + segments + LP", "Eq. (3) + segments")
    gu = pair("Eq. (3) + segments + LP + Gumbel", "Eq. (3) + segments + LP")
    full = pair("Eq. (3) + segments + LP + Gumbel", "Eq. (3) per pixel")
    assert seg["in s.e."] < -2 and abs(full["in s.e."]) < 1  # "within a standard error"
    assert (f"from {rows['Eq. (3) per pixel']['IoU']:.3f} per pixel to "
            f"{rows['Eq. (3) + segments']['IoU']:.3f} (by {pm(seg)}, "
            f"{-seg['in s.e.']:.1f} s.e.); the learnable blur adds {pm(lp)} "
            f"({lp['in s.e.']:.1f} s.e.) and the Gumbel-sigmoid {pm(gu)} "
            f"({gu['in s.e.']:.1f} s.e.), so the complete method on slic "
            f"({rows['Eq. (3) + segments + LP + Gumbel']['IoU']:.3f}) ends within a standard "
            f"error of the relaxed mask per pixel ({pm(full)} "
            f"{'below' if full['IoU difference'] < 0 else 'above'})") in page
