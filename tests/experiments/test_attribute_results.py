"""The committed maps of the MNIST test split (docs/results/attribute-mnist-test-
optimization-slic, a folder of ``uattr attribute``) are those of today's method and
settings, and its timing accounts for every one of them: the time the README quotes is
the time of these maps. The throughput tables beside it (benchmarks/throughput.py) agree
with each other and put Ray's overhead under a tenth of a shard's compute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uattr.experiments.attribute import (
    MANIFEST,
    ShardPlan,
    load_maps,
    manifest_for,
    shard_name,
)
from uattr.experiments.common import MethodSpec
from uattr.experiments.registry import optimization, segmenter, segments_config
from uattr.experiments.settings import MethodSettings, Settings
from uattr.metrics import find_box

FOLDER = Path(__file__).resolve().parents[2] / "docs/results/attribute-mnist-test-optimization-slic"
METHOD = "optimization (slic)"
IMAGES = 10_000  # the MNIST test split

pytestmark = pytest.mark.skipif(not (FOLDER / MANIFEST).exists(),
                                reason="no committed folder of uattr attribute")


def _without_posterior(key: dict) -> dict:
    # the posterior's hash is that of its weights, checked against the shipped ones below
    return {name: value for name, value in key.items() if name != "posterior"}


def test_the_committed_maps_were_made_with_the_default_settings():
    manifest = json.loads((FOLDER / MANIFEST).read_text())
    settings = MethodSettings()
    method = optimization(lambda x: torch.softmax(x.flatten(1)[:, :2], -1)[:, None], settings)
    spec = MethodSpec(METHOD, method, segmenter("slic", settings),
                      segments_config("slic", settings))
    expected = manifest_for(spec, data={}, shard_size=200, kind="total", seed=0)["method"]
    assert _without_posterior(manifest["method"]) == _without_posterior(expected)
    default = Settings()
    assert manifest["data"] == {"dataset": "mnist", "split": "test", "data_dir": None,
                                "images": IMAGES}
    assert (manifest["shard_size"], manifest["uncertainty"], manifest["seed"]) == (
        200, default.method.uncertainty, default.method.seed)
    # the maps are those of the ensemble uattr ships (ensemble 0), every member of it
    from uattr.zoo.weights import shipped_digests

    shipped = shipped_digests()
    assert manifest["weights"] and all(shipped.get(name) == digest
                                       for name, digest in manifest["weights"].items())
    assert len(manifest["weights"]) == default.posterior.members


def test_the_committed_timing_accounts_for_every_committed_map():
    result = load_maps(FOLDER)
    plan = ShardPlan(torch.arange(IMAGES), json.loads((FOLDER / MANIFEST).read_text())
                     ["shard_size"])
    written = sorted(FOLDER.glob("shard-*.npz"))
    for path in written:  # each shard holds the images of its place in the split
        k = int(path.stem.split("-")[1])
        assert path.name == shard_name(k)
        with np.load(path) as shard:
            assert shard["indices"].tolist() == plan.shard(k).tolist(), path.name
    assert result.indices.tolist() == sorted(set(result.indices.tolist()))
    assert result.maps.shape == (len(result.indices), 28, 28)
    assert bool(((result.maps >= 0) & (result.maps <= 1)).all()), "p is a probability"
    rows = result.timing
    assert [row["invocation"] for row in rows] == list(range(1, len(rows) + 1))
    assert sum(row["shards"] for row in rows) == len(written)
    assert sum(row["images"] for row in rows) == len(result.indices)
    for row in rows:  # shards ran at most as many at once as the machine had CPUs
        assert row["where"] == "local Ray, 2 workers" and row["cpus"] == 2
        assert 0 < row["shard seconds"] <= row["cpus"] * row["seconds"] + 0.1
    # every invocation but the last stopped early; the last wrote the split's last shards
    assert all(not row["complete"] for row in rows[:-1])
    assert rows[-1]["complete"] == (len(written) == plan.count)


def test_the_committed_most_uncertain_images_are_those_of_the_committed_maps():
    listed = FOLDER / "most_uncertain.json"
    if not listed.exists():
        pytest.skip("the folder's run has not finished: no list of its most uncertain images")
    result = load_maps(FOLDER)
    # the list is of the maps written when the command last ended (all, once complete)
    record = json.loads((FOLDER / "run-attribute.json").read_text())
    assert record["images"] == len(result.indices)
    assert record["complete"] == (len(result.indices) == IMAGES)
    rows = json.loads(listed.read_text())
    top = result.u.argsort(descending=True, stable=True)[:len(rows)]
    assert [row["image"] for row in rows] == result.indices[top].tolist()
    # U is stored in float32 in the shards and printed from it: equal to float32's digits
    assert [row["U total"] for row in rows] == pytest.approx(result.u[top].tolist(), rel=1e-6)
    boxes = find_box(result.maps[top], 10)  # [10, 4]: the 10×10 box of each map
    column = "box of highest mean attribution (10×10: top, left)"
    assert [row[column] for row in rows] == [f"{int(b[0])}, {int(b[1])}" for b in boxes]


def test_the_readme_says_how_far_the_split_is_and_what_it_took():
    rows = load_maps(FOLDER).timing
    record = json.loads((FOLDER / "run-attribute.json").read_text())
    images = sum(row["images"] for row in rows)
    seconds = sum(row["seconds"] for row in rows)
    assert images == record["images"]
    readme = " ".join((FOLDER.parents[2] / "README.md").read_text().split())
    rates = [f"{row['images/s']:.3f}" for row in rows]
    minutes = IMAGES * seconds / images / 60  # the whole split at the invocations' pace
    said = (f"{'all' if record['complete'] else f'{images:,} of'} {IMAGES:,} images in "
            f"{seconds:,.0f} s of wall-clock time ({', '.join(rates[:-1])} and {rates[-1]} "
            f"images/s in its {len(rows)} invocations").replace(",", " ").replace("  ", ", ")
    assert said in readme, said
    assert f"about {minutes:.0f} min for the whole split at that pace" in readme


THROUGHPUT = FOLDER.parent / "throughput-mnist"  # benchmarks/throughput.py --results


@pytest.mark.skipif(not (THROUGHPUT / "overhead.json").exists(),
                    reason="no committed throughput tables")
def test_the_committed_throughput_tables_agree_and_ray_costs_under_a_tenth_of_a_shard():
    def table(stem: str) -> dict[str, dict]:
        rows = json.loads((THROUGHPUT / f"{stem}.json").read_text())
        return {row.get("method", row.get("run")): row for row in rows}

    run = json.loads((THROUGHPUT / "run-throughput.json").read_text())
    methods, ray, (overhead,) = table("methods"), table("ray"), table("overhead").values()
    assert run["shards"] == ShardPlan(torch.arange(run["images"]), run["shard size"]).count == 2
    assert run["shard size"] == json.loads((FOLDER / MANIFEST).read_text())["shard_size"]
    # the one-process run of uattr attribute is the method's row of the first table
    assert ray["one process"]["seconds"] == methods[METHOD]["seconds"]
    for row in [*methods.values(), *ray.values()]:
        assert row["images/s"] == pytest.approx(run["images"] / row["seconds"], rel=1e-12)
    for name, row in ray.items():
        assert row["ratio"] == pytest.approx(
            ray["one process"]["seconds"] / row["seconds"], rel=1e-12), name
    assert overhead["Ray (s)"] == ray["Ray, 1 worker"]["seconds"]
    extra = overhead["Ray (s)"] - overhead["one process (s)"]
    assert overhead["ratio"] == pytest.approx(overhead["Ray (s)"] / overhead["one process (s)"],
                                              rel=1e-12)
    assert overhead["per shard (s)"] == pytest.approx(extra / run["shards"], rel=1e-12)
    # the bar for sharding through Ray at the default shard size
    assert overhead["ratio"] < 1.10


@pytest.mark.skipif(not (THROUGHPUT / "overhead.json").exists(),
                    reason="no committed throughput tables")
def test_the_readme_throughput_sentences_are_those_of_the_tables():
    rows = {row["run"]: row for row in json.loads((THROUGHPUT / "ray.json").read_text())}
    (overhead,) = json.loads((THROUGHPUT / "overhead.json").read_text())
    readme = " ".join((FOLDER.parents[2] / "README.md").read_text().split())
    # "within the run-to-run spread": Ray's own cost is not seen at this shard size
    assert abs(overhead["ratio"] - 1) < 0.02
    assert (f"(Ray's run took {overhead['ratio']:.3f} of one process's time, "
            f"{overhead['per shard (s)']:.1f} s per shard of 200 images:") in readme
    two = rows["Ray, 2 workers"]
    assert (f"a cluster of k machines like this one attributes about k × "
            f"{two['images/s']:.1f} images/s with this method") in readme


@pytest.mark.skipif(not (THROUGHPUT / "stops.json").exists(),
                    reason="no committed stops table")
def test_the_stops_table_is_consistent_and_the_readme_says_what_it_holds():
    run = json.loads((THROUGHPUT / "run-throughput-stops.json").read_text())
    rows = {(row["start"], row["stop"]): row
            for row in json.loads((THROUGHPUT / "stops.json").read_text())}
    assert list(rows) == [("cold", "loss rule"), ("cold", "mask rule"), ("warm", "mask rule"),
                          ("amortized", "mask rule"), ("cold", "movement rule")]
    loss = rows["cold", "loss rule"]
    for row in rows.values():
        assert row["images/s"] == pytest.approx(run["images"] / row["seconds"], rel=1e-12)
        assert row["ratio to the loss rule"] == pytest.approx(
            loss["seconds"] / row["seconds"], rel=1e-12)
    # every rule that ends images before the step limit is faster than the one that never
    # does, and the start from the amortised explainer's map, which of these rows ends
    # them soonest on the detection images, fastest
    stopping = {(row["start"], row["stop"]): row["mean steps"] for row in json.loads(
        (FOLDER.parent / "mnist-test-n500-seed0" / "stopping.json").read_text())
        if (row["start"], row["stop"]) in rows}
    assert set(stopping) == set(rows)
    assert min(stopping, key=stopping.get) == ("amortized", "mask rule")
    assert max(rows, key=lambda k: rows[k]["images/s"]) == ("amortized", "mask rule")
    assert min(rows, key=lambda k: rows[k]["images/s"]) == ("cold", "loss rule")
    readme = " ".join((FOLDER.parents[2] / "README.md").read_text().split())
    ratio = {key: f"{row['ratio to the loss rule']:.1f}" for key, row in rows.items()}
    assert (f"Through `uattr attribute` on {run['images']} MNIST test images the mask rule "
            f"explains {ratio['cold', 'mask rule']} times as many images per second as the "
            f"default, the warm start {ratio['warm', 'mask rule']} times, the start from the "
            f"amortised explainer's map {ratio['amortized', 'mask rule']} times and the "
            f"movement rule {ratio['cold', 'movement rule']} times") in readme
