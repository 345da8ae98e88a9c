"""The committed tables follow from the code and the shipped weights.

Every table folder of ``docs/results/`` names the weights it was computed with; those
of :data:`~uattr.experiments.reproduce.TABLES` must be shipped, and every slice stored
beside a table (a few images of every row) must come out again, within the float32
tolerances of :mod:`uattr.experiments.reproduce`, when recomputed here.
"""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from uattr.cli import main
from uattr.experiments.reproduce import TABLES, recompute_slice, stale_tables, table_weights
from uattr.zoo.data import FASHION_MNIST_DIR

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"

# The run records of tables measured before uattr shipped its weights, whose networks are
# gone (or, for a folder without a record, the folder): docs/reproduction.md lists them as
# not yet re-measured, and each leaves this list when `uattr reproduce` regenerates it.
NOT_YET_REMEASURED: set[str] = set()


def test_every_table_names_shipped_weights_but_those_not_yet_remeasured():
    stale = stale_tables(RESULTS)
    assert set(stale) <= NOT_YET_REMEASURED, {k: stale[k] for k in
                                             set(stale) - NOT_YET_REMEASURED}
    # a record that was re-measured leaves the list
    assert not NOT_YET_REMEASURED - set(stale), NOT_YET_REMEASURED - set(stale)
    # and none names weights: a record naming weights that uattr does not ship fails
    assert {why for why in stale.values()} <= {"names no weights", "no run record"}


def _listed(page: str, what: str) -> set[str]:
    block = page.split(f"<!-- {what} records -->")[1].split(f"<!-- end {what} records -->")[0]
    return {line.strip("- `").split("`")[0] for line in block.strip().splitlines()}


def test_the_reproduction_page_lists_the_fresh_and_the_stale_records():
    page = (RESULTS.parent / "reproduction.md").read_text()
    assert _listed(page, "stale") == NOT_YET_REMEASURED
    records = {f"{p.parent.name}/{p.name}" for p in RESULTS.glob("*/run*.json")
               if p.name == "run.json" or p.name.startswith("run-")}
    assert _listed(page, "fresh") == records - NOT_YET_REMEASURED


def test_the_reproduction_page_says_whether_the_whole_split_is_in_progress():
    record = json.loads((RESULTS / "attribute-mnist-test-optimization-slic"
                         / "run-attribute.json").read_text())
    page = " ".join((RESULTS.parent / "reproduction.md").read_text().split())
    in_progress = "**In progress**: `attribute-mnist-test-optimization-slic`" in page
    assert in_progress == (not record["complete"])


def test_every_table_quoted_from_a_stale_record_says_so():
    """Each table of docs/reproduction.md from a record not yet re-measured carries the
    words 'not yet re-measured' in its caption (the text since the previous table)."""
    page = (RESULTS.parent / "reproduction.md").read_text()
    sections = page.split("<!-- end stale records -->")[1].split("<!-- results: ")
    for before, after in itertools.pairwise(sections):
        path = after.split(" -->")[0]  # docs/results/<folder>/<table>.json
        folder = path.split("/")[2]
        stem = path.split("/")[3].removesuffix(".json").split("_")[0]
        stem = stem.replace("blur", "blur-test").replace("explanation",
                                                         "explanation-uncertainty")
        others = sorted(f"{folder}/{p.name}" for p in (RESULTS / folder).glob("run-*.json"))
        record = next(r for r in (f"{folder}/run-{stem}.json", f"{folder}/run.json", *others,
                                  f"{folder}/summary.json", folder) if (RESULTS / r).exists())
        caption = before.rsplit("\n|", 1)[-1]
        if record in NOT_YET_REMEASURED:
            assert "not yet re-measured" in caption.lower(), path


def test_every_committed_folder_is_a_table_of_reproduce():
    folders = {p.name for p in RESULTS.iterdir() if p.is_dir()}
    assert folders <= {table.folder for table in TABLES}


def test_reproduce_lists_every_regenerated_table(capsys):
    assert main(["reproduce", "--list"]) == 0
    printed = capsys.readouterr().out
    for table in TABLES:
        assert f"| {table.folder} |" in printed
        for command in table.commands:
            assert command in printed


def _slices() -> list[tuple[str, str]]:
    return [(table.folder, path.name.removesuffix("_slice.npz"))
            for table in TABLES
            for path in sorted((RESULTS / table.folder).glob("*_slice.npz"))
            if _fresh(table.folder, path.name.removesuffix("_slice.npz"))]


def _fresh(folder: str, stem: str) -> bool:
    """Whether the record of table ``stem`` in ``folder`` names the shipped weights."""
    record = f"run-{stem}.json" if (RESULTS / folder / f"run-{stem}.json").exists() \
        else "run.json"
    return f"{folder}/{record}" not in NOT_YET_REMEASURED


# The rows a CI run recomputes. Every row without random draws; of faithfulness, whose
# every row costs up to 500 refinement steps per image and fraction, the gradient map (the
# refinement is the same code for every row, and occlusion's map is checked in the
# detection slices) and, in the amortised explainer's table, its map; of the segmenters,
# each detector's own map. The optimiser, whose maps cost a batch of up to 500 steps, is
# recomputed on the main job's tables and on ensemble 0's detection at N = 500 (the same
# code makes it in every table; its GPU-made rows were checked on a CPU when committed),
# wherever a slice keeps its maps: the blurring test's keeps values only, which move with
# the CPU (see _recompute_blur_test).
# `uattr reproduce --check` recomputes every row.
DETERMINISTIC = ["grad", "integrated gradients", "blur ig", "fullgrad", "guided backprop",
                 "ua-backprop", "covgi", "covlrp", "occlusion", "amortized"]
DETECTORS_ALONE = ["detector only (paste-detector)", "detector only (retouch-detector)"]
IN_CI = {"detection": DETERMINISTIC, "faithfulness": ["grad", "amortized"],
         "blur_test": DETERMINISTIC, "segmenters": DETECTORS_ALONE,
         "segmenters-patch-rotate": DETECTORS_ALONE}
OPTIMISER_IN_CI = {("mnist-test-main-seed0", "detection"): "optimization (slic)",
                   ("mnist-test-main-seed0", "faithfulness"): "optimization (pixels)",
                   ("mnist-test-n500-seed0", "detection"): "optimization (slic)"}


def test_the_optimiser_is_recomputed_on_a_slice_of_every_benchmark_that_has_one():
    assert set(OPTIMISER_IN_CI) <= set(_slices())
    benchmarks = {stem for _, stem in _slices() if stem in ("detection", "faithfulness")}
    assert benchmarks == {stem for _, stem in OPTIMISER_IN_CI}


@pytest.mark.parametrize(("folder", "stem"), _slices())
def test_committed_slice_recomputes_from_the_shipped_weights(folder, stem):
    weights = table_weights(RESULTS / folder)
    assert weights
    # Fashion-MNIST is an optional dataset (README: Debian's dataset-fashion-mnist); a
    # machine without its files cannot recompute its slices, and says so rather than fail
    if any(name.startswith("fashion-mnist-") for name in weights) \
            and not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
    stored = [str(row) for row in np.load(RESULTS / folder / f"{stem}_slice.npz")["rows"]]
    chosen = [*IN_CI[stem], *([OPTIMISER_IN_CI[folder, stem]]
                              if (folder, stem) in OPTIMISER_IN_CI else [])]
    rows = [row for row in chosen if row in stored]
    assert rows
    skipped: list[str] = []
    assert recompute_slice(RESULTS / folder, stem, rows=rows, skipped=skipped) == []
    archive = np.load(RESULTS / folder / f"{stem}_slice.npz")
    complete = "complete" in archive and bool(archive["complete"])  # older slices lack it
    per_image_draws = "draws_per_image" in archive and bool(archive["draws_per_image"])
    # What goes unchecked, and only that: in an older partial slice, whose random rows drew
    # from one generator per batch, the optimiser (its maps need the whole first batch);
    # in a blurring-test slice, the optimiser's values (see _recompute_blur_test)
    optimiser = [row for row in rows if row.startswith("optimization")]
    if stem == "blur_test":
        assert skipped == optimiser
    elif complete:
        assert skipped == []
    elif not per_image_draws:
        assert skipped == optimiser
    else:
        assert skipped == []


def test_an_edited_committed_value_fails_the_check(tmp_path):
    folder, stem = next(s for s in _slices() if s[1] == "detection")
    copy = tmp_path / folder
    shutil.copytree(RESULTS / folder, copy)
    stored = dict(np.load(copy / f"{stem}_slice.npz"))
    names = [str(n) for n in stored["rows"]]
    grad = names.index("grad")
    stored[f"map{grad}"] = stored[f"map{grad}"] * 1.01  # one row's maps, 1% off
    stored["u_corrupted"] = stored["u_corrupted"] + 1e-3  # and U, by a thousandth
    np.savez(copy / f"{stem}_slice.npz", **stored)
    wrong = recompute_slice(copy, stem, rows=["grad"])
    assert {(m.row, m.what.split(":")[0]) for m in wrong} >= {("U", "U total"),
                                                              ("grad", "map")}


def test_the_stated_accuracy_of_the_shipped_ensemble_is_its_manifests():
    from uattr.zoo.weights import manifest

    scores = manifest()["mnist-ensemble-af92a59460"]["scores"]
    members = scores["member_accuracy"]
    page = " ".join((RESULTS.parent / "reproduction.md").read_text().split())
    assert (f"ensemble reaches {100 * scores['ensemble_accuracy']:.1f}% test accuracy (members "
            f"{100 * min(members):.1f}-{100 * max(members):.1f}%)") in page


def test_a_record_naming_weights_that_do_not_ship_is_stale(tmp_path):
    import json

    from uattr.zoo.weights import manifest

    name, entry = next(iter(manifest().items()))
    file, digest = next(iter(entry["files"].items()))
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "run-detection.json").write_text(
        json.dumps({"weights": {f"{name}/{file}": digest}}))
    (tmp_path / "retrained").mkdir()
    (tmp_path / "retrained" / "run-detection.json").write_text(
        json.dumps({"weights": {f"{name}/{file}": "0" * 64}}))
    (tmp_path / "bare").mkdir()
    (tmp_path / "timings").mkdir()  # seeded, untrained networks: nothing to ship
    (tmp_path / "timings" / "run-scaling.json").write_text(
        json.dumps({"untrained networks": "member s initialised after torch.manual_seed(s)"}))
    (tmp_path / "unnamed").mkdir()
    (tmp_path / "unnamed" / "run-scaling.json").write_text(json.dumps({"cpu": "x"}))
    assert stale_tables(tmp_path) == {
        "retrained/run-detection.json": f"weights not shipped: ['{name}/{file}']",
        "bare": "no run record", "unnamed/run-scaling.json": "names no weights"}


def _check_agreement(folder: Path) -> None:
    stored = np.load(folder / "detection_slice.npz")
    per_image = json.loads((folder / "detection_per_image.json").read_text())["IoU"]
    table = {row["method"]: row["IoU"]
             for row in json.loads((folder / "detection.json").read_text())}
    names = [str(n) for n in stored["rows"]]
    assert set(names) == set(per_image) == set(table)
    for k, name in enumerate(names):
        first = stored[f"iou{k}"]
        np.testing.assert_array_equal(first, np.asarray(per_image[name][:len(first)]))
        assert np.mean(per_image[name]) == pytest.approx(table[name], rel=1e-12)


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in
                                          RESULTS.glob("*/detection_slice.npz")))
def test_a_detection_table_its_per_image_values_and_its_slice_agree(folder):
    """The chain a committed detection value hangs on: the table's IoU is the mean of the
    per-image IoUs, whose first images are the slice's, which the slice check recomputes
    from the shipped weights; an edited value anywhere in it fails here or there."""
    _check_agreement(RESULTS / folder)


def test_an_edited_per_image_value_fails_the_agreement(tmp_path):
    copy = tmp_path / "mnist-test-main-seed0"
    shutil.copytree(RESULTS / "mnist-test-main-seed0", copy)
    path = copy / "detection_per_image.json"
    edited = json.loads(path.read_text())
    edited["IoU"]["grad"][0] += 0.01
    path.write_text(json.dumps(edited))
    with pytest.raises(AssertionError):
        _check_agreement(copy)
