"""What every benchmark shares: a method row, batched attribution with progress and pass
counting, the most uncertain images of a split, and the stored cell.

A *cell* is one method's finished work on one benchmark's images. Its key holds
everything the result depends on, read from the objects themselves rather than written
out by hand: the method's class and every constructor setting
(:meth:`~uattr.attribution.base.UncertaintyAttribution.settings`), the segmenter and its
settings, the posterior (:func:`posterior_key`), the images and the benchmark's own
settings. A rerun with any of them changed computes the cell again instead of reusing it.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attribution.base import UncertaintyAttribution, fingerprint
from ..attribution.optimization import UninformativeMapWarning
from ..ops.rng import index_generators
from ..ops.segment import with_boxes
from ..posteriors.passes import PassCounter
from ..uq import predict_probs, uncertainty
from ..zoo.data import Split
from .batch_store import FinishedBatch, compute_and_store_cell, open_batch_store
from .runs import RunFolder

__all__ = ["NOT_IN_KEY", "AttributedMaps", "Cell", "MethodSpec", "Parallel", "attribute_counted",
           "attribute_in_batches", "cached_cell", "cached_cells", "method_key", "method_rows",
           "most_uncertain", "posterior_key", "slice_size", "takes_generator"]

# The images of a table whose values are stored beside it, for a test to recompute a slice
# of every row from the shipped weights (tests/test_reproduce.py): a random method's draws
# depend on the batch an image was attributed in (uattr.ops.rng), so a table of up to
# SMALL_TABLE images is stored whole (and recomputed whole), a larger one by its first
# SLICE_IMAGES images (its random rows then need their whole first batch).
SLICE_IMAGES = 2
SMALL_TABLE = 8


def slice_size(n: int) -> int:
    """How many of a table's ``n`` images its slice stores (all of a small table)."""
    return n if n <= SMALL_TABLE else SLICE_IMAGES

Segmenter = Callable[[Tensor], Tensor]
Log = Callable[[str], None]


@dataclass(frozen=True)
class MethodSpec:
    """A row of a table: a method, and the segmenter it uses (``None``: pixels).

    ``name`` names its stored cell; ``label``, where set, is what a study calls the row
    when it shares a table's cell (not part of the key). ``config`` holds the segmenter's
    settings (part of the key). ``oracle``: the true patch of each image is made one more
    segment (:func:`uattr.ops.segment.with_boxes`), an upper bound that uses the answer, for
    the detection benchmark only."""

    name: str
    method: UncertaintyAttribution
    segmenter: Segmenter | None = None
    config: dict | None = None
    label: str | None = None
    oracle: bool = False


def posterior_key(posterior: Callable[[Tensor], Tensor]) -> str:
    """A short hash of a posterior (:func:`uattr.attribution.base.fingerprint`). A plain
    callable is known by its qualified name only: do not share a run folder between two
    different callables of the same name."""
    return fingerprint(posterior)


#: settings that change how a method reports its work, never its maps: not part of a key,
#: so that a run with a progress bar and one without share their stored results
NOT_IN_KEY = ("progress",)


def method_key(spec: MethodSpec) -> dict[str, Any]:
    """What a row's maps depend on, for a cell's key: the method's class and the settings
    that decide its maps (``key_settings``, but :data:`NOT_IN_KEY`), the segmenter's
    settings, whether the row is an oracle, and the posterior."""
    settings = {name: value for name, value in spec.method.key_settings().items()
                if name not in NOT_IN_KEY}
    key = {"method": spec.name, "class": type(spec.method).__name__,
           "settings": settings, "segments": spec.config,
           "oracle": spec.oracle, "posterior": posterior_key(spec.method.posterior)}
    if takes_generator(spec.method):  # maps made with one generator per batch differ
        key["draws"] = "one generator per image"
    return key


def cached_cell(folder: RunFolder | None, name: str, config: dict[str, Any],
                compute: Callable[[], tuple[dict, np.ndarray]],
                log: Log = print, label: str | None = None) -> tuple[dict, np.ndarray]:
    """``(record, array)`` of cell ``name``: loaded from ``folder`` when it was stored with
    the same ``config``, else computed by ``compute()`` and stored (atomically). ``label``
    names the row in the log (default ``name``)."""
    cached = folder.load_cell(name, config) if folder is not None else None
    if cached is not None:
        log(f"{label or name}: loaded from {folder.path / 'cells'}")
        return cached
    if folder is None:
        return compute()
    return compute_and_store_cell(folder, name, config, compute)


@dataclass(frozen=True)
class Cell:
    """One cell to load or compute: its ``name``, the ``config`` its key is made of,
    ``compute() -> (record, array)``, and the ``label`` the log calls it by."""

    name: str
    config: dict[str, Any]
    compute: Callable[[], tuple[dict, np.ndarray]]
    label: str | None = None


@dataclass(frozen=True)
class Parallel:
    """Where missing cells run: a local Ray of ``workers`` CPUs, or the Ray cluster at
    ``address`` (:mod:`uattr.experiments.distributed`)."""

    workers: int | None = None
    address: str | None = None


def cached_cells(folder: RunFolder | None, cells: list[Cell], log: Log = print,
                 parallel: Parallel | None = None) -> list[tuple[dict, np.ndarray]]:
    """:func:`cached_cell` of every cell, in order. With ``parallel``, the cells not yet
    stored are first computed as Ray tasks, each storing its own cell in ``folder``, and
    then all are loaded: the table is the one a single process makes."""
    if parallel is not None and folder is not None:
        missing = [cell for cell in cells if folder.load_cell(cell.name, cell.config) is None]
        if missing:
            from .distributed import compute_cells

            compute_cells(folder.path, missing, workers=parallel.workers,
                          address=parallel.address, log=log)
    return [cached_cell(folder, cell.name, cell.config, cell.compute, log, cell.label)
            for cell in cells]


def method_rows(methods: Sequence[MethodSpec], results: list[tuple[dict, np.ndarray]],
                per_image: dict[str, Any] | None) -> tuple[list[dict], list[np.ndarray]]:
    """The table rows and arrays of :func:`cached_cells`' ``results`` (one per method, in
    order): each record's ``"per image"`` values move into ``per_image[method]`` (cells
    stored before they were kept have none), the rest is the method's row."""
    rows, arrays = [], []
    for spec, (record, array) in zip(methods, results, strict=True):
        row = dict(record)
        each = row.pop("per image", None)
        if per_image is not None and each is not None:
            per_image[spec.name] = each
        rows.append(row)
        arrays.append(array)
    return rows, arrays


def attribute_in_batches(spec: MethodSpec, images: Tensor, batch_size: int,
                         device: torch.device | str, boxes: Tensor | None = None, *,
                         segments: Tensor | None = None,
                         generators: list[torch.Generator] | None = None,
                         results: list | None = None) -> Tensor:
    """``[N, H, W]``: the method's maps of ``images`` (segmented first when the row has a
    segmenter; an oracle row adds each image's true box ``boxes [N, 4]`` as a segment),
    ``batch_size`` images at a time, with a progress bar over images.

    A random method draws from one generator per image, so that an image's map does not
    depend on the batch it is in (nor on ``batch_size``, a shard or a worker):
    ``generators`` given (one per image), else seeded by the method's ``seed`` and the
    image's position in ``images``. ``segments [N, H, W]`` given replace the row's
    segmenter. With a list ``results``, a method that reports diagnostics (the
    optimization-based one) appends each batch's
    :class:`~uattr.attribution.OptimizationResult` to it."""
    if spec.oracle and (spec.segmenter is None or boxes is None):
        raise ValueError(f"{spec.name}: an oracle row needs a segmenter and the true boxes")
    random = takes_generator(spec.method)
    if random and generators is None:
        generators = index_generators(spec.method.seed, range(len(images)))
    if random and len(generators) != len(images):
        raise ValueError(f"generators must hold one generator per image ({len(images)}), "
                         f"got {len(generators)}")
    maps = []
    with tqdm(total=len(images), desc=spec.name, unit="image", leave=False,
              disable=len(images) <= batch_size) as bar:
        for i in range(0, images.shape[0], batch_size):
            part = slice(i, i + batch_size)
            maps.append(_attribute_one_batch(
                spec, images[part].to(device),
                segments[part].to(device) if segments is not None else None,
                boxes[part] if spec.oracle else None,
                generators[part] if random else None, results))
            bar.update(len(maps[-1]))
    return torch.cat(maps)  # [N, H, W]


def _attribute_one_batch(spec: MethodSpec, x: Tensor, segments: Tensor | None,
                         boxes: Tensor | None, generators: list[torch.Generator] | None,
                         results: list | None) -> Tensor:
    """The maps ``[B, H, W]`` (on the CPU) of the batch ``x``, as
    :func:`attribute_in_batches` describes: segmented by the row's segmenter unless
    ``segments`` are given, the true ``boxes`` added for an oracle row."""
    if segments is None and spec.segmenter is not None:
        segments = spec.segmenter(x)
    if spec.oracle:
        segments = with_boxes(segments, boxes)
    extra = {"generator": generators} if generators is not None else {}
    if results is not None and hasattr(spec.method, "attribute_with_diagnostics"):
        with warnings.catch_warnings():  # the caller reports the diagnostics itself
            warnings.simplefilter("ignore", UninformativeMapWarning)
            result = spec.method.attribute_with_diagnostics(x, segments=segments, **extra)
        results.append(result)
        return result.maps.detach().cpu()
    return spec.method.attribute(x, segments=segments, **extra).detach().cpu()


def takes_generator(method: object) -> bool:
    """Whether ``method.attribute`` takes per-image generators (a random method)."""
    return "generator" in inspect.signature(method.attribute).parameters


@dataclass(frozen=True)
class AttributedMaps:
    """A row's maps ``[N, H, W]`` with what they cost: seconds, forward and backward
    passes per image (``None`` where the posterior's passes cannot be counted), and the
    thread counts the seconds were measured with (more than one where a resumed cell's
    batches ran in processes of different thread counts)."""

    maps: Tensor
    seconds: float
    forward: float | None
    backward: float | None
    threads: tuple[int, ...] = ()


def attribute_counted(spec: MethodSpec, images: Tensor, batch_size: int,
                      device: torch.device | str, *, boxes: Tensor | None = None,
                      results: list | None = None,
                      log: Log = print) -> AttributedMaps:
    """:func:`attribute_in_batches`, timed, with the posterior's passes counted
    (:mod:`uattr.posteriors.passes`), batch by batch. Inside a cell being computed
    (:func:`~.batch_store.compute_and_store_cell`) each finished batch is stored, and a batch stored
    before is loaded instead of computed: its seconds and passes are those it took then,
    so a resumed cell reports the work of an uninterrupted one."""
    n = len(images)
    store = open_batch_store()
    ranges = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    stored = {r: store.load(*r) for r in ranges} if store is not None else {}
    resumed = sum(stop - start for (start, stop), done in stored.items() if done is not None)
    log(f"{spec.name}: attributing {n} images"
        + (f" ({resumed} of them stored by a run that stopped: resuming)" if resumed else ""))
    random = takes_generator(spec.method)
    maps, seconds, forward, backward = [], 0.0, 0.0, 0.0
    counted, threads = True, set()
    with tqdm(total=n, desc=spec.name, unit="image", leave=False,
              disable=n <= batch_size) as bar:
        for start, stop in ranges:
            done = stored.get((start, stop))
            if done is None:
                done = _attribute_batch(spec, images, start, stop, device, boxes,
                                        random, results is not None)
                if store is not None:
                    store.save(start, stop, done)
            maps.append(done.maps)
            seconds += done.seconds
            threads.add(done.threads)
            counted = counted and done.forward is not None and done.backward is not None
            forward += done.forward or 0.0
            backward += done.backward or 0.0
            if results is not None and done.result is not None:
                results.append(done.result)
            bar.update(stop - start)
    return AttributedMaps(torch.cat(maps), seconds / n, forward / n if counted else None,
                          backward / n if counted else None, tuple(sorted(threads)))


def _attribute_batch(spec: MethodSpec, images: Tensor, start: int, stop: int,
                     device: torch.device | str, boxes: Tensor | None, random: bool,
                     diagnostics: bool) -> FinishedBatch:
    """Images ``start:stop`` of ``images`` attributed as one batch, timed and counted; a
    random method draws from the generators of the images' positions in ``images``."""
    if spec.oracle and (spec.segmenter is None or boxes is None):
        raise ValueError(f"{spec.name}: an oracle row needs a segmenter and the true boxes")
    results: list | None = [] if diagnostics else None
    began = time.perf_counter()
    with PassCounter(spec.method.posterior,
                     also=spec.method.counted_networks()) as passes:
        maps = _attribute_one_batch(
            spec, images[start:stop].to(device), None,
            boxes[start:stop] if spec.oracle else None,
            index_generators(spec.method.seed, range(start, stop)) if random else None,
            results)
    return FinishedBatch(maps, time.perf_counter() - began, torch.get_num_threads(),
                         passes.forward if passes.available else None,
                         passes.backward if passes.available else None,
                         results[0] if results else None)


def most_uncertain(
    posterior: Callable[[Tensor], Tensor],
    split: Split,
    n: int,
    *,
    kind: str = "total",
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(images [N, C, H, W], indices [N], U [N])``: the ``n`` images of ``split`` with the
    highest uncertainty of ``kind``, most uncertain first (``progress``: a bar over the
    split's batches)."""
    if not 1 <= n <= len(split):
        raise ValueError(f"n must be in [1, {len(split)}], got {n}")
    u = uncertainty(predict_probs(posterior, split.images, device=device, progress=progress),
                    kind)
    order = torch.argsort(u, descending=True, stable=True)[:n]
    return split.images[order], order, u[order]
