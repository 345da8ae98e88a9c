"""The shipped weights: intact, loadable without pickle, and loaded instead of trained."""

import json
from pathlib import Path

import pytest
import torch

from uattr.zoo import data, weights
from uattr.zoo.models import SmallCNN, load_or_train_ensemble

# the repository's budget for the weights it ships (the issue that introduced them: keep
# the total under about 100 MB)
BUDGET_BYTES = 100 * 2**20


def test_every_shipped_file_matches_its_hash_and_loads_without_pickle():
    entries = weights.manifest()
    assert entries, "uattr ships no weights"
    total = 0
    for name, entry in entries.items():
        assert entry["command"].startswith(("uattr train", "uattr tabular-bench")), name
        for file, digest in entry["files"].items():
            path = weights.SHIPPED / name / file
            assert weights.sha256(path) == digest, path
            state = torch.load(path, map_location="cpu", weights_only=True)
            dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
            assert dtypes == {weights.DTYPES[entry["dtype"]]}, (path, dtypes)
            total += path.stat().st_size
    assert total < BUDGET_BYTES
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f"{total / 1e6:.0f} MB in all" in readme  # the size the README states


def test_every_shipped_folder_is_in_the_manifest():
    folders = {p.name for p in weights.SHIPPED.iterdir() if p.is_dir()}
    assert folders == set(weights.manifest())


@pytest.fixture
def shipped_here(tmp_path, monkeypatch):
    """An empty shipped-weights folder of a test's own."""
    monkeypatch.setattr(weights, "SHIPPED", tmp_path / "weights")
    monkeypatch.setattr(weights, "MANIFEST", tmp_path / "weights" / "manifest.json")
    return tmp_path / "weights"


def test_ship_rounds_to_float16_and_load_returns_the_rounded_float32(shipped_here):
    torch.manual_seed(0)
    net = SmallCNN(1, 10, 8)
    entry = weights.ship("toy-ensemble-0", "ensemble", {"image": [1, 8, 8]},
                         {"member0.pt": net.state_dict()}, command="uattr train --ship",
                         scores=lambda: {"ensemble_accuracy": 0.5})
    assert entry["scores"] == {"ensemble_accuracy": 0.5}
    assert json.loads((shipped_here / "manifest.json").read_text())["toy-ensemble-0"] == entry
    loaded = weights.load_shipped("toy-ensemble-0", "member0.pt")
    for key, value in net.state_dict().items():
        assert loaded[key].dtype == torch.float32
        # float16 keeps 11 significant bits: a relative rounding of at most 2^-11
        assert torch.equal(loaded[key], value.half().float())
        assert torch.allclose(loaded[key], value, rtol=2**-11, atol=2**-24)
    assert weights.load_shipped("toy-ensemble-0", "member1.pt") is None
    assert weights.load_shipped("other", "member0.pt") is None


def test_a_changed_shipped_file_is_an_error_not_a_silent_retrain(shipped_here):
    net = SmallCNN(1, 10, 8)
    weights.ship("toy-ensemble-0", "ensemble", {}, {"member0.pt": net.state_dict()},
                 command="uattr train --ship")
    path = shipped_here / "toy-ensemble-0" / "member0.pt"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        weights.load_shipped("toy-ensemble-0", "member0.pt")


def test_shipped_ensemble_is_loaded_not_trained_and_its_hashes_recorded(shipped_here,
                                                                         tmp_path):
    train, test = data.load("digits", "train"), data.load("digits", "test")
    logs = []
    kwargs = {"members": 2, "cache": tmp_path / "cache", "log": logs.append}
    members, info = load_or_train_ensemble("digits", train, test, **kwargs)
    assert sum("training" in line for line in logs) == 2 and not info["shipped"]
    states = {f"member{s}.pt": m.state_dict() for s, m in enumerate(members)}
    weights.ship(info["name"], "ensemble", info["spec"], states, command="uattr train --ship")

    logs.clear()
    shipped, shipped_info = load_or_train_ensemble("digits", train, test, **kwargs)
    assert not any("training" in line for line in logs)
    assert shipped_info["shipped"]
    manifest = weights.manifest()[info["name"]]["files"]
    assert shipped_info["weights"] == {f"{info['name']}/{f}": d for f, d in manifest.items()}
    assert torch.equal(shipped[0].state_dict()["classifier.4.weight"],
                       members[0].state_dict()["classifier.4.weight"].half().float())
    # the scores are those of the rounded weights, not read back from the cache's
    assert shipped_info["weights"] != info["weights"]

    # --retrain: the cache instead (trained here before), and ensemble 1 is another one
    _, cached = load_or_train_ensemble("digits", train, test, shipped=False, **kwargs)
    assert not cached["shipped"] and cached["weights"] == info["weights"]
    logs.clear()
    _, other = load_or_train_ensemble("digits", train, test, index=1, **kwargs)
    assert sum("training" in line for line in logs) == 2
    assert other["name"] != info["name"]
