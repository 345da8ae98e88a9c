"""Rows added to a committed detection table, without measuring its other rows again.

A detection table is assembled from cells (every row's maps on every image) that live in
a run folder, and the run folder of a table made on another machine is gone. Its results
folder keeps what a new row must be compared with: every row's IoU on every image
(``detection_per_image.json``), the rows themselves, their runtime rows, the detection
set's indices and boxes, the slice of maps a test recomputes, and the run record.

``uattr bench detection --methods NEW … --add-to FOLDER`` measures the NEW rows only, on
the table's own images (the corrupted images are remade from the recorded indices with
the recorded seed, not chosen again by this machine's posterior, whose draws may differ
on another device), checks that the posterior's weights and every setting that moves a
value are those of the table, and writes the table back with all its rows: the gap to the
best row and its paired standard error, the families, the pairs, the runtime rows (each
naming the device and threads it was measured on) and the slice, from the stored values
and the new ones. The record keeps the earlier run's record under ``"added to"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...zoo import data
from ...zoo.data import patch_swap
from ..registry import DETECTION_ROWS
from ..settings import BEFORE_ADDED

__all__ = ["IGNORED_SETTINGS", "CommittedTable", "check_new_rows", "check_same_run",
           "check_same_settings", "detection_set_of", "merge_rows", "merge_slice",
           "read_committed"]

# What a run record holds that does not move a value of the table: where and how the
# work ran and was written, which rows were asked for, and the record's own bookkeeping.
IGNORED_SETTINGS = frozenset({
    "command", "posterior", "weights", "seconds", "device", "workers", "address", "out",
    "results", "methods", "add_to", "added to", "retrain", "cache_dir", "data_dir",
    "threads"})


@dataclass(frozen=True)
class CommittedTable:
    """What a detection table's results folder keeps: its ``record`` (run-detection.json),
    ``rows`` and ``runtime`` rows, ``per_image`` IoU ``{row: [N]}``, the detection set's
    ``indices`` ``[N]``, ``boxes`` ``[N, 4]``, U before and after the corruption and the
    patch's intensity change ``[N]``, and the ``slice`` (its arrays by name)."""

    folder: Path
    record: dict
    rows: list[dict]
    runtime: list[dict]
    per_image: dict[str, np.ndarray]
    detection_set: dict
    slice: dict[str, np.ndarray]


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise ValueError(f"--add-to: {path.parent} has no {path.name} ({what}); rows can be "
                         "added only to a detection table that uattr wrote with it")
    return json.loads(path.read_text())


def read_committed(folder: str | Path) -> CommittedTable:
    """The detection table in ``folder``, or a ``ValueError`` naming the file it lacks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--add-to: {folder} is not a folder of a detection table")
    stored = _read_json(folder / "detection_per_image.json", "every row's IoU per image")
    slice_path = folder / "detection_slice.npz"
    if not slice_path.is_file():
        raise ValueError(f"--add-to: {folder} has no detection_slice.npz (the maps a test "
                         "recomputes); rows can be added only to a table that keeps one")
    with np.load(slice_path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    committed = CommittedTable(
        folder=folder,
        record=_read_json(folder / "run-detection.json", "the run record"),
        rows=_read_json(folder / "detection.json", "the table"),
        runtime=_read_json(folder / "runtime.json", "the runtime rows"),
        per_image={row: np.asarray(v, dtype=np.float64) for row, v in stored["IoU"].items()},
        detection_set=_read_json(folder / "detection_set.json", "the detection set"),
        slice=arrays)
    # every row must have its per-image values, runtime row and slice maps, or the merged
    # table would hold rows whose comparisons cannot be computed again
    names = {row["method"] for row in committed.rows}
    kept = {"per-image values": set(committed.per_image),
            "runtime rows": {row["method"] for row in committed.runtime},
            "slice": {str(name) for name in arrays.get("rows", [])}}
    for what, present in kept.items():
        if present != names:
            raise ValueError(f"--add-to: the {what} of {folder} are not those of its table's "
                             f"rows (missing {sorted(names - present)}, extra "
                             f"{sorted(present - names)}); regenerate the table")
    return committed


def _normalised(value):
    return json.loads(json.dumps(value, default=str))


def check_same_run(committed: CommittedTable, arguments: dict, weights: dict[str, str],
                   names: Sequence[str]) -> None:
    """Refuse (``ValueError``) to add ``names`` to ``committed`` unless they are new rows
    (:func:`check_new_rows`) and the command is the table's (:func:`check_same_settings`)."""
    check_new_rows(committed.folder, set(committed.per_image), names)
    check_same_settings(committed.folder, committed.record, arguments, weights)


def check_new_rows(folder: Path, present: set[str], names: Sequence[str]) -> None:
    """Refuse (``ValueError``) ``names`` that are rows of the table in ``folder`` already
    (``present``)."""
    already = sorted(set(names) & present)
    if already:
        raise ValueError(f"--methods: {already} are rows of {folder} already; "
                         "name only rows the table does not have")


def check_same_settings(folder: Path, record: dict, arguments: dict,
                        weights: dict[str, str]) -> None:
    """Refuse (``ValueError``) to add rows to the table in ``folder`` unless the command's
    ``arguments`` and the posterior's ``weights`` (``name/file``: SHA-256) are those of
    its run ``record``: every setting outside :data:`IGNORED_SETTINGS` equal (a setting
    the record predates counts at the value it had then,
    :data:`~uattr.experiments.settings.BEFORE_ADDED`), and every weight file named by the
    record with the same hash."""
    missing = object()
    differ = []
    earlier = {**BEFORE_ADDED, **record}
    for key in sorted(set(arguments) | set(record)):
        if key in IGNORED_SETTINGS:
            continue
        ours, theirs = arguments.get(key, missing), earlier.get(key, missing)
        if ours is missing or theirs is missing or _normalised(ours) != _normalised(theirs):
            differ.append(f"{key}: table {'–' if theirs is missing else theirs!r}, "
                          f"this command {'–' if ours is missing else ours!r}")
    if differ:
        raise ValueError(f"--add-to: {folder} was made with other settings; the new "
                         f"rows would not be comparable ({'; '.join(differ)})")
    recorded = record.get("weights") or {}
    other = sorted(key for key, digest in weights.items() if recorded.get(key) != digest)
    if other or not weights:
        raise ValueError(f"--add-to: {folder} was made with other weights (this "
                         f"posterior's {other or 'none named'} are not in its record); the "
                         "new rows would explain another posterior")


def detection_set_of(committed: CommittedTable, dataset: str, split: str,
                     data_dir: str | None, seed: int) -> dict[str, Tensor]:
    """The fields of the table's :class:`~.detection.DetectionSet`: every image of ``split``
    corrupted as the benchmark corrupts it (the same seeded patch swap), then the recorded
    images in the recorded order, with the recorded U and intensity change; a box that
    differs from the recorded one is a ``ValueError`` (the data or the corruption
    changed)."""
    stored = committed.detection_set
    indices = torch.tensor(stored["indices"])
    boxes = torch.tensor(stored["boxes"])
    evaluated = data.load(dataset, split, root=data_dir)
    donors = data.load(dataset, "train", root=data_dir)
    corrupted, all_boxes, _ = patch_swap(evaluated.images, donors.images,
                                         patch_size=int(boxes[0, 2]), seed=seed)
    if not torch.equal(all_boxes[indices], boxes):
        raise ValueError(f"--add-to: the patches of {committed.folder}'s images are not those "
                         f"that seed {seed} puts on {dataset} {split}; the table was made on "
                         "other data")
    return {"images": corrupted[indices], "boxes": boxes, "indices": indices,
            "u_clean": torch.tensor(stored["u_clean"]),
            "u_corrupted": torch.tensor(stored["u_corrupted"]),
            "patch_delta": torch.tensor(stored["patch_delta"])}


def _order(names: Sequence[str]) -> list[str]:
    """Rows in the registry's order (that of a table measured in one run), others last."""
    known = {name: i for i, name in enumerate(DETECTION_ROWS)}
    return sorted(names, key=lambda name: known.get(name, len(known)))


def merge_rows(committed: CommittedTable, rows: list[dict], ious: dict[str, Tensor],
               runtime: list[dict]) -> tuple[list[dict], list[dict], dict[str, np.ndarray]]:
    """The table's rows and the new ``rows`` (with their per-image ``ious`` ``{row: [N]}``
    and ``runtime`` rows), in the registry's order: ``(rows, runtime rows, {row: IoU
    [N]})``. Each row's gap to the best row is still the one its own run computed: the
    caller computes it again over all of them."""
    per_image = {**committed.per_image,
                 **{name: iou.double().numpy() for name, iou in ious.items()}}
    by_name = {row["method"]: dict(row) for row in [*committed.rows, *rows]}
    timed = {row["method"]: row for row in [*committed.runtime, *runtime]}
    names = _order(list(by_name))
    return ([by_name[name] for name in names], [timed[name] for name in names],
            {name: per_image[name] for name in names})


def merge_slice(committed: CommittedTable, names: Sequence[str], maps: dict[str, Tensor],
                ious: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """The slice with the new rows' ``maps`` (``{row: [N, H, W]}``) and ``ious`` (``{row:
    [N]}``) on its images, every row renumbered in the order ``names``."""
    stored = committed.slice
    old = [str(name) for name in stored["rows"]]
    k = len(stored["images"])
    arrays = {key: value for key, value in stored.items()
              if not key.startswith(("map", "iou")) and key != "rows"}
    for i, name in enumerate(names):
        if name in old:
            arrays[f"map{i}"] = stored[f"map{old.index(name)}"]
            arrays[f"iou{i}"] = stored[f"iou{old.index(name)}"]
        else:
            arrays[f"map{i}"] = maps[name][:k].numpy()
            arrays[f"iou{i}"] = ious[name][:k].numpy()
    arrays["rows"] = np.array(list(names))
    return arrays
