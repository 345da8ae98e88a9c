"""The benchmarks on every posterior (a trained single network, a user's TorchScript
model) and on the papers' 32×32 data sets read from files (ResNet-18 on CIFAR-10)."""

import json
import pickle

import numpy as np
import pytest
import torch

from tests._models import tiny_cnn_members
from uattr import Grad, data
from uattr.cli import main
from uattr.metrics import box_iou, find_box
from uattr.uq import Ensemble
from uattr.zoo.models import TrainConfig, load_or_train_sampled
from uattr.zoo.resnet import ResNet18

DIGITS = ["--dataset", "digits", "--members", "2", "--epochs", "8"]


def _grad_cell(out):
    return torch.from_numpy(np.load(out / "cells" / "detection-grad.npy"))


def _detection_images(cache, tag, n):
    """The corrupted images the detection job built and cached for the posterior ``tag``."""
    # uattr's own posteriors name it by their weights' hashes too (...-seed0-<hashes>.pt)
    (path,) = list(cache.glob(f"*/detection-{tag}-test-n{n}-seed0*.pt"))
    return torch.load(path)["images"]


def test_detection_on_mc_dropout_explains_that_posterior(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "run"
    common = ["bench", "detection", "--dataset", "digits", "--epochs", "8", "--cache-dir",
              str(cache), "--n", "6", "--methods", "grad", "--out", str(out)]
    assert main([*common, "--posterior", "mc-dropout", "--samples", "4"]) == 0
    rows = json.loads((out / "detection.json").read_text())
    posterior, _ = load_or_train_sampled("mc-dropout", "digits", data.load("digits", "train"),
                                         data.load("digits", "test"), samples=4, cache=cache,
                                         config=TrainConfig(epochs=8))
    images = _detection_images(cache, "mc-dropout-4samples", 6)
    maps = Grad(posterior).attribute(images)
    torch.testing.assert_close(_grad_cell(out), maps)
    boxes = torch.tensor(json.loads((out / "detection_set.json").read_text())["boxes"])
    assert rows[0]["IoU"] == pytest.approx(float(box_iou(find_box(maps, 2), boxes).mean()))
    assert "Posterior: mc-dropout on digits (4 samples)" in (out / "report-detection.md") \
        .read_text()
    # the ensemble's tables do not join them in the same folder
    capsys.readouterr()
    assert main(common) == 2
    assert (f"--out {out} holds results of other settings (--posterior 'mc-dropout' there, "
            "'ensemble' now); choose another --out") in capsys.readouterr().err


def _scripted_members(folder):
    """Two small CNNs and the TorchScript files a user would pass to --model."""
    members = tiny_cnn_members(classes=10, members=2)
    paths = [str(folder / f"m{i}.pt") for i in range(len(members))]
    for member, path in zip(members, paths, strict=True):
        torch.jit.save(torch.jit.script(member.eval()), path)
    return members, paths


def test_detection_on_a_users_torchscript_model(tmp_path):
    members, paths = _scripted_members(tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "run"
    assert main(["bench", "detection", "--dataset", "digits", "--model", *paths,
                 "--cache-dir", str(cache), "--n", "5", "--methods", "grad",
                 "--out", str(out)]) == 0
    images = _detection_images(cache, "model", 5)
    torch.testing.assert_close(_grad_cell(out), Grad(Ensemble(members)).attribute(images))


def test_resnet18_has_the_cifar_variants_parameter_count():
    # 3×3 stem, four stages of two basic blocks (64-512 channels), one linear layer: the
    # 11 173 962 parameters of the usual CIFAR-10 ResNet-18
    assert sum(p.numel() for p in ResNet18(3, 10).parameters()) == 11_173_962


def _cifar10_files(root, n_train=30, n_test=16):
    """CIFAR-10 python batches whose class is the image's brightness band: learnable."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()

    def write(name, n):
        labels = rng.integers(0, 10, n)
        images = (labels[:, None] * 25 + rng.integers(0, 6, (n, 3072))).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images, b"labels": labels.tolist()}, f)

    for i in range(1, 6):
        write(f"data_batch_{i}", n_train // 5)
    write("test_batch", n_test)


def test_train_and_detect_on_cifar10_files_with_resnet18(tmp_path, capsys):
    _cifar10_files(tmp_path)
    common = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--arch", "resnet18",
              "--members", "2", "--epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", *common]) == 0
    assert "| ensemble |" in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["bench", "detection", *common, "--n", "3", "--methods", "grad",
                 "--out", str(out)]) == 0
    detection = json.loads((out / "detection_set.json").read_text())
    boxes = torch.tensor(detection["boxes"])
    assert (boxes[:, 2:] == 10).all()  # the papers' 10×10 patch on 32×32 images
    row = json.loads((out / "detection.json").read_text())[0]
    iou = box_iou(find_box(_grad_cell(out), 10), boxes)
    assert row["IoU"] == pytest.approx(float(iou.mean()))


def test_explanation_uncertainty_explains_a_users_model(tmp_path):
    # with --model and no --posteriors, the comparison is the user's model alone, and its
    # mean CV is that of its own explanation distribution (nothing trained by uattr)
    members, paths = _scripted_members(tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "run"
    assert main(["bench", "explanation-uncertainty", "--dataset", "digits", "--model", *paths,
                 "--cache-dir", str(cache), "--n", "4", "--explainers", "integrated gradients",
                 "--out", str(out)]) == 0
    rows = json.loads((out / "explanation_uncertainty.json").read_text())
    assert [(r["posterior"], r["method"]) for r in rows] == [("your model", "integrated gradients")]
    assert not list(cache.glob("*ensemble*")) and not list(cache.glob("*dropout*"))
    from uattr import ExplanationUncertainty

    images = data.load("digits", "test").images[:4]
    expected = ExplanationUncertainty(Ensemble(members), "integrated gradients").explain(images)
    # the same float32 maps, batched otherwise: the last digits may differ, and a CV
    # (std / mean) amplifies them where a pixel's mean is near 0
    assert rows[0]["mean CV"] == pytest.approx(float(expected.mean_cv().mean()), rel=1e-4)
