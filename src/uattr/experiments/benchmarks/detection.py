"""Detection of problematic regions (papers/000 §4.1, Table 1; DESIGN §4).

Each test image gets a patch of a random training image at the same place; the N
images whose total uncertainty rose most are kept; every method attributes U_t of the
corrupted image; a box of the patch's size is slid over the map and the box of highest
mean attribution is compared with the true patch (IoU, and ADA = share with IoU > 0.5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ... import viz
from ...metrics import ada, box_iou, find_box
from ...uq import predict_probs, uncertainty
from ...zoo import data
from ...zoo.data import CORRUPTIONS, Split, default_patch_size, patch_rotate, patch_swap
from ...zoo.models import load_cached, save_atomic, weights_tag
from ..commands import BenchCommand, chosen_methods, option
from ..common import (
    Cell,
    MethodSpec,
    Parallel,
    attribute_counted,
    cached_cells,
    method_key,
    slice_size,
)
from ..job import Job, Section, choose_methods, log, print_table
from ..registry import DETECTION_ROWS, detection_methods, family_means
from ..runs import RunFolder, threads_label
from ..spread import ORACLE, paired_differences
from . import added_rows
from .paper_numbers import DETECTION_C10, SECONDS_C10, beside

__all__ = ["COMMAND", "DetectionSet", "add_rows", "benchmark", "build_detection_set",
           "detection_images", "run_detection", "run_for_job", "runtime_rows", "write_per_image"]


@dataclass(frozen=True)
class DetectionSet:
    """The corrupted images ``[N, C, H, W]`` with their true boxes ``[N, 4]``, the index of
    each in the evaluated split, U_t before and after the corruption ``[N]``, the mean
    intensity change inside the patch ``[N]`` (on MNIST, < 0: the patch removed strokes),
    and the corruption (one of :data:`uattr.zoo.data.CORRUPTIONS`)."""

    images: Tensor
    boxes: Tensor
    indices: Tensor
    u_clean: Tensor
    u_corrupted: Tensor
    patch_delta: Tensor
    corruption: str = "patch-swap"

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
    corruption: str = "patch-swap",
) -> DetectionSet:
    """Corrupt every image of ``evaluated`` (seeded) and keep the ``n`` whose total
    uncertainty rose most (papers/000 §4.1). ``corruption``: ``patch-swap`` (a patch from
    ``donors``, the papers' benchmark) or ``patch-rotate`` (the image's own patch turned
    a quarter, at the same places)."""
    if not 1 <= n <= len(evaluated):
        raise ValueError(f"n must be in [1, {len(evaluated)}], got {n}")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {corruption!r}")
    _, _, height, width = evaluated.images.shape
    patch_size = patch_size or default_patch_size(height, width)
    if corruption == "patch-swap":
        corrupted, boxes, _ = patch_swap(evaluated.images, donors.images,
                                         patch_size=patch_size, seed=seed)
    else:
        corrupted, boxes = patch_rotate(evaluated.images, patch_size=patch_size, seed=seed)
    u_clean = uncertainty(predict_probs(posterior, evaluated.images, batch_size=batch_size,
                                        device=device), "total")
    u_corrupted = uncertainty(predict_probs(posterior, corrupted, batch_size=batch_size,
                                            device=device), "total")
    order = torch.argsort(u_corrupted - u_clean, descending=True, stable=True)[:n]
    area = boxes[order, 2] * boxes[order, 3] * evaluated.images.shape[1]
    delta = (corrupted[order] - evaluated.images[order]).flatten(1).sum(1) / area
    return DetectionSet(corrupted[order], boxes[order], order, u_clean[order],
                        u_corrupted[order], delta, corruption)


def run_detection(
    detection: DetectionSet,
    methods: list[MethodSpec],
    *,
    folder: RunFolder | None = None,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    parallel: Parallel | None = None,
) -> tuple[list[dict], dict[str, Tensor]]:
    """Attribute, box-search and score every method; returns ``(rows, maps by method)``.

    Seconds per image include segmentation; forward/backward passes per image are counted
    as in :mod:`uattr.posteriors.passes`. With a ``folder``, each method's maps and
    row are stored as a cell and reused when the same method and configuration is asked
    for again.
    """
    rows, all_maps = [], {}
    data_key = {"indices": detection.indices.tolist(), "boxes": detection.boxes.tolist()}
    prefix = "detection"
    if detection.corruption != "patch-swap":  # the papers' corruption keeps its old keys
        data_key["corruption"] = detection.corruption
        prefix = f"detection-{detection.corruption}"
    cells = []
    for spec in methods:

        def compute(spec: MethodSpec = spec) -> tuple[dict, np.ndarray]:
            diagnostics: list = []
            done = attribute_counted(spec, detection.images, batch_size, device,
                                     boxes=detection.boxes, results=diagnostics, log=log)
            found = find_box(done.maps, detection.patch_size)
            iou = box_iou(found, detection.boxes)
            adds = detection.patch_delta >= 0
            row = {"method": spec.name, "IoU": float(iou.mean()), "ADA": ada(iou),
                   "s/image": done.seconds, "forward/image": done.forward,
                   "backward/image": done.backward, "n": len(detection.images),
                   "threads": "/".join(str(t) for t in done.threads),
                   "IoU, brighter patch": float(iou[adds].mean()) if adds.any() else None,
                   "IoU, darker patch": float(iou[~adds].mean()) if (~adds).any() else None}
            if diagnostics:  # an optimisation: how long it ran (papers/001 Table 9)
                taken = torch.cat([r.steps.cpu() for r in diagnostics]).double()
                converged = torch.cat([r.converged.cpu() for r in diagnostics])
                row.update({"mean steps": float(taken.mean()),
                            "median steps": float(taken.median()),
                            "share at the limit": float((~converged).double().mean())})
            return row, done.maps.numpy().astype(np.float32)

        cells.append(Cell(f"{prefix}-{spec.name}", {**method_key(spec), "data": data_key},
                          compute, spec.name))
    ious = {}
    for spec, (row, maps) in zip(methods, cached_cells(folder, cells, log, parallel),
                                 strict=True):
        all_maps[spec.name] = torch.from_numpy(maps)
        ious[spec.name] = box_iou(find_box(all_maps[spec.name], detection.patch_size),
                                  detection.boxes)  # [N]
        rows.append({**row, "IoU s.e.": _standard_error(ious[spec.name])})
    _against_the_best(rows, ious, {spec.name for spec in methods if spec.oracle})
    return rows, all_maps


def write_per_image(out: RunFolder, stem: str, detection_set: DetectionSet,
                    maps: dict[str, Tensor]) -> None:
    """Beside a detection-like table ``stem``: ``<stem>_per_image.json``, every row's IoU
    on every image (for paired comparisons and the spread across ensembles),
    ``<stem>_pairs.json``, every pair of rows' paired difference
    (:func:`~uattr.experiments.spread.paired_differences`), and
    ``<stem>_slice.npz``, the images :func:`~.common.slice_size` keeps: the corrupted
    images, their boxes, U
    and every row's maps and IoU on them, from which a test recomputes the table's slice."""
    ious = {name: box_iou(find_box(m, detection_set.patch_size), detection_set.boxes)
            for name, m in maps.items()}  # name: [N]
    out.write_json(f"{stem}_per_image.json", {
        "indices": detection_set.indices.tolist(),
        "IoU": {name: iou.tolist() for name, iou in ious.items()}})
    out.write_json(f"{stem}_pairs.json", paired_differences(
        {name: iou.double().numpy() for name, iou in ious.items()}))
    n = len(detection_set.images)
    k = slice_size(n)
    arrays = {"complete": np.array(k == n), "draws_per_image": np.array(True),
              "images": detection_set.images[:k].numpy(),
              "boxes": detection_set.boxes[:k].numpy(),
              "indices": detection_set.indices[:k].numpy(),
              "u_corrupted": detection_set.u_corrupted[:k].numpy()}
    for i, (name, m) in enumerate(maps.items()):
        arrays[f"map{i}"] = m[:k].numpy()
        arrays[f"iou{i}"] = ious[name][:k].numpy()
    arrays["rows"] = np.array(list(maps))
    out.write_npz(f"{stem}_slice.npz", arrays)


def _standard_error(values: Tensor) -> float:
    return float(values.double().std() / len(values) ** 0.5) if len(values) > 1 else 0.0


def _against_the_best(rows: list[dict], ious: dict[str, Tensor], oracles: set[str]) -> None:
    """Add to each row its IoU minus that of the best method (oracles aside) and the
    standard error of that difference, paired over the same images: a lead is as large
    as it is in these units."""
    methods = [row["method"] for row in rows if row["method"] not in oracles]
    if not methods:
        return
    best = max(methods, key=lambda name: float(ious[name].mean()))
    for row in rows:
        difference = ious[row["method"]] - ious[best]
        row.update({"IoU - best": float(difference.mean()),
                    "its s.e.": _standard_error(difference)})


def runtime_rows(rows: list[dict], *, batch_size: int, device: str) -> list[dict]:
    """The runtime table (papers/000 Table 5) from the detection rows: seconds and passes
    per image of every method, measured on the same images, machine and batch size, each
    with the threads its cell was measured on (a cell stored before they were kept: this
    process's)."""
    def where(row: dict) -> str:
        return f"{device} ({threads_label(row.get('threads') or torch.get_num_threads())})"

    return [{"method": row["method"], "s/image": row["s/image"],
             "forward/image": row.get("forward/image"),
             "backward/image": row.get("backward/image"),
             "s/image, papers/000 C10": SECONDS_C10.get(row["method"]),
             "batch": batch_size, "device": where(row)}
            for row in rows]


# ------------------------------------------------------------ the job of uattr bench/run
def run_for_job(job: Job, detection_set: DetectionSet,
                specs: list[MethodSpec]) -> tuple[list[dict], dict[str, Tensor]]:
    """:func:`run_detection` into the job's run folder, with its batch size and device."""
    return run_detection(detection_set, specs, folder=job.out,
                         batch_size=job.settings.batch_size, device=job.settings.device,
                         log=log, parallel=job.parallel)


def detection_images(job: Job, n: int, corruption: str = "patch-swap") -> DetectionSet:
    """The detection set of ``n`` images corrupted by ``corruption``, built once and cached
    beside the posterior it was built with, named by the weights' hashes (it depends on
    nothing else: a rerun skips 20 000 forward passes)."""
    where, seed = job.settings.data, job.settings.method.seed
    weights = job.info.get("weights")
    tag = f"-{weights_tag(weights)}" if weights else ""
    kind = "" if corruption == "patch-swap" else f"-{corruption}"
    set_path = Path(job.info["cache"]) / (f"detection{kind}-{job.info['tag']}-{where.split}"
                                          f"-n{n}-seed{seed}{tag}.pt")
    cached = load_cached(set_path, log)
    if cached is not None:
        return DetectionSet(**cached)
    evaluated = data.load(where.dataset, where.split, root=where.data_dir)
    donors = data.load(where.dataset, "train", root=where.data_dir)
    log(f"building the detection set: the {n} most affected of {len(evaluated)} "
        f"{where.split} images")
    detection_set = build_detection_set(job.posterior, evaluated, donors, n=n,
                                        seed=seed, device=job.settings.device,
                                        corruption=corruption)
    save_atomic(dataclasses.asdict(detection_set), set_path)
    return detection_set


def benchmark(job: Job, n: int, names: list[str] | None = None) -> Section:
    """papers/000 Table 1 / papers/001 Table 6, and the runtime table (Table 5)."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    detection_set = detection_images(job, n)
    methods = choose_methods(detection_methods(job.posterior, method, job.vae_for(names),
                                               job.amortized_for(names)),
                             names, "detection")
    rows, maps = run_for_job(job, detection_set, methods)
    examples = slice(0, min(8, n))
    results = {name: (m[examples], find_box(m[examples], detection_set.patch_size))
               for name, m in maps.items()}
    out.save_figure("detection_examples.png",
                    viz.detection_grid(detection_set.images[examples],
                                       detection_set.boxes[examples], results))
    rows = beside(rows, DETECTION_C10, ("IoU", "ADA"))
    out.write_table("detection", rows)
    families = family_means(rows, ("IoU", "ADA"))
    out.write_table("detection_families", families)
    runtime = runtime_rows(rows, batch_size=settings.batch_size, device=settings.device)
    out.write_table("runtime", runtime)
    out.write_json("detection_set.json", {
        "indices": detection_set.indices.tolist(), "boxes": detection_set.boxes.tolist(),
        "u_clean": detection_set.u_clean.tolist(),
        "u_corrupted": detection_set.u_corrupted.tolist(),
        "patch_delta": detection_set.patch_delta.tolist()})
    write_per_image(out, "detection", detection_set, maps)
    removes = int((detection_set.patch_delta < 0).sum())
    size = detection_set.patch_size
    text = (f"{where.dataset} {where.split}, N = {n}, seed {method.seed}, patch {size}×{size}, "
            f"U = {method.uncertainty}. {removes} of {n} patches lower the mean intensity (on "
            "MNIST they erase strokes, which a blur cannot put back). Rows marked "
            "'oracle:' segment with slic plus the true patch as one more segment: an upper "
            "bound that uses the answer, not a method. The paper's columns are CIFAR-10 "
            "(papers/000 Table 1; SAM segments where ours use slic).")
    print_table(f"Detection of problematic regions: {text}", rows)
    print_table("Mean of each family (papers/000 §4.1: perturbation-based methods generally "
                 "beat gradient-based ones)", families)
    print_table(f"Runtime (papers/000 Table 5): this machine, batch {settings.batch_size}",
                 [{k: v for k, v in r.items() if k not in ("batch", "device")}
                  for r in runtime])
    return Section("Detection of problematic regions", text,
                   [("detection", rows), ("mean of each family", families),
                    ("runtime: seconds and passes per image", runtime)],
                   ["detection_examples.png"])


def add_rows(job: Job, n: int, names: list[str], folder: str | Path,
             arguments: dict) -> Section:
    """The rows ``names`` measured on the images of the detection table in ``folder`` and
    written into it beside its other rows (:mod:`.added_rows`); ``arguments``: the
    command's, checked against the table's run record."""
    committed = added_rows.read_committed(folder)
    added_rows.check_same_run(committed, arguments, job.info.get("weights", {}), names)
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    detection_set = DetectionSet(**added_rows.detection_set_of(
        committed, where.dataset, where.split, where.data_dir, method.seed))
    specs = choose_methods(detection_methods(job.posterior, method, job.vae_for(names),
                                               job.amortized_for(names)),
                           names, "detection")
    new_rows, maps = run_for_job(job, detection_set, specs)
    # the table's other rows were made with the weights its record names (the VAE's among
    # them where it has CLUE rows): the new record names them too
    job.weights.update({key: digest for key, digest
                        in (committed.record.get("weights") or {}).items()
                        if key not in job.weights})
    ious = {name: box_iou(find_box(m, detection_set.patch_size), detection_set.boxes)
            for name, m in maps.items()}  # name: [N]
    rows, runtime, per_image = added_rows.merge_rows(
        committed, new_rows, ious,
        runtime_rows(new_rows, batch_size=settings.batch_size, device=settings.device))
    _against_the_best(rows, {name: torch.from_numpy(iou) for name, iou in per_image.items()},
                      {name for name in per_image if name.startswith(ORACLE)})
    rows = beside(rows, DETECTION_C10, ("IoU", "ADA"))
    families = family_means(rows, ("IoU", "ADA"))
    out.write_table("detection", rows)
    out.write_table("detection_families", families)
    out.write_table("runtime", runtime)
    out.write_json("detection_per_image.json", {
        "indices": committed.detection_set["indices"],
        "IoU": {name: values.tolist() for name, values in per_image.items()}})
    out.write_json("detection_pairs.json", paired_differences(per_image))
    out.write_npz("detection_slice.npz",
                  added_rows.merge_slice(committed, list(per_image), maps, ious))
    text = (f"{where.dataset} {where.split}, N = {n}, seed {method.seed}: the rows "
            f"{', '.join(names)} added to the table of {committed.folder} (its other rows as "
            "that run measured them, on the same images and weights; the runtime rows name "
            "the device each row was timed on; detection_examples.png shows the earlier "
            "run's rows). Rows marked 'oracle:' use the true patch: an upper bound, not a "
            "method.")
    print_table(f"Detection of problematic regions: {text}", rows)
    print_table("Mean of each family", families)
    return Section("Detection of problematic regions", text,
                   [("detection", rows), ("mean of each family", families),
                    ("runtime: seconds and passes per image", runtime)],
                   record={"added to": committed.record})


def _check(args) -> None:
    if args.add_to is None:
        return
    if chosen_methods(args) is None:
        raise ValueError("--methods: with --add-to, name the rows to add (not all)")
    added_rows.read_committed(args.add_to)  # a folder that is no table stops the command here
    if args.results is not None and Path(args.results).resolve() != Path(args.add_to).resolve():
        raise ValueError("--results: with --add-to the table is written back into its own "
                         f"folder {args.add_to}; leave --results out or give the same folder")


def _run(job: Job, args) -> Section:
    if args.add_to is None:
        return benchmark(job, args.n, chosen_methods(args))
    args.results = args.add_to  # the table is written back where it was read
    arguments = {key: value for key, value in vars(args).items() if not callable(value)}
    return add_rows(job, args.n, chosen_methods(args), args.add_to, arguments)


COMMAND = BenchCommand(
    "detection", "problematic-region detection and runtime, every method (papers/000 "
    "Tables 1 and 5, papers/001 Table 6)", _run,
    options=(option("--add-to", default=None, metavar="FOLDER",
                    help="measure only the --methods rows, on the images and weights of the "
                         "detection table in FOLDER (a results folder), and write them into "
                         "it beside its other rows; refused when the table was made with "
                         "other weights or settings"),),
    methods=lambda args: DETECTION_ROWS, on_ray=True, check=_check)
