"""A cell's finished batches, kept while the cell is computed, so that a cell stopped part
way (a killed process, a machine given back) resumes from its last finished batch
instead of from its first image.

Without it a cell is all or nothing: KernelSHAP or LIME over the segments of 500 colour
images runs for hours on 2 cores, and a stop one image before the end loses all of it.
While :func:`~.common.cached_cell` (or a Ray task) computes a cell
(:func:`compute_and_store_cell`) it opens the cell's :class:`BatchStore`;
:func:`~.common.attribute_counted` stores each batch it finishes there (maps, seconds,
threads, passes and the optimiser's diagnostics) and loads the batches already stored.
A random method draws from one generator per image (:mod:`uattr.ops.rng`), so a resumed
cell's maps are those of an uninterrupted one. The parts are keyed like their cell (a
changed setting computes them again) and removed once the cell is stored.
"""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..attribution.optimization import OptimizationResult
from .healing import read_npz_or_set_aside
from .runs import RunFolder, config_key, write_atomic

__all__ = ["BatchStore", "FinishedBatch", "compute_and_store_cell", "open_batch_store",
           "storing_batches"]

# the diagnostics a stored batch keeps: every tensor of an OptimizationResult (a trace is
# only made when asked for, never by a benchmark's cell)
_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(OptimizationResult)
                       if f.name != "trace")
_BATCH_KEYS = ("key", "maps", "seconds", "threads", "forward", "backward", "has_result")


@dataclass(frozen=True)
class FinishedBatch:
    """One finished batch of a cell: its maps ``[b, H, W]``, the seconds it took on how
    many threads, its forward and backward passes (``None``: not countable) and, for the
    optimiser, its :class:`~uattr.attribution.OptimizationResult`."""

    maps: Tensor
    seconds: float
    threads: int
    forward: float | None
    backward: float | None
    result: OptimizationResult | None = None


def _count(value: float | None) -> np.ndarray:
    return np.array(math.nan if value is None else float(value))


def _uncount(value: np.ndarray) -> float | None:
    return None if math.isnan(float(value)) else float(value)


class BatchStore:
    """The finished batches of one cell: ``folder/<start>-<stop>.npz``, each holding the
    cell's key, so that a part of a cell computed with other settings is never used."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = Path(folder)
        self.key = key

    def _path(self, start: int, stop: int) -> Path:
        return self.folder / f"{start}-{stop}.npz"

    def load(self, start: int, stop: int) -> FinishedBatch | None:
        """Images ``start:stop`` as stored with this key; ``None`` when not stored (or
        stored with another key, or damaged: then they are computed again)."""
        path = self._path(start, stop)
        # a damaged part (a full disk, an interrupted copy) is named, moved aside and redone
        fields = [f"result_{name}" for name in _RESULT_FIELDS]
        arrays = read_npz_or_set_aside(path, _BATCH_KEYS, optional=fields)
        if arrays is None or str(arrays["key"]) != self.key:
            return None
        result = None
        if bool(arrays["has_result"]):
            if any(field not in arrays for field in fields):
                return None  # a part that says it has diagnostics and lacks them: redone
            result = OptimizationResult(**{name: torch.from_numpy(arrays[f"result_{name}"])
                                           for name in _RESULT_FIELDS})
        return FinishedBatch(torch.from_numpy(arrays["maps"]), float(arrays["seconds"]),
                             int(arrays["threads"]), _uncount(arrays["forward"]),
                             _uncount(arrays["backward"]), result)

    def save(self, start: int, stop: int, batch: FinishedBatch) -> None:
        """Store images ``start:stop`` (atomically: a part is whole or absent)."""
        if batch.result is not None and batch.result.trace is not None:
            return  # a traced run is a study of its own, not a cell: nothing to resume
        arrays = {"key": np.array(self.key), "maps": batch.maps.numpy(),
                  "seconds": np.array(batch.seconds), "threads": np.array(batch.threads),
                  "forward": _count(batch.forward),
                  "backward": _count(batch.backward),
                  "has_result": np.array(batch.result is not None)}
        if batch.result is not None:
            for name in _RESULT_FIELDS:
                arrays[f"result_{name}"] = getattr(batch.result, name).detach().cpu().numpy()
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(self._path(start, stop), buffer.getvalue())

    def clear(self) -> None:
        """Remove the parts (the cell they made is stored)."""
        shutil.rmtree(self.folder, ignore_errors=True)


_OPEN: ContextVar[BatchStore | None] = ContextVar("uattr_batch_store", default=None)


def open_batch_store() -> BatchStore | None:
    """The store of the cell being computed, if any."""
    return _OPEN.get()


@contextmanager
def storing_batches(store: BatchStore) -> Iterator[None]:
    """Make ``store`` the open one while a cell is computed (:func:`open_batch_store`)."""
    token = _OPEN.set(store)
    try:
        yield
    finally:
        _OPEN.reset(token)


def compute_and_store_cell(folder: RunFolder, name: str, config: dict[str, Any],
                           compute: Callable[[], tuple[dict, np.ndarray]]
                           ) -> tuple[dict, np.ndarray]:
    """``compute()`` cell ``name`` and store it in ``folder``; while it runs, the batches
    it finishes are kept in ``cells/<name>.parts`` (a :class:`BatchStore`), so that a cell
    stopped part way resumes from its last finished batch."""
    store = BatchStore(folder.path / "cells" / f"{name}.parts", config_key(config))
    with storing_batches(store):
        record, array = compute()
    folder.save_cell(name, config, record, array)
    store.clear()
    return record, array
