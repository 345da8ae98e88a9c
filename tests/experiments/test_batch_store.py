"""A cell stopped part way resumes from its last finished batch, with the maps, passes and
diagnostics of an uninterrupted one."""

import pytest
import torch

from tests._models import tiny_cnn_members
from uattr.attribution.base import UncertaintyAttribution
from uattr.attribution.optimization import OptimizationResult
from uattr.experiments.batch_store import BatchStore, FinishedBatch
from uattr.experiments.common import MethodSpec, attribute_counted, cached_cell, method_key
from uattr.experiments.runs import RunFolder
from uattr.uq import as_posterior, uncertainty


class _Stopped(RuntimeError):
    """The process was stopped (a killed job, a machine given back)."""


class _Draws(UncertaintyAttribution):
    """A random method: U of the batch (one forward pass of every member) times a uniform
    draw per pixel from each image's own generator; raises at call ``stop_at`` (1-based)
    as a killed process would, and records the size of every batch it attributes."""

    def __init__(self, posterior, uncertainty="total", *, seed: int = 0,
                 stop_at: int = 0) -> None:
        super().__init__(posterior, uncertainty)
        self.seed = seed
        self.stop_at = stop_at
        self.batches: list[int] = []

    def key_settings(self) -> dict:
        return {"seed": self.seed}  # where it stops is not what its maps depend on

    def attribute(self, x, *, segments=None, generator=None):
        if len(self.batches) + 1 == self.stop_at:
            raise _Stopped
        self.batches.append(len(x))
        u = uncertainty(self.posterior(x), self.uncertainty)  # [B]
        draws = torch.stack([torch.rand(x.shape[-2:], generator=g) for g in generator])
        return u[:, None, None] * draws  # [B, H, W]


def _cell(folder, spec, images, log=lambda _: None):
    def compute():
        done = attribute_counted(spec, images, 2, "cpu", log=log)
        return {"forward/image": done.forward}, done.maps.numpy()
    return cached_cell(folder, "draws", method_key(spec), compute, log=lambda _: None)


def test_a_stopped_cell_resumes_from_its_last_finished_batch(tmp_path):
    posterior = as_posterior(tiny_cnn_members())
    images = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    straight = _cell(RunFolder(tmp_path / "straight"), MethodSpec("draws", _Draws(posterior)),
                     images)
    assert straight[0] == {"forward/image": 1.0}  # one pass of the posterior per image

    folder = RunFolder(tmp_path / "stopped")
    stopped = _Draws(posterior, stop_at=3)  # the third batch of 2 + 2 + 1 never ends
    with pytest.raises(_Stopped):
        _cell(folder, MethodSpec("draws", stopped), images)
    parts = folder.path / "cells" / "draws.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["0-2.npz", "2-4.npz"]

    resumed, said = _Draws(posterior), []
    record, maps = _cell(folder, MethodSpec("draws", resumed), images, said.append)
    assert resumed.batches == [1]  # only the last image was attributed again
    assert said == ["draws: attributing 5 images (4 of them stored by a run that stopped: "
                    "resuming)"]
    assert record == straight[0]  # its passes: those the stored batches took then
    assert torch.equal(torch.from_numpy(maps), torch.from_numpy(straight[1]))
    assert not parts.exists()  # the cell is stored: its parts are gone


def test_parts_made_with_other_settings_are_computed_again(tmp_path):
    posterior = as_posterior(tiny_cnn_members())
    images = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    folder = RunFolder(tmp_path)
    with pytest.raises(_Stopped):
        _cell(folder, MethodSpec("draws", _Draws(posterior, stop_at=2)), images)
    other_seed = _Draws(posterior, seed=1)
    _, maps = _cell(folder, MethodSpec("draws", other_seed), images)
    assert other_seed.batches == [2, 2]  # the stored part had seed 0's draws
    _, fresh = _cell(RunFolder(tmp_path / "fresh"),
                     MethodSpec("draws", _Draws(posterior, seed=1)), images)
    assert torch.equal(torch.from_numpy(maps), torch.from_numpy(fresh))


def test_a_stored_batch_keeps_the_optimisers_diagnostics_and_uncountable_passes(tmp_path,
                                                                             capsys,
                                                                             monkeypatch):
    result = OptimizationResult(
        maps=torch.rand(2, 3, 3), probs=torch.rand(2, 4), steps=torch.tensor([120, 500]),
        converged=torch.tensor([True, False]), sigma=torch.tensor([1.5, 2.0]),
        u_before=torch.tensor([0.9, 1.2]), u_after=torch.tensor([0.3, 1.1]))
    store = BatchStore(tmp_path, "key")
    store.save(4, 6, FinishedBatch(result.maps, 2.5, 2, None, 7.0, result))
    loaded = store.load(4, 6)
    assert (loaded.seconds, loaded.threads, loaded.forward, loaded.backward) == (2.5, 2, None, 7.0)
    for name in ("maps", "probs", "steps", "converged", "sigma", "u_before", "u_after"):
        assert torch.equal(getattr(loaded.result, name), getattr(result, name)), name
    assert BatchStore(tmp_path, "another key").load(4, 6) is None
    # the part is opened once, diagnostics and all
    import numpy as np

    opened = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: opened.append(a[0]) or real_load(*a, **k))
    assert torch.equal(store.load(4, 6).result.sigma, result.sigma) and len(opened) == 1
    monkeypatch.undo()
    # a part that says it has diagnostics and lacks one is computed again
    with np.load(tmp_path / "4-6.npz") as stored:
        arrays = {k: stored[k] for k in stored.files if k != "result_sigma"}
    np.savez(tmp_path / "4-6.npz", **arrays)
    assert store.load(4, 6) is None
    store.save(4, 6, FinishedBatch(result.maps, 2.5, 2, None, 7.0, result))
    whole = (tmp_path / "4-6.npz").read_bytes()
    (tmp_path / "4-6.npz").write_bytes(whole[: len(whole) // 2])  # cut short mid-write
    assert store.load(4, 6) is None  # computed again
    assert "4-6.npz is damaged" in capsys.readouterr().err
    assert (tmp_path / "4-6.npz.damaged").exists() and not (tmp_path / "4-6.npz").exists()


def test_a_cell_reports_the_threads_its_batches_ran_on_not_those_of_who_reads_it(tmp_path):
    from uattr.experiments.benchmarks.detection import runtime_rows

    posterior = as_posterior(tiny_cnn_members())
    images = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    folder, threads = RunFolder(tmp_path), torch.get_num_threads()
    seen = []

    def cell(spec):
        def compute():
            done = attribute_counted(spec, images, 2, "cpu", log=lambda _: None)
            seen.append(done.threads)
            return {"method": "draws", "s/image": done.seconds,
                    "threads": "/".join(map(str, done.threads))}, done.maps.numpy()
        return cached_cell(folder, "draws", method_key(spec), compute, log=lambda _: None)

    try:
        torch.set_num_threads(1)
        with pytest.raises(_Stopped):  # the first batch on one thread, then stopped
            cell(MethodSpec("draws", _Draws(posterior, stop_at=2)))
        torch.set_num_threads(2)
        record, _ = cell(MethodSpec("draws", _Draws(posterior)))  # the second on two
        torch.set_num_threads(1)  # the table assembled on one thread
        row = runtime_rows([record], batch_size=2, device="cpu")[0]
    finally:
        torch.set_num_threads(threads)
    assert seen == [(1, 2)] and row["device"] == "cpu (1/2 threads)"
    assert runtime_rows([{"method": "m", "s/image": 1.0, "threads": "1"}], batch_size=2,
                        device="cpu")[0]["device"] == "cpu (1 thread)"
