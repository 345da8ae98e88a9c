"""Results that heal: every kind of result file, cut short as a full disk or an
interrupted copy leaves it, is named in a warning, moved aside, and made again, and the
rerun gives what an undamaged run gives."""

import json

import numpy as np
import pytest
import torch

from uattr.cli import main
from uattr.experiments.attribute import attribute_dataset, load_maps, shard_name
from uattr.experiments.healing import (
    read_json_or_set_aside,
    read_npy_or_set_aside,
    read_npz_or_set_aside,
)
from uattr.experiments.settings import DataSettings, PosteriorSettings, Settings
from uattr.zoo.models import SmallCNN, _cached_scores, _load_state, save_atomic

COMMON = ["--dataset", "digits", "--members", "2", "--epochs", "8"]


def _cut(path, keep=0.5):
    """``path`` cut short to ``keep`` of its bytes; returns the whole."""
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * keep)])
    return whole


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def settings(cache):
    return Settings(data=DataSettings(dataset="digits", split="test"),
                    posterior=PosteriorSettings(members=2, epochs=8, cache_dir=cache),
                    batch_size=3)


@pytest.mark.parametrize("kind", ["json", "npy", "npz"])
def test_a_cut_file_is_named_moved_aside_and_read_as_missing(kind, tmp_path, capsys):
    path = tmp_path / f"result.{kind}"
    read = {"json": read_json_or_set_aside, "npy": read_npy_or_set_aside,
            "npz": lambda p: read_npz_or_set_aside(p, ["a"])}[kind]
    if kind == "json":
        path.write_text(json.dumps({"IoU": [0.5] * 50}))
    elif kind == "npy":
        np.save(path, np.arange(100.0))
    else:
        np.savez_compressed(path, a=np.arange(100.0))
    whole = path.read_bytes()
    assert read(path) is not None and "warning" not in capsys.readouterr().err  # whole: read
    path.write_bytes(whole[: len(whole) // 2])
    assert read(path) is None
    assert f"uattr: warning: {path} is damaged" in capsys.readouterr().err
    assert not path.exists()
    assert path.with_name(path.name + ".damaged").read_bytes() == whole[: len(whole) // 2]
    assert read(path) is None  # missing now: nothing more to say
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damaged", ["shard", "manifest", "timing", "settings record"])
def test_attribute_heals_each_damaged_file_and_gives_the_undamaged_maps(damaged, settings,
                                                                        tmp_path, capsys):
    reference = attribute_dataset(settings, "grad", tmp_path / "whole", limit=6, shard_size=2)
    out = tmp_path / "maps"
    args = ["attribute", *COMMON, "--cache-dir", settings.posterior.cache_dir, "--method",
            "grad", "--limit", "6", "--shard-size", "2", "--batch-size", "3", "--out", str(out)]
    assert main(args) == 0
    path = {"shard": out / shard_name(1), "manifest": out / "manifest.json",
            "timing": out / "timing.json", "settings record": out / "settings.json"}[damaged]
    _cut(path)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{path} is damaged" in err and path.with_name(path.name + ".damaged").exists()
    healed = load_maps(out)
    assert torch.equal(healed.maps, reference.maps) and torch.equal(healed.u, reference.u)
    recomputed = {"shard": 1, "manifest": 3, "timing": 0, "settings record": 0}[damaged]
    assert f"{3 - recomputed} of 3 shards already written" in err or recomputed == 3
    if damaged == "manifest":  # shards no manifest vouches for are set aside too
        assert len(list(out.glob("shard-*.npz.damaged"))) == 3


def test_a_shard_of_other_images_is_set_aside_and_made_again(settings, tmp_path, capsys):
    out = tmp_path / "maps"
    first = attribute_dataset(settings, "grad", out, limit=4, shard_size=2)
    with np.load(out / shard_name(0)) as part:
        arrays = dict(part)
    np.savez_compressed(out / shard_name(0), **{**arrays, "indices": arrays["indices"] + 2})
    again = attribute_dataset(settings, "grad", out, limit=4, shard_size=2)
    assert "its image indices are not those of its shard" in capsys.readouterr().err
    assert torch.equal(again.maps, first.maps)


def test_a_benchmark_heals_its_damaged_cells_and_detection_set(cache, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "detection", *COMMON, "--cache-dir", cache, "--n", "6", "--out", str(out),
            "--methods", "grad", "occlusion"]
    assert main(args) == 0
    whole = {r["method"]: r for r in json.loads((out / "detection.json").read_text())}
    _cut(out / "cells" / "detection-grad.npy")
    _cut(out / "cells" / "detection-occlusion.json")
    detection_set = next(p for p in (tmp_path.parent / cache).rglob("detection-*.pt"))
    _cut(detection_set)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    for name in ("detection-grad.npy", "detection-occlusion.json"):
        assert f"{out / 'cells' / name} is damaged" in err
    assert f"{detection_set} is damaged" in err
    healed = {r["method"]: r for r in json.loads((out / "detection.json").read_text())}
    for method in whole:  # the same images, the same maps: the same scores
        assert healed[method]["IoU"] == whole[method]["IoU"]
        assert healed[method]["ADA"] == whole[method]["ADA"]


def test_cached_models_and_scores_heal(tmp_path, capsys):
    net = SmallCNN(1, 10, 8)
    path = tmp_path / "net.pt"
    save_atomic(net.state_dict(), path)
    fresh = SmallCNN(1, 10, 8)
    assert _load_state(fresh, path, print)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 net.state_dict().values(), strict=True))
    _cut(path)
    assert not _load_state(fresh, path, print)
    assert "net.pt is damaged" in capsys.readouterr().out
    assert path.with_name("net.pt.damaged").exists() and not path.exists()
    save_atomic(SmallCNN(3, 10, 8).state_dict(), path)  # another network's weights
    assert not _load_state(fresh, path, print)
    assert "it does not fit the model" in capsys.readouterr().out
    scores = tmp_path / "net.test.json"
    assert _cached_scores(scores, lambda: {"accuracy": 0.9}, fresh=True) == {"accuracy": 0.9}
    _cut(scores)
    assert _cached_scores(scores, lambda: {"accuracy": 0.8}, fresh=False) == {"accuracy": 0.8}
    assert scores.with_name("net.test.json.damaged").exists()


def test_explain_records_its_settings_refuses_others_and_overwrite_replaces(cache, tmp_path,
                                                                            capsys):
    out = tmp_path / "explain"
    args = ["explain", *COMMON, "--cache-dir", cache, "--method", "grad", "--out", str(out)]
    assert main([*args, "--most-uncertain", "3"]) == 0
    first = sorted(p.name for p in out.iterdir())
    assert len([n for n in first if n.startswith("explain-")]) == 3 and "settings.json" in first
    assert main([*args, "--most-uncertain", "3"]) == 0  # the same settings: the same files
    assert sorted(p.name for p in out.iterdir()) == first
    capsys.readouterr()
    assert main([*args, "--most-uncertain", "2"]) == 2
    assert ("holds results of other settings (--most-uncertain 3 there, 2 now); choose "
            "another --out or pass --overwrite" in capsys.readouterr().err)
    assert main([*args, "--most-uncertain", "2", "--overwrite"]) == 0
    now = sorted(p.name for p in out.iterdir())
    assert len([n for n in now if n.startswith("explain-")]) == 2  # none of the old three
    record = json.loads((out / "settings.json").read_text())
    assert record["most_uncertain"] == 2 and record["command"] == "explain"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 2


def test_result_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    from uattr.experiments.runs import RunFolder

    folder = RunFolder(tmp_path / "run")
    mode = folder.write_json("table.json", [{"a": 1}]).stat().st_mode & 0o777
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
