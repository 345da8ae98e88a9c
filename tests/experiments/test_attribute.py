"""``uattr attribute``: shards written atomically, read back in one call, resumed without
recomputing (also after its driver is killed, in one process or on Ray), never mixed
across settings."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from uattr import OptimizationUA, data
from uattr.experiments.attribute import attribute_dataset, cpu_model, load_maps, shard_name
from uattr.experiments.settings import (
    DataSettings,
    MethodSettings,
    PosteriorSettings,
    Settings,
)
from uattr.uq import Ensemble
from uattr.zoo.models import TrainConfig, load_or_train_ensemble

METHOD = "optimization (pixels)"  # random (Gumbel draws), a few seconds per shard here


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    return Settings(data=DataSettings(dataset="digits", split="test"),
                    posterior=PosteriorSettings(members=2, epochs=8, cache_dir=cache),
                    batch_size=3)


def _posterior(settings):
    members, _ = load_or_train_ensemble(
        "digits", data.load("digits", "train"), data.load("digits", "test"), members=2,
        cache=settings.posterior.cache_dir, config=TrainConfig(epochs=8))
    return Ensemble(members)


def test_shards_hold_the_maps_of_the_library_call_and_are_not_recomputed(settings, tmp_path,
                                                                          capsys, monkeypatch):
    out = tmp_path / "maps"
    result = attribute_dataset(settings, METHOD, out, limit=7, shard_size=3)
    assert sorted(p.name for p in out.glob("shard-*.npz")) == [shard_name(k) for k in range(3)]
    assert result.indices.tolist() == list(range(7)) and result.maps.shape == (7, 8, 8)
    # each image with its own generator, seeded by its index: the library call by hand
    x = data.load("digits", "test").images[:7]
    generators = [torch.Generator().manual_seed(i) for i in range(7)]  # seed 0
    expected = OptimizationUA(_posterior(settings), seed=0).attribute(x, generator=generators)
    torch.testing.assert_close(result.maps, expected, rtol=0, atol=1e-6)
    # one timing row: all 7 images in 3 shards, each shard's compute time within the wall
    # time of the one process that ran them one after the other
    [row] = result.timing
    assert (row["invocation"], row["shards"], row["images"], row["where"], row["complete"],
            row["cpu"]) == (1, 3, 7, "one process", True, cpu_model())
    assert 0 < row["shard seconds"] <= row["seconds"] + 0.1  # both rounded to 0.1 s
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
    capsys.readouterr()
    again = attribute_dataset(settings, METHOD, out, limit=7, shard_size=3)
    assert "3 of 3 shards already written" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
    assert torch.equal(again.maps, load_maps(out).maps)
    assert again.timing == [row], "an invocation that computed nothing adds no row"
    # nor does it start Ray (and a worker loading the posterior) for no shard
    import uattr.experiments.distributed as distributed

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a folder with no shard left")

    monkeypatch.setattr(distributed, "run_on_ray", no_ray)
    assert torch.equal(attribute_dataset(settings, METHOD, out, limit=7, shard_size=3,
                                         workers=2).maps, again.maps)


def test_a_folder_refuses_shards_of_other_settings(settings, tmp_path):
    out = tmp_path / "maps"
    attribute_dataset(settings, "grad", out, limit=4, shard_size=2)
    other = Settings(data=settings.data, posterior=settings.posterior,
                     method=MethodSettings(uncertainty="epistemic"), batch_size=3)
    with pytest.raises(ValueError, match=r"holds maps made with other settings .*"
                                         r"\['method\.settings\.uncertainty', 'uncertainty'\]"):
        attribute_dataset(other, "grad", out, limit=4, shard_size=2)
    with pytest.raises(ValueError, match=r"other settings .*'shard_size'"):
        attribute_dataset(settings, "grad", out, limit=4, shard_size=3)


def test_stop_after_starts_no_shard_past_its_time_and_the_same_call_finishes(
        settings, tmp_path, capsys, monkeypatch):
    out = tmp_path / "maps"
    # each shard takes at least 0.3 s, so with 0.1 s the first starts and no other does
    partial = attribute_dataset(settings, "grad", out, limit=7, shard_size=3, stop_after=0.1,
                                before_shard=lambda k: time.sleep(0.3))
    assert partial.indices.tolist() == [0, 1, 2]
    [row] = partial.timing
    assert (row["shards"], row["images"], row["complete"]) == (1, 3, False)
    assert "2 of 3 shards not yet written" in capsys.readouterr().out
    # a spent budget starts nothing: not even Ray
    import uattr.experiments.distributed as distributed

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started with no time left to start a shard")

    monkeypatch.setattr(distributed, "run_on_ray", no_ray)
    again = attribute_dataset(settings, "grad", out, limit=7, shard_size=3, stop_after=0,
                              workers=2)
    assert again.indices.tolist() == [0, 1, 2] and again.timing == [row]
    # the command, stopped at once, writes what a document quotes of the maps so far
    from uattr.cli import main

    results = tmp_path / "results"
    (out / "README.md").write_text("what this folder holds\n")  # a described folder resumes
    assert main(["attribute", "--dataset", "digits", "--members", "2", "--epochs", "8",
                 "--cache-dir", settings.posterior.cache_dir, "--batch-size", "3",
                 "--method", "grad", "--limit", "7", "--shard-size", "3", "--out", str(out),
                 "--stop-after", "0", "--results", str(results)]) == 0
    assert "3 of 7 images attributed so far" in capsys.readouterr().out
    record = json.loads((results / "run-attribute.json").read_text())
    assert (record["images"], record["complete"], record["stop_after"]) == (3, False, 0.0)
    assert [r["image"] for r in json.loads((results / "most_uncertain.json").read_text())
            ] == again.u.argsort(descending=True, stable=True).tolist()
    # without a limit the same call writes the rest, as one run would have
    done = attribute_dataset(settings, "grad", out, limit=7, shard_size=3)
    whole = attribute_dataset(settings, "grad", tmp_path / "whole", limit=7, shard_size=3)
    assert done.indices.tolist() == list(range(7))
    assert torch.equal(done.maps, whole.maps)
    assert [(r["shards"], r["images"], r["complete"]) for r in done.timing] == [
        (1, 3, False), (2, 4, True)]
    with pytest.raises(ValueError, match="stop_after must be a number of seconds >= 0"):
        attribute_dataset(settings, "grad", out, limit=7, shard_size=3, stop_after=-1.0)


# In one process the kill stops every shard at once, so shards of 100 steps are enough;
# on Ray the workers outlive the driver for a moment and must not finish the whole run
@pytest.mark.parametrize("where", [["--max-steps", "100"], ["--workers", "2"]],
                         ids=["one process", "Ray"])
def test_a_killed_driver_resumes_without_recomputing_a_finished_shard(settings, tmp_path,
                                                                     where):
    if "--workers" in where:
        pytest.importorskip("ray")
    out = tmp_path / "maps"
    command = [sys.executable, "-c", "from uattr.cli import main; raise SystemExit(main())",
               "attribute", "--dataset", "digits", "--members", "2", "--epochs", "8",
               "--cache-dir", settings.posterior.cache_dir, "--method", METHOD,
               "--limit", "12", "--shard-size", "2", "--batch-size", "2", "--out", str(out),
               *where]
    _posterior(settings)  # trained before: the run below only attributes
    # output to nowhere: a pipe nobody reads would fill with progress bars and block it
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("shard-*.npz"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    # Ray's workers run in sessions of their own and exit once their raylet (killed with
    # the driver) is gone: wait until no shard appears for 2 s
    names, quiet_since = None, time.monotonic()
    while time.monotonic() - quiet_since < 2 and time.monotonic() < deadline:
        now = sorted(p.name for p in out.glob("shard-*.npz"))
        if now != names:
            names, quiet_since = now, time.monotonic()
        time.sleep(0.1)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard-*.npz")}
    assert 2 <= len(before) < 6, "the run was killed after some shards, before the last"
    results = tmp_path / "results"
    done = subprocess.run([*command, "--results", str(results)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} of 6 shards already written" in done.stderr + done.stdout
    for name, (stamp, payload) in before.items():  # untouched: not recomputed
        path = out / name
        assert (path.stat().st_mtime_ns, path.read_bytes()) == (stamp, payload)
    resumed = load_maps(out)
    assert resumed.indices.tolist() == list(range(12))
    assert not list(out.glob("*.tmp")), "no partial file is left behind"
    # the resumed invocation records its own shards only, and is complete; the killed one
    # keeps the row of the shards its driver saw written (on Ray, workers may have written
    # one more after the driver died, or its driver none before), marked incomplete
    *killed, row = resumed.timing
    assert (row["invocation"], row["shards"], row["images"], row["complete"]) == (
        len(killed) + 1, 6 - len(before), 12 - 2 * len(before), True)
    assert len(killed) <= 1
    for earlier in killed:
        assert not earlier["complete"] and 1 <= earlier["shards"] <= len(before)
        assert earlier["images"] == 2 * earlier["shards"]
    if "--workers" not in where:  # in one process a shard's row is written before the next
        assert [r["shards"] for r in killed] in ([len(before)], [len(before) - 1])
    # --results: what a document quotes (the timing, the most uncertain images), no shard
    assert json.loads((results / "timing.json").read_text()) == resumed.timing
    listed = json.loads((results / "most_uncertain.json").read_text())
    top = resumed.u.sort(descending=True).values[:10]
    assert [r["image"] for r in listed] == resumed.u.argsort(descending=True,
                                                             stable=True)[:10].tolist()
    torch.testing.assert_close(torch.tensor([r["U total"] for r in listed]), top,
                               rtol=0, atol=0)  # the stored float32 values, through JSON
    assert json.loads((results / "run-attribute.json").read_text())["images"] == 12
    assert (results / "most_uncertain.png").is_file() and not list(results.glob("*.npz"))


def test_most_uncertain_lists_the_highest_u_and_the_box_its_map_points_to():
    from uattr.experiments.attribute import AttributedSet, most_uncertain

    maps = torch.zeros(4, 28, 28)
    for k, (top, left) in enumerate([(0, 0), (5, 7), (18, 18), (9, 2)]):
        maps[k, top:top + 10, left:left + 10] = 1.0  # one 10×10 square per map
    result = AttributedSet(maps, torch.tensor([3, 8, 20, 41]), torch.tensor([0.1, 0.9, 0.5, 0.7]),
                           {}, [])
    images = torch.rand(50, 1, 28, 28)
    rows, figure = most_uncertain(result, images, "total", top=3)
    assert [row["image"] for row in rows] == [8, 41, 20]  # by U, highest first
    assert [row["U total"] for row in rows] == pytest.approx([0.9, 0.7, 0.5])
    column = "box of highest mean attribution (10×10: top, left)"
    assert [row[column] for row in rows] == ["5, 7", "9, 2", "18, 18"]
    assert len(figure.axes) >= 3
