"""Which segments let a method over segments find the cause of uncertainty.

The detection benchmark (:mod:`.detection`) on the same corrupted images, with the
optimization-based method and KernelSHAP each given every segmenter's segments: the
segments decide what a method over segments can isolate (papers/000 reaches its Table 1
with SAM). The slic rows are the detection table's own cells, and the oracle rows (slic
plus the true patch) bound from above what any segmenter could give.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from ... import viz
from ...attribution import KernelSHAP
from ...metrics import box_iou, find_box
from ...ops import segment
from ...zoo import data
from ...zoo.corruption import load_or_train_corruption_net
from ..job import Job, Section, choose_methods, log, print_table
from ..registry import (
    DETECTION_ROWS,
    ORACLE,
    detection_methods,
    optimization,
    segmenter,
    segments_config,
)
from ..settings import Settings
from .common import MethodSpec, posterior_key
from .detection import detection_images, run_for_job, write_per_image

__all__ = ["DEFAULT_SEGMENTERS", "SEGMENTER_NAMES", "benchmark", "job_segmenter",
           "row_names", "segmenter_rows"]

# What ``--segmenter`` accepts: the image-only segmenters, and ``learned``, which needs the
# corruption detector of the job's data set (trained once, cached beside the posteriors).
SEGMENTER_NAMES = (*segment.SEGMENTERS, "learned")

# The segmenters of the table by default: slic (the papers' stand-in for SAM), the
# texture statistics, and the learned corruption detector.
DEFAULT_SEGMENTERS = ("slic", "texture", "learned")

# The two methods over segments that the papers compare (papers/000 Table 1).
_FAMILIES = {
    "optimization": optimization,
    "kernelshap": lambda posterior, settings: KernelSHAP(posterior, settings.uncertainty,
                                                         seed=settings.seed),
}


def job_segmenter(settings: Settings, name: str) -> tuple[Callable[[Tensor], Tensor] | None,
                                                          dict | None]:
    """``(segmenter, its settings for a cell's key)`` of ``name`` for the settings' data;
    ``(None, None)`` for pixels. ``learned`` loads (or trains, once) the data set's
    corruption detector; its key holds a hash of the detector's weights."""
    if name not in SEGMENTER_NAMES:
        raise ValueError(f"segmenter must be one of {SEGMENTER_NAMES}, got {name!r}")
    if name != "learned":
        return segmenter(name, settings.method), segments_config(name, settings.method)
    where = settings.data
    net, info = load_or_train_corruption_net(
        where.dataset, data.load(where.dataset, "train", root=where.data_dir),
        cache=settings.posterior.cache_dir, shipped=not settings.posterior.retrain, log=log)
    learned = segment.CorruptionSegmenter(net.to(settings.device))
    return learned, {"learned": {**learned.config(), "net": posterior_key(net),
                                 "weights": info["weights"]}}


def row_names(segmenters: list[str] | tuple[str, ...]) -> list[str]:
    """The names of the table's rows for ``segmenters``, without building anything."""
    return [*(f"{family} ({name})" for name in dict.fromkeys(segmenters)
              for family in _FAMILIES),
            *(row for row in DETECTION_ROWS if row.startswith(ORACLE))]


def segmenter_rows(job: Job, names: tuple[str, ...]) -> dict[str, MethodSpec]:
    """The rows ``<method> (<segmenter>)`` for every segmenter of ``names`` and both methods
    over segments, then the two oracle rows. A row the detection table has (slic, the
    oracles) is taken from it, so that both share their cells."""
    posterior, settings = job.posterior, job.settings.method
    detection = detection_methods(posterior, settings)
    rows: dict[str, MethodSpec] = {}
    for name in names:
        segments, config = job_segmenter(job.settings, name)
        job.weights.update((config or {}).get("learned", {}).get("weights", {}))
        if segments is None:
            raise ValueError("--segmenters: 'pixels' is not a segmentation (it is the "
                             "method's pixel mode); choose segmenters")
        for family, build in _FAMILIES.items():
            row = f"{family} ({name})"
            rows[row] = detection.get(row) or MethodSpec(row, build(posterior, settings),
                                                         segments, config)
    for row in detection:
        if row.startswith(ORACLE):
            rows[row] = detection[row]
    return rows


def _segmenter_of(row: str) -> str:
    """``optimization (learned)`` -> ``learned``; oracle rows -> ``slic + true patch``."""
    return row[row.index("(") + 1:-1]


def benchmark(job: Job, n: int, segmenters: tuple[str, ...] = DEFAULT_SEGMENTERS,
              names: list[str] | None = None) -> Section:
    """The table of segmenters × {optimization-based, KernelSHAP} (the rows ``names`` of
    it, default all): IoU (with its standard error), ADA, seconds per image of the
    segmenter and of the method (which includes the segmenter), segments per image; and a
    figure of the segments of every segmenter of ``segmenters`` on the first images."""
    detection_set = detection_images(job, n)
    available = segmenter_rows(job, tuple(dict.fromkeys(segmenters)))
    specs = choose_methods(available, names, "segmenters")
    rows, maps = run_for_job(job, detection_set, specs)

    images, boxes = detection_set.images, detection_set.boxes
    examples = slice(0, min(8, n))
    shown: dict[str, Tensor] = {}
    per_segmenter: dict[str, dict] = {}
    # every segmenter asked for is timed and drawn, whichever rows were run; the oracle's
    # segments only where an oracle row was
    drawn = [spec for spec in available.values()
             if not spec.oracle or spec in specs]
    for spec in drawn:
        name = _segmenter_of(spec.name)
        if name in per_segmenter:
            continue
        start = time.perf_counter()
        labels = torch.cat([spec.segmenter(images[i:i + job.settings.batch_size])
                            for i in range(0, len(images), job.settings.batch_size)])
        seconds = (time.perf_counter() - start) / len(images)
        if spec.oracle:
            labels = segment.with_boxes(labels, boxes)
        per_segmenter[name] = {"segmenter s/image": seconds,
                               "segments/image": float(segment.num_segments(labels)
                                                       .double().mean())}
        shown[name] = labels[examples]
    table = []
    for row, spec in zip(rows, specs, strict=True):
        iou = box_iou(find_box(maps[spec.name], detection_set.patch_size), boxes)
        table.append({"method": row["method"], "segmenter": _segmenter_of(spec.name),
                      "IoU": row["IoU"], "IoU s.e.": float(iou.std() / len(iou) ** 0.5),
                      "ADA": row["ADA"], "IoU, brighter patch": row["IoU, brighter patch"],
                      "IoU, darker patch": row["IoU, darker patch"],
                      **per_segmenter[_segmenter_of(spec.name)],
                      "method s/image": row["s/image"], "n": row["n"]})
    job.out.save_figure("segmenters.png",
                        viz.segments_grid(images[examples], boxes[examples], shown))
    job.out.write_table("segmenters", table)
    write_per_image(job.out, "segmenters", detection_set, maps)
    where = job.settings.data
    text = (f"{where.dataset} {where.split}, N = {n}, seed {job.settings.method.seed}: the "
            "detection benchmark's images, each method over each segmenter's segments. "
            "'method s/image' includes the segmenter. The oracle rows add the true patch "
            "to slic's segments: an upper bound that uses the answer, not a method.")
    print_table(f"Segmenters: {text}", table)
    return Section("Segmenters", text, [("segmenters", table)], ["segmenters.png"])
