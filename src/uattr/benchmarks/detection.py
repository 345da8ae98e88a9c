"""Detection of problematic regions (papers/000 §4.1, Table 1; DESIGN §4).

Each test image gets a patch of a random training image at the same place; the N
images whose total uncertainty rose most are kept; every method attributes U_t of the
corrupted image; a box of the patch's size is slid over the map and the box of highest
mean attribution is compared with the true patch (IoU, and ADA = share with IoU > 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data import Split, default_patch_size, patch_swap
from ..metrics import ada, box_iou, find_box
from ..runs import RunFolder
from ..uq import predict_probs, uncertainty
from .common import MethodSpec, attribute_counted, cached_cell, method_key
from .paper_numbers import SECONDS_C10

__all__ = ["DetectionSet", "build_detection_set", "run_detection", "runtime_rows"]


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

        def compute(spec: MethodSpec = spec) -> tuple[dict, np.ndarray]:
            diagnostics: list[tuple[Tensor, Tensor]] = []
            done = attribute_counted(spec, detection.images, batch_size, device,
                                     boxes=detection.boxes, steps=diagnostics, log=log)
            found = find_box(done.maps, detection.patch_size)
            iou = box_iou(found, detection.boxes)
            adds = detection.patch_delta >= 0
            row = {"method": spec.name, "IoU": float(iou.mean()), "ADA": ada(iou),
                   "s/image": done.seconds, "forward/image": done.forward,
                   "backward/image": done.backward, "n": len(detection.images),
                   "IoU, brighter patch": float(iou[adds].mean()) if adds.any() else None,
                   "IoU, darker patch": float(iou[~adds].mean()) if (~adds).any() else None}
            if diagnostics:  # an optimisation: how long it ran (papers/001 Table 9)
                taken = torch.cat([t for t, _ in diagnostics]).double()
                converged = torch.cat([c for _, c in diagnostics])
                row.update({"mean steps": float(taken.mean()),
                            "median steps": float(taken.median()),
                            "share at the limit": float((~converged).double().mean())})
            return row, done.maps.numpy().astype(np.float32)

        row, maps = cached_cell(folder, f"detection-{spec.name}",
                                {**method_key(spec), "data": data_key}, compute, log,
                                spec.name)
        rows.append(row)
        all_maps[spec.name] = torch.from_numpy(maps)
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
