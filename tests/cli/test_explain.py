"""``uattr explain`` on a user's TorchScript ensemble and folder of PNGs: every method's
maps equal the library's call on the same tensors; bad input is named."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests._models import tiny_cnn_members
from uattr import (
    CLUE,
    LIME,
    BlurIG,
    CovGI,
    CovLRP,
    DeltaCLUE,
    FixedMaskKernelSHAP,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
    data,
    segment,
)
from uattr.cli import main
from uattr.cli.explain import EXPLAIN_METHODS
from uattr.experiments.common import takes_generator
from uattr.experiments.registry import AMORTIZED
from uattr.experiments.settings import MethodSettings
from uattr.metrics import find_box
from uattr.ops.perturb import blurred_reference
from uattr.ops.rng import index_generators
from uattr.uq import Ensemble, decompose
from uattr.zoo import vae as vae_module
from uattr.zoo.images import load_images

SEGMENTS = 6  # slic segments on 8×8 images



def _per_image_draws(method, n: int) -> dict:
    """What uattr explain gives a random method: one generator per image, seeded by the
    method's seed and the image's position (the benchmarks' rule)."""
    if not takes_generator(method):
        return {}
    return {"generator": index_generators(method.seed, range(n))}

def _slic(x):
    return segment.slic(x, n_segments=SEGMENTS, compactness=MethodSettings().compactness)


# Each method built directly from its class, with the defaults the tables use (seed 0,
# total uncertainty), and the segments its row uses.
def _expected(posterior, vae):
    return {
        "optimization (slic)": (OptimizationUA(posterior, seed=0), _slic),
        "optimization (pixels)": (OptimizationUA(posterior, seed=0), None),
        "grad": (Grad(posterior), None),
        "smoothgrad": (SmoothGrad(posterior, seed=0), None),
        "integrated gradients": (IntegratedGradients(posterior), None),
        "blur ig": (BlurIG(posterior), None),
        "fullgrad": (FullGrad(posterior), None),
        "guided backprop": (GuidedBackprop(posterior), None),
        "ua-backprop": (UABackprop(posterior), None),
        "covgi": (CovGI(posterior), None),
        "covlrp": (CovLRP(posterior), None),
        "occlusion": (Occlusion(posterior), None),
        "kernelshap-fixed": (FixedMaskKernelSHAP(posterior, seed=0), None),
        "kernelshap-fixed (slic)": (FixedMaskKernelSHAP(posterior, seed=0), _slic),
        "lime": (LIME(posterior, seed=0), segment.quickshift),
        "lime (pixels)": (LIME(posterior, seed=0), segment.pixels),
        "clue": (CLUE(posterior, vae, seed=0), None),
        "delta-clue": (DeltaCLUE(posterior, vae, seed=0), None),
    }


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A TorchScript ensemble of 2 members and a folder of 3 grey 8×8 PNGs (digits)."""
    folder = tmp_path_factory.mktemp("user")
    members = tiny_cnn_members(classes=10, members=2)
    paths = []
    for i, member in enumerate(members):
        paths.append(str(folder / f"member{i}.pt"))
        torch.jit.save(torch.jit.script(member.eval()), paths[-1])
    # the same members as Python modules, for the methods that hook layers
    (folder / "factory.py").write_text(
        "from tests._models import tiny_cnn_members\n"
        "def members():\n"
        "    return tiny_cnn_members(classes=10, members=2)\n")
    pictures = folder / "pictures"
    pictures.mkdir()
    digits = data.load("digits", "test").images[:3]
    for i, image in enumerate(digits):
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(
            pictures / f"digit{i}.png")
    return {"models": paths, "factory": f"{folder / 'factory.py'}:members",
            "pictures": pictures, "members": members,
            "cache": str(tmp_path_factory.mktemp("cache"))}


# Methods that hook the network's layers: a TorchScript model hides them.
# the rows whose method hooks the network's layers (the registry says so: hooks=True)
HOOKING = {"fullgrad", "guided backprop", "ua-backprop", "covlrp"}


def _explain(user, out, *extra, models=None):
    return main(["explain", "--model", *(models or user["models"]), "--images",
                 str(user["pictures"]),
                 "--dataset", "digits", "--cache-dir", user["cache"], "--n-segments",
                 str(SEGMENTS), "--out", str(out), *extra])


def test_every_method_on_user_files_gives_the_library_calls_maps(user, tmp_path, capsys):
    x = load_images(user["pictures"]).images  # what the files hold, [3, 1, 8, 8]
    assert x.shape == (3, 1, 8, 8)
    posterior = Ensemble(user["members"])
    vae, _ = vae_module.load_or_train_vae("digits", data.load("digits", "train"),
                                          data.load("digits", "test"), cache=user["cache"])
    expected = _expected(posterior, vae)
    # every method of the registry; the amortised one, trained for the posterior, below
    assert sorted(expected) == sorted(set(EXPLAIN_METHODS) - set(AMORTIZED))
    for name, (method, segmenter) in expected.items():
        out = tmp_path / name.replace(" ", "_")
        if name in HOOKING:
            # refused before any work, never a map without the layers' terms; the
            # factory's modules work
            assert _explain(user, out, "--method", name) == 2, name
            assert "hooks the network's layers, which the TorchScript files of --model " \
                   "compile away" in capsys.readouterr().err
            assert _explain(user, out, "--method", name, models=[user["factory"]]) == 0
        else:
            assert _explain(user, out, "--method", name) == 0, name
        maps = np.load(out / "maps.npy")
        want = method.attribute(x, segments=segmenter(x) if segmenter else None,
                                **_per_image_draws(method, len(x)))
        np.testing.assert_allclose(maps, want.detach().numpy(), atol=1e-6, err_msg=name)
        assert sorted(p.name for p in out.glob("explain-*-digit*")) == [
            f"explain-000{i}-digit{i}.png" for i in range(3)]  # one extension, not .png.png


def test_the_summary_gives_u_before_and_after_blurring_the_found_box(user, tmp_path):
    out = tmp_path / "grad"
    assert _explain(user, out, "--method", "grad", "--box", "3") == 0
    summary = json.loads((out / "summary.json").read_text())
    x = load_images(user["pictures"]).images
    posterior = Ensemble(user["members"])
    boxes = find_box(torch.from_numpy(np.load(out / "maps.npy")), 3)
    blurred = x.clone()
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        blurred[i, :, top:top + h, left:left + w] = blurred_reference(x)[i, :, top:top + h,
                                                                         left:left + w]
    with torch.no_grad():
        before, after = decompose(posterior(x)), decompose(posterior(blurred))
    assert [row["image"] for row in summary["images"]] == ["digit0.png", "digit1.png",
                                                           "digit2.png"]
    for i, row in enumerate(summary["images"]):
        assert row["box (top, left, height, width)"] == boxes[i].tolist()
        for kind in ("total", "aleatoric", "epistemic"):
            # float32 entropies of 10 classes keep ~6 digits
            assert row[f"U {kind}"] == pytest.approx(float(before[kind][i]), abs=1e-5)
            assert row[f"U {kind}, box blurred"] == pytest.approx(float(after[kind][i]),
                                                                  abs=1e-5)


def test_label_maps_from_a_file_replace_the_methods_segments(user, tmp_path):
    x = load_images(user["pictures"]).images
    labels = segment.grid(x, cell=4)  # 4 segments per image, as SAM's masks might give
    np.save(tmp_path / "segments.npy", labels.numpy())
    out = tmp_path / "out"
    assert _explain(user, out, "--method", "kernelshap-fixed (slic)", "--segments",
                    str(tmp_path / "segments.npy")) == 0
    want = FixedMaskKernelSHAP(Ensemble(user["members"]), seed=0).attribute(
        x, segments=labels, generator=index_generators(0, range(len(x))))
    np.testing.assert_allclose(np.load(out / "maps.npy"), want.numpy(), atol=1e-6)


def _rgb_folder(folder, sizes):
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 90, dtype=np.uint8)).save(folder / f"c{i}.png")
    return folder


@pytest.mark.parametrize(("case", "message"), [
    ("not an image", "is not an image PIL can read"),
    ("sizes", "have different sizes [(8, 8), (9, 8)]; pass --size"),
    ("channels", "--model does not take images [B, C, H, W] = [2, 3, 8, 8]"),
    ("output", "its output does not fit"),
    ("segments", "--segments: method 'grad' does not work on segments"),
])
def test_bad_user_input_is_named(user, tmp_path, capsys, case, message):
    models, pictures, extra = user["models"], user["pictures"], []
    if case == "not an image":
        pictures = tmp_path / "mixed"
        pictures.mkdir()
        (pictures / "a.png").write_bytes(b"plain text")
    elif case == "sizes":
        pictures = _rgb_folder(tmp_path / "sizes", [(8, 8), (9, 8)])
    elif case == "channels":
        pictures = _rgb_folder(tmp_path / "colour", [(8, 8)])
    elif case == "output":
        models = models[:1]  # one member alone returns [B, C]: no posterior samples
    else:
        extra = ["--segments", str(tmp_path / "s.npy")]
    code = main(["explain", "--model", *models, "--images", str(pictures), "--dataset",
                 "digits", "--method", "grad", "--cache-dir", user["cache"], "--out",
                 str(tmp_path / "out"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_the_amortized_method_on_user_files_is_one_pass_of_the_network_it_distils(
        user, tmp_path, monkeypatch):
    # distilled once for the user's TorchScript ensemble from the digits' training images
    # (a small configuration: seconds), cached, then the map is σ(network(x))
    from uattr.attribution.amortized import AmortizedUA, MaskNet
    from uattr.experiments import amortized

    monkeypatch.setattr(amortized, "DEFAULT_CONFIG", amortized.AmortizedConfig(
        n_train=8, epochs=2, batch_size=4, chunk=8))
    out = tmp_path / "amortized"
    assert _explain(user, out, "--method", "amortized", "--max-steps", "30") == 0
    (cached,) = Path(user["cache"]).glob("digits-amortized-*.pt")
    network = MaskNet(1)
    network.load_state_dict(torch.load(cached, weights_only=True))
    x = load_images(user["pictures"]).images
    with torch.no_grad():
        want = torch.sigmoid(network.eval()(x))
    np.testing.assert_allclose(np.load(out / "maps.npy"), want.numpy(), atol=1e-6)
    record = json.loads((out / "summary.json").read_text())
    assert record["weights"][f"{cached.stem}/model.pt"]
    # over slic segments: each segment holds the mean of that map over it
    out = tmp_path / "amortized-slic"
    assert _explain(user, out, "--method", "amortized (slic)", "--max-steps", "30") == 0
    segments = _slic(x)

    def on_segments(maps: torch.Tensor) -> np.ndarray:
        """each segment holding the mean of ``maps`` over it"""
        means = segment.segment_means(maps, segments)
        return means.gather(1, segments.flatten(1)).view_as(maps).numpy()

    np.testing.assert_allclose(np.load(out / "maps.npy"), on_segments(want), atol=1e-6)
    # averaged with the first-order blur effect, over the segments the command was given
    # (--n-segments: a count chosen for the job replaces the row's own 25)
    out = tmp_path / "amortized-first-order"
    assert _explain(user, out, "--method", "amortized + first-order (slic)") == 0
    effect = AmortizedUA(Ensemble(user["members"]), network=network).scaled_effect(x)
    np.testing.assert_allclose(np.load(out / "maps.npy"), on_segments((want + effect) / 2),
                               atol=1e-6)
