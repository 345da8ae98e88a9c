"""The sentences of docs/reproduction.md about the ablation are those of the committed
tables (``uattr bench ablation --n 500``, detection and faithfulness) and their pairs."""

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


def test_the_faithfulness_ablation_sentences_are_those_of_the_table_and_its_pairs():
    rows = {r["method"]: r
            for r in json.loads((FOLDER / "ablation_faithfulness.json").read_text())}
    pairs = json.loads((FOLDER / "ablation_faithfulness_pairs.json").read_text())
    page = " ".join((ROOT / "docs" / "reproduction.md").read_text().split())
    plain = "Eq. (3) per pixel"

    def pair(row: str, column: str, against: str = plain) -> dict:
        key = f"URR {column} difference"
        return next(p for p in pairs if p["method"] == row and p["against"] == against
                    and key in p)

    def pm(p: dict) -> str:
        value = next(v for k, v in p.items() if k.endswith("difference"))
        return f"{value:+.3f} ± {p['its s.e.']:.3f}".replace("-", "−")

    lp2, lp5 = pair("+ LP", "blur 2%"), pair("+ LP", "blur 5%")
    assert all(pair("+ LP", c)["URR " + c + " difference"] < 0
               for c in ("gradient 0.5%", "gradient 1%", "blur 2%", "blur 5%"))  # "every"
    assert (f"(blur 2% / 5%: {pm(lp2)} / {pm(lp5)}, {-lp2['in s.e.']:.1f} / "
            f"{-lp5['in s.e.']:.1f} paired standard errors)") in page
    gu = pair("+ Gumbel", "gradient 0.5%")
    assert (f"({rows[plain]['gradient 0.5%']:.3f} → {rows['+ Gumbel']['gradient 0.5%']:.3f} "
            f"at 0.5%, {pm(gu)}, {gu['in s.e.']:.1f} s.e.) and lowers blur 5% slightly "
            f"({pm(pair('+ Gumbel', 'blur 5%'))})") in page
    full, loss = pair("+ LP + Gumbel", "gradient 0.5%"), pair("+ LP + Gumbel", "blur 5%")
    assert (f"keep that gain at gradient 0.5% ({pm(full)}) but lose "
            f"{-loss['URR blur 5% difference']:.3f} ± {loss['its s.e.']:.3f} at blur 5% "
            f"({rows[plain]['blur 5%']:.3f} → {rows['+ LP + Gumbel']['blur 5%']:.3f}, "
            f"{-loss['in s.e.']:.1f} s.e.)") in page
    # the complete method is the faithfulness table's own row
    table = {r["method"]: r for r in json.loads((FOLDER / "faithfulness.json").read_text())}
    assert rows["+ LP + Gumbel"]["blur 5%"] == table["optimization (pixels)"]["blur 5%"]
    stated = []
    for column in ("blur 2%", "blur 5%"):
        ours = [r[column] for r in rows.values()]
        paper = [r[f"{column} (paper)"] for r in rows.values()
                 if r[f"{column} (paper)"] is not None]
        assert min(ours) > max(paper)
        stated.append(f"{column}: {min(ours):.3f}-{max(ours):.3f} against "
                      f"{min(paper):.3f}-{max(paper):.3f}")
    assert f"of the same blur column ({'; '.join(stated)})" in page
