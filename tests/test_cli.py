"""The command line end to end on scikit-learn's 8×8 digits (seconds, not minutes)."""

import json
import shlex
import sys

import numpy as np
import pytest
import torch

from uattr import OptimizationUA, data, segment
from uattr.cli import main
from uattr.experiments.amortized import load_or_train_amortized
from uattr.experiments.attribute import load_maps
from uattr.experiments.common import most_uncertain
from uattr.experiments.job import load_posterior
from uattr.experiments.registry import AMORTIZED, PIXEL_METHODS
from uattr.experiments.settings import (
    DataSettings,
    MethodSettings,
    PosteriorSettings,
    Settings,
)
from uattr.metrics import blur_top_pixels, box_iou, find_box, urr
from uattr.ops.rng import index_generators
from uattr.uq import Ensemble, uncertainty
from uattr.zoo.models import TrainConfig, load_or_train_ensemble

COMMON = ["--dataset", "digits", "--members", "2", "--epochs", "8"]
# the pixel-level rows a benchmark runs when --methods is not given
BY_DEFAULT = [name for name in PIXEL_METHODS if name not in AMORTIZED]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_train_then_reuse_the_cached_ensemble(cache, capsys):
    assert main(["train", *COMMON, "--cache-dir", cache]) == 0
    first = capsys.readouterr()
    assert "training member 2/2" in first.err
    assert main(["train", *COMMON, "--cache-dir", cache]) == 0
    second = capsys.readouterr()
    assert "training member" not in second.err
    assert first.out == second.out  # the same accuracies, from the same members
    accuracy = float(first.out.split("| ensemble | ")[1].split(" |")[0])
    assert accuracy > 0.8  # 1078 training digits: far better than chance (0.1)


@pytest.mark.parametrize("posterior", ["mc-dropout", "dropconnect", "flipout"])
def test_train_a_single_network_posterior_then_reuse_it(posterior, cache, capsys):
    single = [a for a in COMMON if a not in ("--members", "2")]  # no members: one network
    args = ["train", *single, "--cache-dir", cache, "--posterior", posterior, "--samples", "6"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert f"training the {posterior} network" in first.err
    assert main(args) == 0
    second = capsys.readouterr()
    assert "training" not in second.err
    assert first.out == second.out  # the same accuracies: the same network, frozen samples
    accuracy = float(first.out.split("mean of 6 samples | ")[1].split(" |")[0])
    assert accuracy > 0.7  # 8 epochs on 1078 digits; chance is 0.1


def test_run_writes_a_report_whose_tables_the_maps_reproduce_and_resumes(cache, tmp_path,
                                                                         capsys):
    out = tmp_path / "run"
    args = ["run", *COMMON, "--cache-dir", cache, "--n-detection", "12",
            "--n-faithfulness", "4", "--n-blur-test", "4", "--out", str(out),
            "--n-segments", "6", "--max-steps", "100"]
    assert main(args) == 0
    first = capsys.readouterr()
    rows = json.loads((out / "detection.json").read_text())
    from uattr.cli import RUN_DETECTION_METHODS

    assert [r["method"] for r in rows] == RUN_DETECTION_METHODS  # the oracle rows aside
    detection = json.loads((out / "detection_set.json").read_text())
    boxes = torch.tensor(detection["boxes"])
    for row in rows:
        maps = torch.from_numpy(np.load(out / "cells" / f"detection-{row['method']}.npy"))
        iou = box_iou(find_box(maps, int(boxes[0, 2])), boxes)
        assert row["IoU"] == pytest.approx(float(iou.mean()))
        assert row["ADA"] == pytest.approx(float((iou > 0.5).double().mean()))
    assert "| optimization (pixels) |" in first.out
    runtime = {r["method"]: r for r in json.loads((out / "runtime.json").read_text())}
    assert [runtime[m]["s/image"] for m in runtime] == [r["s/image"] for r in rows]
    # passes per image, from the hooks: Grad is one forward and one backward pass, IG one
    # of each per step, KernelSHAP 2000 blurred copies and the image, forward only
    assert (runtime["grad"]["forward/image"], runtime["grad"]["backward/image"]) == (1, 1)
    assert runtime["integrated gradients"]["backward/image"] == 100
    fixed = runtime["kernelshap-fixed"]
    assert (fixed["forward/image"], fixed["backward/image"]) == (2001, 0)

    # faithfulness: the blur columns follow from the stored maps of the 4 most uncertain
    test = data.load("digits", "test")
    members, _ = load_or_train_ensemble("digits", data.load("digits", "train"), test,
                                        members=2, cache=cache, config=TrainConfig(epochs=8))
    posterior = Ensemble(members)
    images, _, _ = most_uncertain(posterior, test, 4)
    faithful = json.loads((out / "faithfulness.json").read_text())
    from uattr.cli import RUN_FAITHFULNESS_METHODS

    assert [r["method"] for r in faithful] == RUN_FAITHFULNESS_METHODS
    for row in faithful:
        maps = torch.from_numpy(np.load(out / "cells" / f"faithfulness-{row['method']}.npy"))
        with torch.no_grad():
            u = uncertainty(posterior(images), "total")
            after = uncertainty(posterior(blur_top_pixels(images, maps, 0.05)), "total")
        assert row["blur 5%"] == pytest.approx(float(urr(u, after).mean()), abs=1e-6)
    blur = json.loads((out / "blur_test.json").read_text())
    assert [r["method"] for r in blur] == BY_DEFAULT  # the amortised row only when named
    # the per-image values stored beside each table give back its rows: means of IoU and
    # URR, medians of MURR / AUC-URR
    per_image = json.loads((out / "detection_per_image.json").read_text())
    assert per_image["indices"] == detection["indices"]
    for row in rows:
        assert np.mean(per_image["IoU"][row["method"]]) == pytest.approx(row["IoU"])
    per_image = json.loads((out / "faithfulness_per_image.json").read_text())["URR"]
    for row in faithful:
        for column in ("gradient 0.5%", "gradient 1%", "blur 2%", "blur 5%"):
            assert np.mean(per_image[row["method"]][column]) == pytest.approx(row[column])
    per_image = json.loads((out / "blur_test_per_image.json").read_text())["values"]
    for row in blur:
        values = torch.tensor(per_image[row["method"]]["MURR 2%"])
        assert values.median().item() == pytest.approx(row["MURR 2%"])
    # a small table's slice holds every image (12 detection images are more than 8: two)
    for stem, images in (("detection", 2), ("faithfulness", 4), ("blur_test", 4)):
        stored = np.load(out / f"{stem}_slice.npz")
        assert len(stored["images"]) == images and bool(stored["complete"]) == (images == 4)
    report = (out / "report.md").read_text()
    for heading in ("## Detection", "## Faithfulness", "## Blurring test",
                    "## Explanation uncertainty", "## Uncertainty mitigation with attention"):
        assert heading in report
    explained = json.loads((out / "explanation_uncertainty.json").read_text())
    assert len(explained) == 4 * 3  # every posterior × every explanation method
    # the ensemble's Guided Backprop row is the CV of its members' maps, recomputed here
    from uattr import ExplanationUncertainty
    from uattr.cli import RUN_N_EXPLANATION

    gbp = ExplanationUncertainty(posterior, "guided backprop").explain(
        test.images[:RUN_N_EXPLANATION])
    row = next(r for r in explained
               if (r["posterior"], r["method"]) == ("ensemble", "guided backprop"))
    assert row["mean CV"] == pytest.approx(float(gbp.mean_cv().mean()), rel=1e-5)
    for figure in ("detection_examples.png", "faithfulness_maps.png", "blur_test_curves.png",
                   "explanation_uncertainty_maps.png"):
        assert f"]({figure})" in report
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"

    assert main(args) == 0  # again: every cell is loaded, none recomputed
    second = capsys.readouterr()
    from uattr.cli import RUN_MITIGATION, RUN_MITIGATION_METHODS

    # the mitigation's cells: each method's maps, and every seed of every row
    mitigation_cells = (len(RUN_MITIGATION_METHODS)
                        + RUN_MITIGATION.runs * (1 + len(RUN_MITIGATION_METHODS)))
    assert second.err.count("loaded from") == (len(rows) + len(RUN_FAITHFULNESS_METHODS)
                                               + len(BY_DEFAULT) + 12 + mitigation_cells)
    assert "attributing" not in second.err
    assert json.loads((out / "detection.json").read_text()) == rows
    assert json.loads((out / "faithfulness.json").read_text()) == faithful


def test_explain_writes_the_maps_of_the_library_call(cache, tmp_path):
    out = tmp_path / "explain"
    assert main(["explain", *COMMON, "--cache-dir", cache, "--indices", "3", "5",
                 "--n-segments", "6", "--out", str(out)]) == 0
    maps = np.load(out / "maps.npy")
    train, test = data.load("digits", "train"), data.load("digits", "test")
    members, _ = load_or_train_ensemble("digits", train, test, members=2, cache=cache,
                                        config=TrainConfig(epochs=8))
    x = test.images[[3, 5]]
    expected = OptimizationUA(Ensemble(members)).attribute(
        x, segments=segment.slic(x, n_segments=6, compactness=MethodSettings().compactness),
        generator=index_generators(0, range(len(x))))  # one generator per image, as explain
    np.testing.assert_allclose(maps, expected.numpy(), atol=1e-6)
    assert (out / "explanations.png").read_bytes()[:4] == b"\x89PNG"


def _exit_code(argv):
    """``main``'s return value, or the code of argparse's exit (2 for a bad argument)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def _no_work(*args, **kwargs):
    raise AssertionError("work began before the arguments were checked")


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "detection", "--n", "5", "--batch-size", "0"],
     "argument --batch-size: must be a positive integer, got '0'"),
    (["bench", "detection", "--n", "99999999"], "--n must be at most 360"),
    (["bench", "faithfulness", "--n", "-3"], "argument --n: must be a positive integer"),
    (["bench", "detection", "--n", "5", "--methods", "sam"], "--methods: unknown ['sam']"),
    (["bench", "blur-test", "--n", "5", "--methods", "lime"], "--methods: unknown ['lime']"),
    (["explain", "--indices", "3", "100000"], "--indices must lie in [0, 359]"),
    (["explain", "--most-uncertain", "400"], "--most-uncertain must be at most 360"),
    (["run", "--n-detection", "0"], "argument --n-detection: must be a positive integer"),
    (["run", "--n-faithfulness", "361"], "--n-faithfulness must be at most 360"),
    (["run", "--split", "valid", "--n-blur-test", "360"], "--n-blur-test must be at most 359"),
    (["bench", "sensitivity", "--tau", "0"], "argument --tau: must lie in (0, inf)"),
    (["bench", "detection", "--lam", "-1"], "argument --lam: must lie in [0, inf)"),
    (["bench", "detection", "--sigma-init", "nan"], "argument --sigma-init: must lie in"),
    (["bench", "convergence", "--max-steps", "0"],
     "argument --max-steps: must be a positive integer"),
    (["train", "--posterior", "dropconnect", "--dropconnect-p", "1.5"],
     "argument --dropconnect-p: must lie in [0, 1)"),
    (["train", "--members", "zero"], "argument --members: must be a positive integer"),
    (["explain", "--device", "gpu0"], "--device must be a torch device"),
    (["explain", "--uncertainty", "epistemic", "--members", "1"],
     "--members must be at least 2 to explain epistemic uncertainty"),
    # the mitigation's --n counts training images (1078 digits), not test images (360)
    (["bench", "mitigation", "--n", "1079"], "--n must be at most 1078 (the training"),
    (["bench", "mitigation", "--input-space", "sam"], "--input-space: unknown methods ['sam']"),
    (["bench", "mitigation", "--test-images", "-1"],
     "argument --test-images: must be an integer >= 0"),
])
def test_bad_arguments_stop_the_command_before_any_work(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(data, "load", _no_work)  # no data is loaded, no model trained
    monkeypatch.setattr("uattr.experiments.job.load_or_train_ensemble", _no_work)
    common = ["--dataset", "digits"]
    at = 2 if argv[0] == "bench" else 1
    assert _exit_code([*argv[:at], *common, *argv[at:]]) == 2
    assert message in capsys.readouterr().err


def test_a_device_torch_cannot_see_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(data, "load", _no_work)
    assert _exit_code(["explain", "--dataset", "digits", "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA GPU" in capsys.readouterr().err


def test_a_damaged_cached_member_is_named_and_trained_again(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    args = ["train", *COMMON, "--cache-dir", cache]
    assert main(args) == 0
    first = capsys.readouterr()
    member = next((tmp_path / "cache").glob("digits-ensemble-*")) / "member1.pt"
    whole = member.read_bytes()
    member.write_bytes(whole[: len(whole) // 3])  # a copy cut short
    assert main(args) == 0
    second = capsys.readouterr()
    assert f"{member} is damaged" in second.err
    assert member.with_name("member1.pt.damaged").read_bytes() == whole[: len(whole) // 3]
    assert "training member 2/2" in second.err and "training member 1/2" not in second.err
    assert second.out == first.out  # member 2 trained again from its seed: same accuracy


def test_bench_detection_runs_the_chosen_methods_and_reuses_run_cells(cache, tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "bench"
    common = [*COMMON, "--cache-dir", cache, "--n", "10", "--out", str(out)]
    assert main(["bench", "detection", *common, "--n-segments", "6", "--methods", "grad"]) == 0
    capsys.readouterr()
    methods = ["grad", "occlusion", "ua-backprop", "kernelshap-fixed (slic)"]
    argv = ["bench", "detection", *common, "--n-segments", "6", "--methods", *methods]
    monkeypatch.setattr(sys, "argv", ["pytest", "tests"])  # not the command main runs
    assert main(argv) == 0
    err = capsys.readouterr().err
    # the record names the command main ran, quoted for a shell, however it was called
    record = json.loads((out / "run-detection.json").read_text())
    assert record["command"] == shlex.join(["uattr", *argv])
    assert "'kernelshap-fixed (slic)'" in record["command"]
    assert "grad: loaded from" in err  # computed by the first command into the same folder
    rows = json.loads((out / "detection.json").read_text())
    assert [r["method"] for r in rows] == methods
    boxes = torch.tensor(json.loads((out / "detection_set.json").read_text())["boxes"])
    for row in rows:
        maps = torch.from_numpy(np.load(out / "cells" / f"detection-{row['method']}.npy"))
        assert row["IoU"] == pytest.approx(float(box_iou(find_box(maps, 2), boxes).mean()))
    assert main(["bench", "detection", *common, "--methods", "sam"]) == 2
    assert "unknown ['sam']" in capsys.readouterr().err


def test_bench_segmenters_shares_the_detection_cells_and_scores_each_segmenter(cache, tmp_path,
                                                                             capsys):
    out = tmp_path / "segmenters"
    common = [*COMMON, "--cache-dir", cache, "--n", "6", "--out", str(out)]
    assert main(["bench", "detection", *common, "--methods", "kernelshap-fixed (slic)"]) == 0
    capsys.readouterr()
    methods = ["kernelshap-fixed (slic)", "kernelshap-fixed (paste-detector)",
               "detector only (paste-detector)"]
    assert main(["bench", "segmenters", *common, "--segmenters", "slic", "paste-detector",
                 "--methods", *methods]) == 0
    err = capsys.readouterr().err
    assert "kernelshap-fixed (slic): loaded from" in err  # the detection table's own cell
    assert "training the paste detector of digits" in err
    rows = json.loads((out / "segmenters.json").read_text())
    assert [(r["method"], r["segmenter"]) for r in rows] == [
        (methods[0], "slic"), (methods[1], "paste-detector"), (methods[2], "paste-detector")]
    assert rows[1]["detector trained on"].endswith("the benchmark's own corruption")
    assert rows[2]["segments/image"] is None  # the detector's map itself: no segments
    boxes = torch.tensor(json.loads((out / "detection_set.json").read_text())["boxes"])
    for row in rows:
        maps = torch.from_numpy(np.load(out / "cells" / f"detection-{row['method']}.npy"))
        iou = box_iou(find_box(maps, 2), boxes)
        assert row["IoU"] == pytest.approx(float(iou.mean()))
        assert row["IoU s.e."] == pytest.approx(float(iou.std() / len(iou) ** 0.5))
    assert (out / "segmenters.png").is_file()
    # the corruption neither detector saw: its own cells and files, beside patch swap's
    assert main(["bench", "segmenters", *common, "--segmenters", "paste-detector",
                 "--corruption", "patch-rotate", "--methods", methods[2]]) == 0
    rotated = json.loads((out / "segmenters-patch-rotate.json").read_text())
    assert [r["method"] for r in rotated] == [methods[2]]
    cell = out / "cells" / f"detection-patch-rotate-{methods[2]}.npy"
    assert not np.array_equal(np.load(cell), np.load(out / "cells" / f"detection-{methods[2]}.npy"))
    assert main(["bench", "segmenters", *common, "--methods", "optimization (sam)"]) == 2
    assert "unknown ['optimization (sam)']" in capsys.readouterr().err


def test_studies_agree_with_the_tables_on_their_shared_setting(cache, tmp_path, capsys,
                                                              monkeypatch):
    from uattr.experiments import amortized

    # the stopping study starts rows from the amortised explainer's map: a tiny one here
    monkeypatch.setattr(amortized, "DEFAULT_CONFIG", amortized.AmortizedConfig(
        n_train=12, epochs=2, batch_size=4, chunk=6))
    out = tmp_path / "studies"
    method = [*COMMON, "--cache-dir", cache, "--n-segments", "6", "--max-steps", "100"]
    common = [*method, "--n", "3", "--out", str(out)]
    assert main(["bench", "detection", *common, "--methods", "optimization (slic)"]) == 0
    assert main(["bench", "faithfulness", *common, "--methods", "optimization (pixels)"]) == 0
    # without an explainer shipped or cached the study leaves its rows out, and says so,
    # rather than distil one (the per-image maps of thousands of training images)
    assert main(["bench", "stopping", *common, "--segments", "pixels"]) == 0
    assert "the rows that start from its map are left out" in capsys.readouterr().err
    assert [r["start"] for r in json.loads((out / "stopping_pixels.json").read_text())] == \
        ["cold", "cold"]
    assert main(["train", *method, "--amortized"]) == 0
    capsys.readouterr()
    for study in ("ablation", "sensitivity", "convergence", "stopping"):
        assert main(["bench", study, *common]) == 0
    err = capsys.readouterr().err
    # the complete method is the tables' row: its cells are shared, not computed again
    # ablation, sensitivity, convergence, stopping
    assert err.count("optimization (slic): loaded from") == 4
    # ablation, and convergence (the per-pixel stopping run above made the row's cell)
    assert err.count("optimization (pixels): loaded from") == 2
    read = lambda name: {r.get("method", r.get("mode")): r  # noqa: E731
                         for r in json.loads((out / f"{name}.json").read_text())}
    full = read("detection")["optimization (slic)"]
    # ... under the studies' own names
    assert read("ablation_detection")["Eq. (3) + segments + LP + Gumbel"]["IoU"] == full["IoU"]
    assert read("sensitivity")["λ = 3, τ = 0.1"]["IoU"] == full["IoU"]
    assert len(read("sensitivity")) == 9  # the paper's grid: λ ∈ {2, 2.5, 3} × τ
    ablation = read("ablation_detection")
    assert len(ablation) == 7  # four rows of the paper, three again on oracle segments
    oracle = ablation["oracle: Eq. (3) + segments + LP + Gumbel"]
    maps = torch.from_numpy(np.load(
        out / "cells" / "detection-oracle: optimization (slic + true patch).npy"))
    boxes = torch.tensor(json.loads((out / "detection_set.json").read_text())["boxes"])
    assert oracle["IoU"] == pytest.approx(float(box_iou(find_box(maps, 2), boxes).mean()))
    pixels = read("faithfulness")["optimization (pixels)"]
    assert read("ablation_faithfulness")["+ LP + Gumbel"]["blur 5%"] == pixels["blur 5%"]
    # its per-image values, under the study's names, are the faithfulness table's, and its
    # pairs are their paired differences
    per = json.loads((out / "ablation_faithfulness_per_image.json").read_text())["URR"]
    table = json.loads((out / "faithfulness_per_image.json").read_text())["URR"]
    assert per["+ LP + Gumbel"] == table["optimization (pixels)"]
    assert set(per) == {"Eq. (3) per pixel", "+ LP", "+ Gumbel", "+ LP + Gumbel"}
    pair = next(p for p in json.loads((out / "ablation_faithfulness_pairs.json").read_text())
                if (p["method"], p["against"]) == ("+ LP", "Eq. (3) per pixel")
                and "URR blur 5% difference" in p)
    assert pair["URR blur 5% difference"] == pytest.approx(
        np.mean(per["+ LP"]["blur 5%"]) - np.mean(per["Eq. (3) per pixel"]["blur 5%"]))
    convergence = {(r["segments"], r["variant"]): r
                   for r in json.loads((out / "convergence.json").read_text())}
    assert set(convergence) == {(mode, variant) for mode in ("pixels", "slic")
                                for variant in ("without Gumbel", "full method")}
    # the full method's rows are the detection table's, the slic row without the
    # Gumbel-sigmoid the ablation's: the same cells, steps and all
    assert convergence[("slic", "full method")]["mean steps"] == full["mean steps"]
    assert convergence[("slic", "full method")]["IoU"] == full["IoU"]
    assert convergence[("slic", "without Gumbel")]["IoU"] == \
        ablation["Eq. (3) + segments + LP"]["IoU"]
    # --max-steps reaches every optimisation of the studies: none runs past it
    assert all(20 <= row["mean steps"] <= 100 for row in convergence.values())
    assert max(row["mean steps"] for row in convergence.values()) == 100
    assert (out / "optimization_steps.png").read_bytes()[:4] == b"\x89PNG"
    stopping = {(r["start"], r["stop"]): r
                for r in json.loads((out / "stopping.json").read_text())}
    loss_rule = stopping[("cold", "loss rule")]
    assert loss_rule["IoU"] == full["IoU"] and loss_rule["IoU - loss rule"] == 0
    per_image = json.loads((out / "stopping_per_image.json").read_text())["IoU"]
    for (start, _), row in stopping.items():
        assert row["IoU - loss rule"] == pytest.approx(row["IoU"] - full["IoU"])
        assert row["mean steps"] <= 100
        # the warm start costs one backward pass of its own; the mask rule none per check
        assert row["backward/image"] - row["mean steps"] == (1 if start == "warm" else 0)
    for rule in ("mask rule", "movement rule"):  # checks with no pass of their own
        assert stopping[("cold", rule)]["forward/image"] == \
            stopping[("cold", rule)]["mean steps"] + 2  # U(x) and U(x') at the end
    assert len(per_image) == 5 and all(len(v) == 3 for v in per_image.values())
    # per pixel: its own table, report and record beside the slic ones, which stay
    assert main(["bench", "stopping", *common, "--segments", "pixels"]) == 0
    assert "optimization (pixels): loaded from" in capsys.readouterr().err  # the table's row
    per_pixel = {(r["start"], r["stop"]): r
                 for r in json.loads((out / "stopping_pixels.json").read_text())}
    assert list(per_pixel) == [("cold", "loss rule"), ("cold", "mask rule"),
                               ("amortized", "mask rule")]
    # the mask rule ends no image before its third check: 3 × 20 steps
    assert all(row["mean steps"] >= 60 for (_, stop), row in per_pixel.items()
               if stop == "mask rule")
    record = json.loads((out / "run-stopping-pixels.json").read_text())
    assert any(name.startswith("digits-amortized-") for name in record["weights"])
    assert per_pixel[("cold", "loss rule")]["IoU"] == \
        convergence[("pixels", "full method")]["IoU"]  # the per-pixel row of every table
    assert per_pixel[("cold", "mask rule")]["IoU - loss rule"] == pytest.approx(
        per_pixel[("cold", "mask rule")]["IoU"] - per_pixel[("cold", "loss rule")]["IoU"])
    assert json.loads((out / "run-stopping-pixels.json").read_text())["segments"] == "pixels"
    assert json.loads((out / "run-stopping.json").read_text())["segments"] == "slic"
    assert "## Stop per pixel" in (out / "report-stopping-pixels.md").read_text()
    assert "## Stop and start" in (out / "report-stopping.md").read_text()
    assert main(["bench", "sensitivity", *common]) == 0  # resumed: nothing recomputed
    assert "attributing" not in capsys.readouterr().err
    # benchmarks sharing a folder keep one report each
    assert "## Detection" in (out / "report-detection.md").read_text()
    assert "## Sensitivity" in (out / "report-sensitivity.md").read_text()
    assert "## Ablation" in (out / "report-ablation.md").read_text()
    # one half of the ablation alone: the other half's table is neither computed nor written
    (out / "ablation_detection.json").unlink()
    assert main(["bench", "ablation", *common, "--parts", "faithfulness"]) == 0
    assert "attributing" not in capsys.readouterr().err
    assert not (out / "ablation_detection.json").exists()
    assert read("ablation_faithfulness")["+ LP + Gumbel"]["blur 5%"] == pixels["blur 5%"]


def test_a_resumed_benchmark_gives_the_table_of_an_uninterrupted_one(cache, tmp_path, capsys):
    common = [*COMMON, "--cache-dir", cache, "--n", "5"]
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    methods = ["grad", "occlusion", "smoothgrad"]
    # stopped after its first method, then run again with all three
    assert main(["bench", "faithfulness", *common, "--out", str(resumed),
                 "--methods", "grad"]) == 0
    capsys.readouterr()
    assert main(["bench", "faithfulness", *common, "--out", str(resumed),
                 "--methods", *methods]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert any(line.startswith("grad: loaded from") for line in lines)
    assert not any(line.startswith("grad: attributing") for line in lines)
    assert main(["bench", "faithfulness", *common, "--out", str(straight),
                 "--methods", *methods]) == 0
    timing = ("s/image",)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing}  # noqa: E731
                          for r in rows]
    first = json.loads((resumed / "faithfulness.json").read_text())
    second = json.loads((straight / "faithfulness.json").read_text())
    assert strip(first) == strip(second)
    assert [r["method"] for r in first] == methods


def test_bench_explanation_uncertainty_compares_posteriors_and_resumes(cache, tmp_path,
                                                                       capsys):
    out = tmp_path / "expl"
    args = ["bench", "explanation-uncertainty", *COMMON, "--cache-dir", cache, "--n", "6",
            "--samples", "4", "--posteriors", "ensemble", "mc-dropout",
            "--explainers", "guided backprop", "integrated gradients", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    rows = json.loads((out / "explanation_uncertainty.json").read_text())
    assert [(r["posterior"], r["method"]) for r in rows] == [
        ("ensemble", "guided backprop"), ("ensemble", "integrated gradients"),
        ("mc-dropout", "guided backprop"), ("mc-dropout", "integrated gradients")]
    # the table's mean CV is that of the explanation distributions, recomputed here
    from uattr import ExplanationUncertainty, MCDropout
    from uattr.zoo.models import load_or_train_sampled

    split = data.load("digits", "test")
    posterior, _ = load_or_train_sampled("mc-dropout", "digits", data.load("digits", "train"),
                                         split, samples=4, config=TrainConfig(epochs=8),
                                         cache=cache)
    assert isinstance(posterior, MCDropout)
    result = ExplanationUncertainty(posterior, "guided backprop").explain(split.images[:6])
    assert rows[2]["mean CV"] == pytest.approx(float(result.mean_cv().mean()), rel=1e-5)
    assert rows[0]["mean CV"] != rows[2]["mean CV"]
    per_class = json.loads((out / "explanation_uncertainty_per_class.json").read_text())
    assert len(per_class) == 4
    assert (out / "explanation_uncertainty_maps.png").stat().st_size > 0
    assert main(args) == 0  # resumed: nothing recomputed
    assert "loaded from" in capsys.readouterr().err


def test_table_prints_a_stored_table_with_its_marker(tmp_path, capsys):
    path = tmp_path / "detection.json"
    path.write_text(json.dumps([{"method": "grad", "IoU": 0.51234, "ADA": None},
                                {"method": "lime", "IoU": 0.0004, "ADA": 0.25}]))
    assert main(["table", str(path), "--columns", "method", "ADA", "IoU"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"<!-- results: {path.as_posix()} -->", "| method | ADA | IoU |", "|---|---|---|",
        "| grad | – | 0.512 |", "| lime | 0.250 | 4.00e-04 |"]
    assert main(["table", str(path), "--columns", "IoU", "AUC"]) == 2
    assert "--columns: ['AUC'] are not columns" in capsys.readouterr().err


def test_a_benchmark_called_from_python_writes_the_tables_of_the_command(cache, tmp_path):
    from uattr.experiments import DataSettings, PosteriorSettings, Settings, open_job
    from uattr.experiments.benchmarks import detection

    methods = ["grad", "occlusion", "optimization (pixels)"]
    assert main(["bench", "detection", *COMMON, "--cache-dir", cache, "--n", "4",
                 "--lam", "2.5", "--out", str(tmp_path / "command"),
                 "--methods", *methods]) == 0
    settings = Settings(data=DataSettings(dataset="digits"),
                        posterior=PosteriorSettings(members=2, epochs=8, cache_dir=cache),
                        method=MethodSettings(lam=2.5))
    job = open_job(settings, tmp_path / "python")
    detection.benchmark(job, 4, methods)
    timing = ("s/image",)
    for table in ("detection", "runtime"):
        command, python = (json.loads((tmp_path / run / f"{table}.json").read_text())
                           for run in ("command", "python"))
        assert [{k: v for k, v in row.items() if k not in timing} for row in python] == \
            [{k: v for k, v in row.items() if k not in timing} for row in command]
    assert [row["method"] for row in command] == methods


def test_bench_mitigation_trains_with_each_methods_attention_and_reuses_its_cells(
        cache, tmp_path, capsys):
    from uattr.experiments.benchmarks.mitigation import (
        MitigationSettings,
        evaluate,
        subset,
        train_with_attention,
    )
    from uattr.zoo.data import Split

    out = tmp_path / "mitigation"
    args = ["bench", "mitigation", *COMMON, "--cache-dir", cache, "--n", "60",
            "--test-images", "120", "--runs", "2", "--methods", "grad", "clue",
            "--input-space", "clue", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    rows = json.loads((out / "mitigation.json").read_text())
    assert [(r["method"], r["space"]) for r in rows] == [
        ("no attention", "–"), ("grad", "latent"), ("clue", "latent"), ("clue", "input")]
    assert (out / "mitigation_attention.png").stat().st_size > 0
    # "no attention" is a plain network trained on the same 60 images, seeds 0 and 1
    train, test = data.load("digits", "train"), data.load("digits", "test")
    tr, te = subset(len(train), 60, 0), subset(len(test), 120, 1)
    train, test = Split(train.images[tr], train.labels[tr]), Split(test.images[te], test.labels[te])
    chosen = MitigationSettings()
    config = TrainConfig(epochs=chosen.epochs, batch_size=chosen.batch_size, lr=chosen.lr)
    zeros = torch.zeros(len(test), 8, 8)
    accs = [evaluate(train_with_attention(train, torch.zeros(60, 8, 8), "latent", 0.0, s,
                                          config), test, zeros)["ACC"] for s in (0, 1)]
    assert rows[0]["ACC (%)"] == pytest.approx(sum(accs) / 2, abs=1e-9)
    assert rows[0]["ACC (paper)"] == 90.78 and rows[1]["ACC (paper)"] == 91.35
    # a rerun trains nothing and attributes nothing
    assert main(args) == 0
    again = capsys.readouterr()
    assert "attributing" not in again.err and "loaded from" in again.err
    assert json.loads((out / "mitigation.json").read_text()) == rows


def test_bench_figures_draws_papers_002_figures_and_the_blurring_sequence_values(
        cache, tmp_path, capsys):
    from uattr.experiments.benchmarks.figures import SEQUENCE_FRACTIONS

    out = tmp_path / "figures"
    assert main(["bench", "figures", *COMMON, "--cache-dir", cache, "--n", "3", "--methods",
                 "grad", "ua-backprop", "clue", "--out", str(out)]) == 0
    capsys.readouterr()
    for name in ("figure3_epistemic_maps", "figure4_uncertainty_kinds",
                 "figure5_blurring_sequences"):
        assert (out / f"{name}.png").stat().st_size > 0
    rows = json.loads((out / "figure5_uncertainty.json").read_text())
    members, _ = load_or_train_ensemble("digits", data.load("digits", "train"),
                                        data.load("digits", "test"), members=2,
                                        config=TrainConfig(epochs=8), cache=cache)
    posterior = Ensemble(members)
    x, indices, u = most_uncertain(posterior, data.load("digits", "test"), 3, kind="epistemic")
    assert [r["image"] for r in rows] == indices.tolist()
    # the first frame is the image itself; the last has the top 5% of UA-Backprop's
    # epistemic map blurred
    torch.testing.assert_close(torch.tensor([r["U_e 0%"] for r in rows]), u)
    from uattr import UABackprop
    maps = UABackprop(posterior, "epistemic").attribute(x)
    last = uncertainty(posterior(blur_top_pixels(x, maps, SEQUENCE_FRACTIONS[-1])), "epistemic")
    torch.testing.assert_close(torch.tensor([r["U_e 5%"] for r in rows]), last.detach())


def test_train_detector_trains_once_then_loads_and_reports_its_own_task(cache, capsys):
    """The retouch detector of the digits: trained once (its epoch and threshold chosen on
    its own validation retouches), then loaded from the cache with the same report."""
    argv = ["train", "--dataset", "digits", "--cache-dir", cache,
            "--detector", "retouch-detector"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "training the retouch detector of digits" in first.err
    assert "validation loss" in first.err
    assert "retouches disjoint from patch swap" in first.out
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "training" not in second.err
    table = [line for line in first.out.splitlines() if "retouch-detector" in line]
    assert table == [line for line in second.out.splitlines() if "retouch-detector" in line]


def test_the_amortized_row_is_distilled_once_when_named_then_loaded(cache, tmp_path, capsys,
                                                                     monkeypatch):
    from uattr.experiments import amortized

    monkeypatch.setattr(amortized, "DEFAULT_CONFIG", amortized.AmortizedConfig(
        n_train=12, epochs=2, batch_size=4, chunk=6))
    steps = ["--max-steps", "40"]  # the teacher's settings are part of the explainer's name
    assert main(["train", *COMMON, *steps, "--cache-dir", cache, "--amortized"]) == 0
    first = capsys.readouterr()
    assert "distilling 12 maps, 2 epochs" in first.err
    name = first.out.split("| digits-amortized-")[1].split(" |")[0]
    out = tmp_path / "detection"
    assert main(["bench", "detection", *COMMON, *steps, "--cache-dir", cache, "--n", "6",
                 "--methods", "grad", "amortized", "--out", str(out)]) == 0
    second = capsys.readouterr()
    assert "distilling" not in second.err
    assert f"amortised explainer digits-amortized-{name}: cached in" in second.err
    rows = json.loads((out / "detection.json").read_text())
    assert [row["method"] for row in rows] == ["grad", "amortized"]  # in --methods order
    weights = json.loads((out / "run-detection.json").read_text())["weights"]
    assert f"digits-amortized-{name}/model.pt" in weights
    # --init amortized starts the optimization-based method from the explainer's map: the
    # same explainer (none distilled, its weights recorded), the maps of the library call
    # started from it, not the cold start's
    attributed = {}
    for init in ("zeros", "amortized"):
        folder = tmp_path / f"attribute-{init}"
        assert main(["attribute", *COMMON, *steps, "--cache-dir", cache, "--init", init,
                     "--stop", "mask", "--method", "optimization (pixels)", "--limit", "3",
                     "--out", str(folder)]) == 0
        attributed[init] = load_maps(folder)
    assert "distilling" not in capsys.readouterr().err
    started = attributed["amortized"].manifest
    assert started["method"]["settings"]["init"]["class"] == "AmortizedUA"
    assert f"digits-amortized-{name}/model.pt" in started["weights"]
    settings = Settings(data=DataSettings("digits"),
                        posterior=PosteriorSettings(members=2, epochs=8, cache_dir=cache),
                        method=MethodSettings(max_steps=40))
    posterior, _ = load_posterior(settings)
    explainer, _ = load_or_train_amortized(posterior, settings, log=lambda _: None)
    expected = OptimizationUA(posterior, max_steps=40, stop="mask", mask_tol=0.02,
                              mask_patience=3, init=explainer).attribute(
        data.load("digits", "test").images[:3], generator=index_generators(0, range(3)))
    np.testing.assert_allclose(attributed["amortized"].maps.numpy(), expected.numpy(),
                               atol=1e-6)
    explained = tmp_path / "explain-amortized"
    assert main(["explain", *COMMON, *steps, "--cache-dir", cache, "--init", "amortized",
                 "--stop", "mask", "--method", "optimization (pixels)", "--indices", "0", "1",
                 "2", "--out", str(explained)]) == 0
    np.testing.assert_allclose(np.load(explained / "maps.npy"), expected.numpy(), atol=1e-6)
    assert not torch.equal(attributed["amortized"].maps, attributed["zeros"].maps)
