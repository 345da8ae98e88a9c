"""The sentences of docs/reproduction.md and the README about the corruption detectors as
segmenters are those of their files: every figure, gain and its paired standard errors."""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "results" / "mnist-test-n500-segmenters-cuda-seed0"
PASTE, RETOUCH = "paste-detector", "retouch-detector"


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())


class Stem:
    """One table of a folder (``segmenters`` or ``segmenters-patch-rotate``)."""

    def __init__(self, stem: str, folder: Path = TABLE) -> None:
        self.rows = {row["method"]: row
                     for row in json.loads((folder / f"{stem}.json").read_text())}
        self.per = json.loads((folder / f"{stem}_per_image.json").read_text())["IoU"]

    def iou(self, method: str) -> float:
        return self.rows[method]["IoU"]

    def paired(self, a: str, b: str) -> tuple[float, float]:
        """``a`` − ``b`` over the same images, and that difference in paired s.e."""
        difference = np.array(self.per[a]) - np.array(self.per[b])
        return difference.mean(), difference.mean() / (difference.std(ddof=1)
                                                       / len(difference) ** 0.5)


@pytest.fixture(scope="module")
def swap() -> Stem:
    return Stem("segmenters")


@pytest.fixture(scope="module")
def rotate() -> Stem:
    return Stem("segmenters-patch-rotate")


def _opt(segmenter: str) -> str:
    return f"optimization ({segmenter})"


def _own(detector: str) -> str:
    return f"detector only ({detector})"


def test_the_patch_swap_sentences_are_those_of_the_file(swap):
    page = _text(ROOT / "docs" / "reproduction.md")
    gain, gain_se = swap.paired(_opt(PASTE), _opt("slic"))
    ks_gain, ks_se = swap.paired(f"kernelshap-fixed ({PASTE})", "kernelshap-fixed (slic)")
    assert (f"paste-detector's segments the method reaches {swap.iou(_opt(PASTE)):.3f} IoU / "
            f"{swap.rows[_opt(PASTE)]['ADA']:.3f} ADA, {gain:.3f} above slic "
            f"({gain_se:.1f} paired standard errors), and fixed-mask KernelSHAP "
            f"{swap.iou(f'kernelshap-fixed ({PASTE})'):.3f} ({ks_gain:.3f} above slic, "
            f"{ks_se:.1f})") in page
    loss, loss_se = swap.paired(_opt(RETOUCH), _opt("slic"))
    assert loss < 0 and abs(loss_se) < 2  # "below slic ... no gain"
    assert (f"the method scores {swap.iou(_opt(RETOUCH)):.3f}, {-loss:.3f} below slic "
            f"({-loss_se:.1f} paired standard errors: no gain)") in page
    own, own_se = swap.paired(_own(PASTE), _opt(PASTE))
    assert (f"own map scores {swap.iou(_own(PASTE)):.3f} IoU / "
            f"{swap.rows[_own(PASTE)]['ADA']:.3f} ADA, {own:.3f} above the method on its "
            f"segments ({own_se:.1f} paired standard errors)") in page
    # "above every uncertainty attribution of the detection table"
    detection = json.loads((ROOT / "docs/results/mnist-test-n500-seed0/detection.json")
                           .read_text())
    assert swap.iou(_own(PASTE)) > max(row["IoU"] for row in detection
                                       if not row["method"].startswith("oracle"))
    own, own_se = swap.paired(_own(RETOUCH), _opt(RETOUCH))
    assert (f"detector's own map scores {swap.iou(_own(RETOUCH)):.3f}, {own:.3f} above the "
            f"method on its segments ({own_se:.1f})") in page


def test_the_patch_rotate_sentences_are_those_of_the_file(swap, rotate):
    page = _text(ROOT / "docs" / "reproduction.md")
    gain, gain_se = rotate.paired(_opt(PASTE), _opt("slic"))
    own, own_se = rotate.paired(_own(PASTE), _opt(PASTE))
    assert (f"On its segments the method reaches {rotate.iou(_opt(PASTE)):.3f} IoU, "
            f"{gain:.3f} above slic ({gain_se:.1f} paired standard errors), and its own map "
            f"{rotate.iou(_own(PASTE)):.3f}, {own:.3f} above the method ({own_se:.1f})") in page
    retouch, retouch_se = rotate.paired(_opt(RETOUCH), _opt("slic"))
    assert abs(retouch_se) < 2  # "none"
    assert (f"The retouch detector lifts the method by {retouch:.3f} over slic "
            f"({retouch_se:.1f}: none); its own map scores {rotate.iou(_own(RETOUCH)):.3f}"
            ) in page
    # "on both corruptions each detector's map alone scores at least the method's IoU on
    # its segments"
    for table in (swap, rotate):
        for detector in (PASTE, RETOUCH):
            assert table.iou(_own(detector)) >= table.iou(_opt(detector))


def test_the_readme_sentence_is_that_of_the_file(swap):
    readme = _text(ROOT / "README.md")
    assert abs(swap.paired(_opt(RETOUCH), _opt("slic"))[1]) < 2  # "no gain over slic"
    assert (f"lifts the method on its segments to {swap.iou(_opt(PASTE)):.2f}, but its own "
            f"map, which never looks at the model, scores {swap.iou(_own(PASTE)):.2f}; one "
            "trained only on retouches disjoint from patch swap (`retouch-detector`) gives "
            f"the method {swap.iou(_opt(RETOUCH)):.2f}, no gain over slic") in readme


def test_the_validation_segmenter_sentences_are_those_of_the_table():
    folder = ROOT / "docs" / "results" / "mnist-valid-n100-seed0"
    rows = {row["method"]: row for row in json.loads((folder / "segmenters.json").read_text())}
    pairs = {(p["method"], p["against"]): p
             for p in json.loads((folder / "segmenters_pairs.json").read_text())}
    page = _text(ROOT / "docs" / "hyperparameters.md")
    slic, pasted = rows["optimization (slic)"], rows[f"optimization ({PASTE})"]
    alone = rows[f"detector only ({PASTE})"]
    lift = pairs[f"optimization ({PASTE})", "optimization (slic)"]
    above = pairs[f"detector only ({PASTE})", f"optimization ({PASTE})"]
    assert lift["in s.e."] > 2 and above["in s.e."] > 2  # "lifts", "higher still"
    assert (f"lifts the method from {slic['IoU']:.3f} on slic to {pasted['IoU']:.3f} "
            f"(+{lift['IoU difference']:.3f} ± {lift['its s.e.']:.3f}, "
            f"{lift['in s.e.']:.1f} paired standard errors)") in page
    assert alone["IoU"] > pasted["IoU"]
    assert (f"({above['IoU difference']:.3f} ± {above['its s.e.']:.3f} above the method that "
            f"uses it, {above['in s.e.']:.1f} standard errors)") in page
    texture = rows["optimization (texture)"]
    assert (f"gives {texture['segments/image']:.3f} segments per image and "
            f"{texture['IoU']:.3f} IoU") in page
    oracles = [rows[f"oracle: {m} (slic + true patch)"]["IoU"]
               for m in ("optimization", "kernelshap-fixed")]
    assert f"what any segmenter could give the two methods: {oracles[0]:.3f} and " \
           f"{oracles[1]:.3f}" in page
    assert min(oracles) > max(row["IoU"] for name, row in rows.items()
                              if not name.startswith("oracle"))


def test_the_fashion_mnist_sentences_are_those_of_the_file():
    fashion = Stem("segmenters", ROOT / "docs" / "results" / "fashion-mnist-test-n500-seed0")
    page = _text(ROOT / "docs" / "reproduction.md")
    gain, gain_se = fashion.paired(_opt(PASTE), _opt("slic"))
    assert gain_se > 2 and gain < 0.10  # "lift the method ... short of the +0.10"
    assert (f"paste detector's segments lift the method: {fashion.iou(_opt(PASTE)):.3f} IoU / "
            f"{fashion.rows[_opt(PASTE)]['ADA']:.3f} ADA on them against slic's "
            f"{fashion.iou(_opt('slic')):.3f} / {fashion.rows[_opt('slic')]['ADA']:.3f} "
            f"(+{gain:.3f}, {gain_se:.1f} paired standard errors)") in page
    _, retouch_se = fashion.paired(_opt(RETOUCH), _opt("slic"))
    assert abs(retouch_se) < 2  # "level with slic ... no gain"
    assert (f"the method scores {fashion.iou(_opt(RETOUCH)):.3f}, level with slic "
            f"({abs(retouch_se):.1f} paired standard errors: no gain)") in page
    own, own_se = fashion.paired(_own(PASTE), _opt(PASTE))
    assert (f"The paste detector's own map scores {fashion.iou(_own(PASTE)):.3f} IoU, "
            f"{own:.3f} above the method on its segments ({own_se:.1f} paired standard "
            "errors)") in page
    own, own_se = fashion.paired(_own(RETOUCH), _opt(RETOUCH))
    assert (f"The retouch detector's own map scores {fashion.iou(_own(RETOUCH)):.3f}, "
            f"{own:.3f} above the method on its segments ({own_se:.1f})") in page
