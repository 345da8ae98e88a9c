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
from dataclasses import dataclass

import torch
from torch import Tensor

from ... import viz
from ...attribution import FixedMaskKernelSHAP
from ...attribution.base import UncertaintyAttribution
from ...metrics import box_iou, find_box
from ...ops import segment
from ...zoo import data
from ...zoo.corruption import (
    CorruptionConfig,
    CorruptionNet,
    choose_relative,
    load_or_train_corruption_net,
    tampered_loss,
)
from ..commands import BenchCommand, chosen_methods, option
from ..common import MethodSpec, posterior_key
from ..job import Job, Section, choose_methods, log, print_table
from ..registry import (
    DETECTION_ROWS,
    ORACLE,
    STARTED,
    detection_methods,
    optimization,
    segmenter,
    segments_config,
)
from ..settings import Settings
from .detection import detection_images, run_for_job, write_per_image

__all__ = ["COMMAND", "DEFAULT_SEGMENTERS", "DETECTORS", "DETECTOR_ONLY", "SEGMENTER_NAMES",
           "Detector", "DetectorMap", "benchmark", "job_segmenter", "load_detector", "row_names",
           "segmenter_rows"]

@dataclass(frozen=True)
class Detector:
    """A corruption detector a segmenter is built on: its training (``config``), the base
    superpixels its region is laid on (``n_segments``; ``None``: the table's own slic
    settings), the threshold of its region (``relative``; ``None``: chosen on its own
    validation task by :func:`~uattr.zoo.corruption.choose_relative`), and what it was
    trained to find (shown beside its rows)."""

    config: CorruptionConfig
    n_segments: int | None
    relative: float | None
    trained_on: str


# The corruption detectors, named for what they find (uattr.zoo.corruption).
DETECTORS = {
    # Trained on another image's content pasted at the same place (and erasures): the
    # detection benchmark's own patch-swap mechanism in other outlines; its segments (20
    # coarse slic superpixels, region above 0.3 of the peak) and its epochs were chosen
    # by the benchmark's IoU on the validation split.
    "paste-detector": Detector(CorruptionConfig(), 20, 0.3,
                               "pastes and erasures: the benchmark's own corruption"),
    # Trained only on the image's own pixels changed in place; its epoch and threshold
    # chosen on its own validation retouches, its base segments the table's slic.
    "retouch-detector": Detector(CorruptionConfig(family="retouch", keep_best=True), None,
                                 None, "retouches disjoint from patch swap"),
}

# What ``--segmenter`` accepts: the image-only segmenters, and the detectors, which need
# the data set's network (shipped, or trained once and cached beside the posteriors).
SEGMENTER_NAMES = (*segment.SEGMENTERS, *DETECTORS)

# The segmenters of the table by default: slic (the papers' stand-in for SAM), the
# texture statistics, and both corruption detectors.
DEFAULT_SEGMENTERS = ("slic", "texture", "paste-detector", "retouch-detector")

# The two methods over segments that the papers compare (papers/000 Table 1).
_FAMILIES = {
    "optimization": optimization,
    "kernelshap-fixed": lambda posterior, settings, _: FixedMaskKernelSHAP(
        posterior, settings.uncertainty, seed=settings.seed),
}

# The row of a detector's map used directly (no uncertainty attribution at all).
DETECTOR_ONLY = "detector only"


def load_detector(settings: Settings, name: str, *,
                  scored: bool = False) -> tuple[CorruptionNet, dict]:
    """The corruption network of detector ``name`` for the settings' data set (shipped,
    cached or trained once) and its info (name, config, weights' SHA-256, the threshold
    ``relative`` of its region; ``scored``: also ``test_loss``, its loss on tampered test
    images of its own family)."""
    where = settings.data
    detector = DETECTORS[name]
    valid = (data.load(where.dataset, "valid", root=where.data_dir)
             if detector.config.keep_best or detector.relative is None else None)
    net, info = load_or_train_corruption_net(
        where.dataset, data.load(where.dataset, "train", root=where.data_dir),
        config=detector.config, valid=valid, cache=settings.posterior.cache_dir,
        shipped=not settings.posterior.retrain, log=log)
    relative = detector.relative
    if relative is None:
        relative = choose_relative(net, valid, detector.config)
    info = {**info, "relative": relative}
    if scored:
        test = data.load(where.dataset, "test", root=where.data_dir)
        info["test_loss"] = tampered_loss(net, test, detector.config)
    return net.to(settings.device), info


def job_segmenter(settings: Settings, name: str) -> tuple[Callable[[Tensor], Tensor] | None,
                                                          dict | None]:
    """``(segmenter, its settings for a cell's key)`` of ``name`` for the settings' data;
    ``(None, None)`` for pixels. A detector (:data:`DETECTORS`) loads its network; its
    key holds a hash of the network's weights."""
    if name not in SEGMENTER_NAMES:
        hint = (" (the corruption detector trained on pastes is now 'paste-detector')"
                if name == "learned" else "")
        raise ValueError(f"segmenter must be one of {SEGMENTER_NAMES}, got {name!r}{hint}")
    if name not in DETECTORS:
        return segmenter(name, settings.method), segments_config(name, settings.method)
    net, info = load_detector(settings, name)
    n_segments = DETECTORS[name].n_segments or settings.method.n_segments
    made = segment.CorruptionSegmenter(net, n_segments=n_segments,
                                       compactness=settings.method.compactness,
                                       relative=info["relative"])
    return made, {"detector": {**made.config(), "name": name, "net": posterior_key(net),
                               "weights": info["weights"]}}


class DetectorMap(UncertaintyAttribution):
    """A corruption detector's probability map used as the map itself: where the image
    looks tampered with, with no uncertainty attribution (the posterior is never run).
    Its row says how much of a detector segmenter's score the detector alone gives."""

    name = "detector only"

    def __init__(self, posterior: Callable[[Tensor], Tensor], net: torch.nn.Module) -> None:
        super().__init__(posterior)
        self.net = net

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``: the probability that each pixel was tampered with."""
        return segment.CorruptionSegmenter(self.net).scores(self._check(x))

    def counted_networks(self) -> tuple[torch.nn.Module, ...]:
        return (self.net,)

    def settings(self) -> dict:
        return {"net": posterior_key(self.net)}


def row_names(segmenters: list[str] | tuple[str, ...]) -> list[str]:
    """The names of the table's rows for ``segmenters``, without building anything."""
    rows = []
    for name in dict.fromkeys(segmenters):
        rows += [f"{family} ({name})" for family in _FAMILIES]
        if name in DETECTORS:
            rows.append(f"{DETECTOR_ONLY} ({name})")
    return [*rows, *(row for row in DETECTION_ROWS if row.startswith(ORACLE))]


def segmenter_rows(job: Job, names: tuple[str, ...]) -> dict[str, MethodSpec]:
    """The rows ``<method> (<segmenter>)`` for every segmenter of ``names`` and both methods
    over segments, a detector's own map (``detector only (<detector>)``) for each
    detector, then the two oracle rows. A row the detection table has (slic, the oracles)
    is taken from it, so that both share their cells."""
    posterior, settings = job.posterior, job.settings.method
    network = job.amortized_for(list(STARTED))  # the method's start, where it is the explainer
    detection = detection_methods(posterior, settings, amortized=network)
    rows: dict[str, MethodSpec] = {}
    for name in names:
        segments, config = job_segmenter(job.settings, name)
        if segments is None:
            raise ValueError("--segmenters: 'pixels' is not a segmentation (it is the "
                             "method's pixel mode); choose segmenters")
        for family, build in _FAMILIES.items():
            row = f"{family} ({name})"
            rows[row] = detection.get(row) or MethodSpec(row, build(posterior, settings, network),
                                                         segments, config)
        if name in DETECTORS:
            job.weights.update(config["detector"]["weights"])
            row = f"{DETECTOR_ONLY} ({name})"
            rows[row] = MethodSpec(row, DetectorMap(posterior, segments.net), None, config)
    for row in detection:
        if row.startswith(ORACLE):
            rows[row] = detection[row]
    return rows


def _segmenter_of(row: str) -> str:
    """``optimization (paste-detector)`` -> ``paste-detector``; oracle rows -> ``slic +
    true patch``."""
    return row[row.index("(") + 1:-1]


def benchmark(job: Job, n: int, segmenters: tuple[str, ...] = DEFAULT_SEGMENTERS,
              names: list[str] | None = None, corruption: str = "patch-swap") -> Section:
    """The table of segmenters × {optimization-based, KernelSHAP} and each detector's own
    map (the rows ``names`` of it, default all) on the detection images corrupted by
    ``corruption``: IoU (with its standard error), ADA, seconds per image of the segmenter
    and of the method (which includes the segmenter), segments per image, what a
    detector was trained to find; and a figure of the segments of every segmenter of
    ``segmenters`` on the first images. Files: ``segmenters*`` (patch swap) or
    ``segmenters-<corruption>*``."""
    detection_set = detection_images(job, n, corruption)
    available = segmenter_rows(job, tuple(dict.fromkeys(segmenters)))
    specs = choose_methods(available, names, "segmenters")
    rows, maps = run_for_job(job, detection_set, specs)
    stem = "segmenters" if corruption == "patch-swap" else f"segmenters-{corruption}"

    images, boxes = detection_set.images, detection_set.boxes
    examples = slice(0, min(8, n))
    shown: dict[str, Tensor] = {}
    per_segmenter: dict[str, dict] = {}
    # every segmenter asked for is timed and drawn, whichever rows were run; the oracle's
    # segments only where an oracle row was
    drawn = [spec for spec in available.values()
             if spec.segmenter is not None and (not spec.oracle or spec in specs)]
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
        name = _segmenter_of(spec.name)
        iou = box_iou(find_box(maps[spec.name], detection_set.patch_size), boxes)
        segmented = per_segmenter[name] if spec.segmenter is not None else {}
        table.append({"method": row["method"], "segmenter": name,
                      "IoU": row["IoU"], "IoU s.e.": float(iou.std() / len(iou) ** 0.5),
                      "ADA": row["ADA"], "IoU, brighter patch": row["IoU, brighter patch"],
                      "IoU, darker patch": row["IoU, darker patch"],
                      "segmenter s/image": segmented.get("segmenter s/image"),
                      "segments/image": segmented.get("segments/image"),
                      "method s/image": row["s/image"], "n": row["n"],
                      "detector trained on": (DETECTORS[name].trained_on
                                              if name in DETECTORS else None)})
    job.out.save_figure(f"{stem}.png",
                        viz.segments_grid(images[examples], boxes[examples], shown))
    job.out.write_table(stem, table)
    write_per_image(job.out, stem, detection_set, maps)
    where = job.settings.data
    text = (f"{where.dataset} {where.split}, N = {n}, seed {job.settings.method.seed}, "
            f"corruption {corruption}: the detection benchmark's images, each method over "
            "each segmenter's segments. 'method s/image' includes the segmenter. A "
            "detector's own row is its map used directly, with no uncertainty "
            "attribution. The paste detector was trained on the benchmark's own kind of "
            "corruption (another image's content pasted at the same place) and tuned by "
            "its IoU on validation: its patch-swap rows are oracle-like. The oracle rows "
            "add the true patch to slic's segments: an upper bound that uses the answer, "
            "not a method.")
    print_table(f"Segmenters: {text}", table)
    return Section("Segmenters", text, [(stem, table)], [f"{stem}.png"])


COMMAND = BenchCommand(
    "segmenters", "the detection benchmark over each segmenter's segments, for the "
    "optimization-based method and fixed-mask KernelSHAP (papers/000 Table 1 with SAM)",
    lambda job, args: benchmark(job, args.n, tuple(args.segmenters), chosen_methods(args),
                                args.corruption),
    options=(
        option("--segmenters", nargs="+", default=list(DEFAULT_SEGMENTERS),
               choices=[s for s in SEGMENTER_NAMES if s != "pixels"],
               help=f"segmenters to compare (default: {' '.join(DEFAULT_SEGMENTERS)})"),
        option("--corruption", default="patch-swap", choices=data.CORRUPTIONS,
               help="the corruption of the detection images: patch-swap (the papers') or "
                    "patch-rotate (a patch turned a quarter in place, which neither "
                    "corruption detector saw)"),
    ),
    methods=lambda args: row_names(args.segmenters), on_ray=True)
