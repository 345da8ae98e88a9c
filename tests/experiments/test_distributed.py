"""The shards on a local Ray of 2 CPUs: the same maps as in one process, also when a worker
dies on its first attempt and Ray retries its shard."""

import os
import sys

import pytest
import torch

from uattr.experiments.attribute import attribute_dataset, load_maps
from uattr.experiments.settings import DataSettings, PosteriorSettings, Settings

ray = pytest.importorskip("ray")

METHOD = "optimization (pixels)"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the hook below is shipped to the workers by value: they cannot import the tests
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(data=DataSettings(dataset="digits"), posterior=PosteriorSettings(
        members=2, epochs=8, cache_dir=str(tmp_path_factory.mktemp("cache"))), batch_size=3)


@pytest.fixture(scope="module")
def one_process(settings, tmp_path_factory):
    """The maps in this process, on one thread like each Ray worker: a sum split over two
    threads may round its last bit differently, which no grouping of images causes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return attribute_dataset(settings, METHOD, tmp_path_factory.mktemp("one") / "maps",
                                 limit=12, shard_size=3)
    finally:
        torch.set_num_threads(threads)


class _DieOnce:
    """Before shard 1, the first time only: the worker's process exits (marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __call__(self, k):
        if k == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


def test_two_ray_workers_give_the_maps_of_one_process(settings, one_process, local_ray,
                                                      tmp_path):
    on_ray = attribute_dataset(settings, METHOD, tmp_path / "maps", limit=12, shard_size=3,
                               workers=2)
    assert torch.equal(on_ray.indices, one_process.indices)
    # bit for bit: the same images and batches, and per-image generators
    assert torch.equal(on_ray.maps, one_process.maps)
    assert torch.equal(on_ray.u, one_process.u)
    [row] = on_ray.timing
    assert (row["where"], row["shards"], row["images"], row["complete"]) == (
        "local Ray, 2 workers", 4, 12, True)


def test_a_worker_that_dies_is_restarted_and_its_shard_retried(settings, one_process,
                                                               local_ray, tmp_path):
    marker = tmp_path / "died"
    result = attribute_dataset(settings, METHOD, tmp_path / "maps", limit=12, shard_size=3,
                               workers=2, before_shard=_DieOnce(marker))
    assert marker.exists(), "the worker did die once"
    assert result.indices.tolist() == list(range(12))
    assert torch.equal(result.maps, one_process.maps)
    assert torch.equal(load_maps(tmp_path / "maps").maps, result.maps)


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "s/image"} for row in rows]


@pytest.mark.parametrize(("benchmark", "table"), [
    (["faithfulness", "--methods", "grad", "occlusion", METHOD], "faithfulness"),
    (["ablation", "--parts", "detection"], "ablation_detection"),  # a study's variants
])
def test_a_benchmarks_cells_on_ray_make_the_one_process_table(settings, local_ray, tmp_path,
                                                              capsys, benchmark, table):
    import json

    from uattr.cli import main

    common = ["bench", *benchmark, "--dataset", "digits", "--members", "2", "--epochs", "8",
              "--cache-dir", settings.posterior.cache_dir, "--n", "4",
              "--max-steps", "100"]  # the plumbing is under test, not the optimum
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task: the same float sums
    try:
        assert main([*common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    log = capsys.readouterr().err
    tables = [json.loads((tmp_path / run / f"{table}.json").read_text())
              for run in ("one", "ray")]
    # every row a cell computed on Ray, none in the driver
    assert log.count("computed on Ray") == len(tables[0]) and "attributing" not in log
    assert _without_seconds(tables[1]) == _without_seconds(tables[0])
