"""Detection of problematic regions (papers/000 §4.1, Table 1; DESIGN §4).

Each test image gets a patch of a random training image at the same place; the N
images whose total uncertainty rose most are kept; every method attributes U_t of the
corrupted image; a box of the patch's size is slid over the map and the box of highest
mean attribution is compared with the true patch (IoU, and ADA = share with IoU > 0.5).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attribution.base import UncertaintyAttribution
from ..data import Split, default_patch_size, patch_swap
from ..metrics import ada, box_iou, find_box
from ..passes import PassCounter
from ..runs import RunFolder
from ..segment import with_boxes
from ..uq import predict_probs, uncertainty
from .paper_numbers import SECONDS_C10

__all__ = ["DetectionSet", "MethodSpec", "attribute_in_batches", "build_detection_set",
           "run_detection", "runtime_rows"]

Segmenter = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class DetectionSet:
    """The corrupted images ``[N, C, H, W]`` with their true boxes ``[N, 4]``, the index of
    each in the evaluated split, U_t before and after the corruption ``[N]``, and the mean
    intensity change inside the patch ``[N]`` (on MNIST, < 0: the patch removed strokes)."""

    images: Tensor
    boxes: Tensor
    indices: Tensor
    u_clean: Tensor
    u_corrupted: Tensor
    patch_delta: Tensor

    @property
    def patch_size(self) -> int:
        return int(self.boxes[0, 2])


@dataclass(frozen=True)
class MethodSpec:
    """A row of the table: a method, and the segmenter it uses (``None``: pixels).

    ``name`` keys its stored cell; ``label``, where set, is what a study calls the row
    when it shares a table's cell (not part of the key). ``oracle``: the true patch of
    each image is made one more segment (:func:`uattr.segment.with_boxes`), an upper
    bound that uses the answer, for the detection benchmark only."""

    name: str
    method: UncertaintyAttribution
    segmenter: Segmenter | None = None
    config: dict | None = None
    label: str | None = None
    oracle: bool = False


def build_detection_set(
    posterior: Callable[[Tensor], Tensor],
    evaluated: Split,
    donors: Split,
    *,
    n: int = 100,
    seed: int = 0,
    patch_size: int | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> DetectionSet:
    """Corrupt every image of ``evaluated`` with a patch from ``donors`` (seeded) and keep
    the ``n`` whose total uncertainty rose most (papers/000 §4.1)."""
    if not 1 <= n <= len(evaluated):
        raise ValueError(f"n must be in [1, {len(evaluated)}], got {n}")
    _, _, height, width = evaluated.images.shape
    patch_size = patch_size or default_patch_size(height, width)
    corrupted, boxes, _ = patch_swap(evaluated.images, donors.images, patch_size=patch_size,
                                     seed=seed)
    u_clean = uncertainty(predict_probs(posterior, evaluated.images, batch_size=batch_size,
                                        device=device), "total")
    u_corrupted = uncertainty(predict_probs(posterior, corrupted, batch_size=batch_size,
                                            device=device), "total")
    order = torch.argsort(u_corrupted - u_clean, descending=True, stable=True)[:n]
    area = boxes[order, 2] * boxes[order, 3] * evaluated.images.shape[1]
    delta = (corrupted[order] - evaluated.images[order]).flatten(1).sum(1) / area
    return DetectionSet(corrupted[order], boxes[order], order, u_clean[order],
                        u_corrupted[order], delta)


def attribute_in_batches(spec: MethodSpec, images: Tensor, batch_size: int,
                         device: torch.device | str, boxes: Tensor | None = None,
                         steps: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
    """``[N, H, W]``: the method's maps of ``images`` (segmented first when the row has a
    segmenter; an oracle row adds each image's true box ``boxes [N, 4]`` as a segment),
    ``batch_size`` images at a time, with a progress bar over images.

    With a list ``steps``, a method that reports diagnostics (the optimization-based one)
    appends ``(steps taken [n], converged [n])`` of each batch to it."""
    if spec.oracle and (spec.segmenter is None or boxes is None):
        raise ValueError(f"{spec.name}: an oracle row needs a segmenter and the true boxes")
    maps = []
    with tqdm(total=len(images), desc=spec.name, unit="image", leave=False,
              disable=len(images) <= batch_size) as bar:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device)
            segments = spec.segmenter(x) if spec.segmenter is not None else None
            if spec.oracle:
                segments = with_boxes(segments, boxes[i : i + batch_size])
            if steps is not None and hasattr(spec.method, "attribute_with_diagnostics"):
                result = spec.method.attribute_with_diagnostics(x, segments=segments)
                steps.append((result.steps.cpu(), result.converged.cpu()))
                maps.append(result.maps.detach().cpu())
            else:
                maps.append(spec.method.attribute(x, segments=segments).detach().cpu())
            bar.update(len(x))
    return torch.cat(maps)  # [N, H, W]


def run_detection(
    detection: DetectionSet,
    methods: list[MethodSpec],
    *,
    folder: RunFolder | None = None,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, Tensor]]:
    """Attribute, box-search and score every method; returns ``(rows, maps by method)``.

    Seconds per image include segmentation; forward/backward passes per image are counted
    as in :mod:`uattr.passes`. With a ``folder``, each method's maps and
    row are stored as a cell and reused when the same method and configuration is asked
    for again.
    """
    rows, all_maps = [], {}
    data_key = {"indices": detection.indices.tolist(), "boxes": detection.boxes.tolist()}
    for spec in methods:
        config = {"method": spec.name, "repr": repr(spec.method), **(spec.config or {}),
                  "oracle": spec.oracle, "data": data_key}
        cached = folder.load_cell(f"detection-{spec.name}", config) if folder else None
        if cached is not None:
            row, maps_array = cached
            maps = torch.from_numpy(maps_array)
            log(f"{spec.name}: loaded from {folder.path / 'cells'}")
        else:
            log(f"{spec.name}: attributing {len(detection.images)} images")
            start = time.perf_counter()
            diagnostics: list[tuple[Tensor, Tensor]] = []
            with PassCounter(spec.method.posterior) as passes:
                maps = attribute_in_batches(spec, detection.images, batch_size, device,
                                            boxes=detection.boxes, steps=diagnostics)
            n = len(detection.images)
            seconds = (time.perf_counter() - start) / n
            found = find_box(maps, detection.patch_size)
            iou = box_iou(found, detection.boxes)
            adds = detection.patch_delta >= 0
            row = {"method": spec.name, "IoU": float(iou.mean()), "ADA": ada(iou),
                   "s/image": seconds,
                   "forward/image": passes.forward / n if passes.available else None,
                   "backward/image": passes.backward / n if passes.available else None,
                   "n": n,
                   "IoU, brighter patch": float(iou[adds].mean()) if adds.any() else None,
                   "IoU, darker patch": float(iou[~adds].mean()) if (~adds).any() else None}
            if diagnostics:  # an optimisation: how long it ran (papers/001 Table 9)
                taken = torch.cat([t for t, _ in diagnostics]).double()
                converged = torch.cat([c for _, c in diagnostics])
                row.update({"mean steps": float(taken.mean()),
                            "median steps": float(taken.median()),
                            "share at the limit": float((~converged).double().mean())})
            if folder:
                folder.save_cell(f"detection-{spec.name}", config, row,
                                 maps.numpy().astype(np.float32))
        rows.append(row)
        all_maps[spec.name] = maps
    return rows, all_maps


def runtime_rows(rows: list[dict], *, batch_size: int, device: str) -> list[dict]:
    """The runtime table (papers/000 Table 5) from the detection rows: seconds and passes
    per image of every method, measured on the same images, machine and batch size."""
    threads = torch.get_num_threads()
    return [{"method": row["method"], "s/image": row["s/image"],
             "forward/image": row.get("forward/image"),
             "backward/image": row.get("backward/image"),
             "s/image, papers/000 C10": SECONDS_C10.get(row["method"]),
             "batch": batch_size, "device": f"{device} ({threads} threads)"}
            for row in rows]
