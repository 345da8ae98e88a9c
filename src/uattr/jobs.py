"""The jobs behind ``uattr run`` and ``uattr bench``.

Each job loads (or trains) the cached ensemble, builds its images, runs its methods into
a run folder where every finished (method, configuration, images) cell is stored and
reused, writes its tables (Markdown, CSV, JSON) and figures (PNG), prints its tables,
and returns a :class:`Section` of the run's ``report.md``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import data, viz
from .benchmarks.blur_test import run_blur_test
from .benchmarks.common import most_uncertain
from .benchmarks.detection import DetectionSet, build_detection_set, run_detection, runtime_rows
from .benchmarks.explanation_uncertainty import run_explanation_uncertainty
from .benchmarks.faithfulness import run_faithfulness
from .benchmarks.paper_numbers import BLUR_TEST_MNIST, DETECTION_C10, FAITHFULNESS_C10, beside
from .metrics import find_box
from .models import (
    TrainConfig,
    load_cached,
    load_or_train_ensemble,
    load_or_train_sampled,
    save_atomic,
)
from .registry import detection_methods, family_means, pixel_methods
from .runs import RunFolder, markdown_table
from .settings import Settings
from .uq import Ensemble, uncertainty

__all__ = ["Job", "Section", "blur_test", "detection", "detection_images",
           "explanation_uncertainty", "faithfulness",
           "load_ensemble", "load_sampled", "open_job", "print_table", "write_report"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Section:
    """A part of ``report.md``: a title, text, tables ``(caption, rows)`` and figures."""

    title: str
    text: str
    tables: list[tuple[str, list[dict]]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class Job:
    """What every job works with: its settings, the ensemble and what its cache says of it
    (``info``), the run folder, and when the job started."""

    settings: Settings
    posterior: Ensemble
    info: dict
    out: RunFolder
    start: float


def load_ensemble(settings: Settings, retrain: bool = False) -> tuple[Ensemble, dict]:
    """Train or load the cached ensemble the settings describe, and log its accuracy."""
    where, trained = settings.data, settings.posterior
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    members, info = load_or_train_ensemble(
        where.dataset, train, test, members=trained.members,
        config=TrainConfig(epochs=trained.epochs), cache=trained.cache_dir,
        device=settings.device, retrain=retrain, log=log)
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    log(f"ensemble of {trained.members} on {where.dataset}: test accuracy "
        f"{info['ensemble_accuracy']:.4f} (members: {accs}); cached in {info['cache']}")
    return Ensemble(members), info


def load_sampled(settings: Settings, kind: str,
                 retrain: bool = False) -> tuple[nn.Module, dict]:
    """Train or load the single-network posterior ``kind`` (MC-Dropout, DropConnect,
    Flipout) with the settings' frozen samples, and log its accuracy."""
    where, trained = settings.data, settings.posterior
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    posterior, info = load_or_train_sampled(
        kind, where.dataset, train, test, samples=trained.samples,
        dropconnect_p=trained.dropconnect_p,
        config=TrainConfig(epochs=trained.epochs, max_train=trained.posterior_train),
        cache=trained.cache_dir, device=settings.device, retrain=retrain, log=log)
    log(f"{kind} on {where.dataset}: test accuracy {info['accuracy']:.4f} "
        f"(mean of {trained.samples} samples; one sample {info['sample_accuracy']:.4f}); "
        f"cached in {info['cache']}")
    return posterior, info


def open_job(settings: Settings, folder: str | Path) -> Job:
    """Load (or train) the ensemble and open the run folder ``folder``."""
    start = time.perf_counter()
    torch.manual_seed(settings.method.seed)
    posterior, info = load_ensemble(settings)
    return Job(settings, posterior, info, RunFolder(folder), start)


def _choose(available: dict, names: list[str] | None, what: str) -> list:
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise ValueError(f"--methods: unknown {unknown} for {what}; choose from "
                         f"{sorted(available)}")
    return [available[name] for name in (names or available)]


def print_table(title: str, rows: list[dict]) -> None:
    """A table on standard output, after its title (the ``n`` column left out)."""
    print(f"\n{title}\n")
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))


# ----------------------------------------------------------------------------- detection
def detection_images(job: Job, n: int) -> DetectionSet:
    """The detection set of ``n`` corrupted images, built once and cached beside the
    ensemble it was built with (it depends on nothing else: a rerun skips 20 000
    forward passes)."""
    where, seed = job.settings.data, job.settings.method.seed
    set_path = Path(job.info["cache"]) / (f"detection-{job.settings.posterior.members}"
                                          f"members-{where.split}-n{n}-seed{seed}.pt")
    cached = load_cached(set_path, log)
    if cached is not None:
        return DetectionSet(**cached)
    evaluated = data.load(where.dataset, where.split, root=where.data_dir)
    donors = data.load(where.dataset, "train", root=where.data_dir)
    log(f"building the detection set: the {n} most affected of {len(evaluated)} "
        f"{where.split} images")
    detection_set = build_detection_set(job.posterior, evaluated, donors, n=n,
                                        seed=seed, device=job.settings.device)
    save_atomic(dataclasses.asdict(detection_set), set_path)
    return detection_set


def detection(job: Job, n: int, names: list[str] | None = None) -> Section:
    """papers/000 Table 1 / papers/001 Table 6, and the runtime table (Table 5)."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    detection_set = detection_images(job, n)
    methods = _choose(detection_methods(job.posterior, method), names, "detection")
    rows, maps = run_detection(detection_set, methods, folder=out, batch_size=settings.batch_size,
                               device=settings.device, log=log)
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


# -------------------------------------------------------------------------- faithfulness
def faithfulness(job: Job, n: int, names: list[str] | None = None) -> Section:
    """papers/000 Table 2: refinement of each pixel-level map's top pixels, URR."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    split = data.load(where.dataset, where.split, root=where.data_dir)
    images, indices, u = most_uncertain(job.posterior, split, n, kind=method.uncertainty,
                                        device=settings.device)
    methods = _choose(pixel_methods(job.posterior, method), names, "faithfulness")
    rows, maps = run_faithfulness(
        images, methods, lambda x: uncertainty(job.posterior(x), method.uncertainty),
        folder=out, batch_size=settings.batch_size, device=settings.device,
        data_key={"split": where.split, "indices": indices.tolist()}, log=log)
    rows = beside(rows, FAITHFULNESS_C10,
                  ("gradient 0.5%", "gradient 1%", "blur 2%", "blur 5%"))
    out.write_table("faithfulness", rows)
    families = family_means(rows, ("gradient avg", "blur avg"))
    out.write_table("faithfulness_families", families)
    shown = slice(0, min(6, n))
    titles = [f"#{i} U={v:.2f}" for i, v in zip(indices[shown].tolist(), u[shown].tolist(),
                                                 strict=True)]
    out.save_figure("faithfulness_maps.png",
                    viz.maps_grid(images[shown], {k: m[shown] for k, m in maps.items()},
                                  titles=titles))
    text = (f"The {n} {where.split} images of highest {method.uncertainty} uncertainty; URR = "
            "1 - U(refined)/U(x), mean over images (higher is better). Gradient: Adam "
            "(lr 0.2, ≤ 500 steps, pixels not clamped, as the papers' update) on the top "
            "0.5% / 1% pixels only; blur: the top 2% / 5% "
            "pixels replaced by the 5×5, σ = 2 blur. The paper's columns are CIFAR-10 "
            "(papers/000 Table 2).")
    print_table(f"Faithfulness: {text}", rows)
    print_table("Mean of each family", families)
    return Section("Faithfulness", text,
                   [("faithfulness", rows), ("mean of each family", families)],
                   ["faithfulness_maps.png"])


# ---------------------------------------------------------------------------- blur test
def blur_test(job: Job, n: int, kind: str, names: list[str] | None = None) -> Section:
    """papers/002 Table 1: URR curves by blurring in attribution order, MURR, AUC-URR."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    split = data.load(where.dataset, where.split, root=where.data_dir)
    images, indices, _ = most_uncertain(job.posterior, split, n, kind=kind,
                                        device=settings.device)
    explained = dataclasses.replace(method, uncertainty=kind)
    methods = _choose(pixel_methods(job.posterior, explained), names, "the blurring test")
    rows, curves = run_blur_test(
        images, methods, lambda x: uncertainty(job.posterior(x), kind), folder=out,
        batch_size=settings.batch_size, device=settings.device,
        data_key={"split": where.split, "kind": kind, "indices": indices.tolist()}, log=log)
    rows = beside(rows, BLUR_TEST_MNIST, ("MURR 2%", "MURR 5%", "AUC-URR 2%", "AUC-URR 5%"))
    out.write_table("blur_test", rows)
    out.save_figure("blur_test_curves.png",
                    viz.urr_curves(curves, title=f"blurring test, {kind} uncertainty, "
                                                 f"{where.dataset} {where.split}, N = {n}"))
    text = (f"The {n} {where.split} images of highest {kind} uncertainty, maps of the {kind} "
            "uncertainty; pixels blurred one by one in attribution order up to 2% / 5% of "
            "the image. MURR (higher is better) and AUC-URR (lower is better) are medians "
            "over images. The paper's columns are MNIST (papers/002 Table 1, epistemic).")
    print_table(f"Blurring test: {text}", rows)
    return Section("Blurring test", text, [("blur_test", rows)], ["blur_test_curves.png"])


# ------------------------------------------------------------ explanation uncertainty
def explanation_uncertainty(job: Job, n: int, posteriors: list[str],
                            methods: list[str]) -> Section:
    """papers/004 on the first ``n`` test images: every posterior × explanation method."""
    settings, out = job.settings, job.out
    where = settings.data
    loaded = {}
    for kind in posteriors:
        if kind == "ensemble":
            loaded[kind] = job.posterior
        else:
            loaded[kind], _ = load_sampled(settings, kind)
    split = data.load(where.dataset, where.split, root=where.data_dir)
    images, labels = split.images[:n], split.labels[:n]
    rows, per_class, maps = run_explanation_uncertainty(
        images, labels, loaded, methods, folder=out, seed=settings.method.seed,
        device=settings.device, data_key={"split": where.split, "n": n}, log=log)
    out.write_table("explanation_uncertainty", rows)
    out.write_table("explanation_uncertainty_per_class", per_class)
    shown = slice(0, min(6, n))
    method = methods[0]
    grid = {f"{kind} {stat}": maps[(kind, method)][k][shown]
            for kind in posteriors for k, stat in enumerate(("mean", "std", "CV"))}
    out.save_figure("explanation_uncertainty_maps.png",
                    viz.maps_grid(images[shown], grid,
                                  titles=[f"label {v}" for v in labels[shown].tolist()]))
    text = (f"The first {n} {where.dataset} {where.split} images; each posterior sample "
            f"explains its own predicted class ({settings.posterior.samples} samples for the "
            "single-network posteriors, trained on "
            f"{settings.posterior.posterior_train or 'all the'} training images). Mean CV: the "
            "coefficient of variation of the explanation over the samples, averaged over "
            "pixels and images (lower: the samples agree). Deletion / insertion AUC of "
            "the mean prediction's class probability, pixels in the order of the mean or "
            "the std map (lower deletion, higher insertion: a more faithful order). "
            f"Figure: {method}.")
    print_table(f"Explanation uncertainty (papers/004): {text}", rows)
    print_table("Mean CV per true class", per_class)
    return Section("Explanation uncertainty", text,
                   [("explanation uncertainty", rows), ("mean CV per class", per_class)],
                   ["explanation_uncertainty_maps.png"])


def write_report(job: Job, sections: list[Section], name: str = "report.md",
                 arguments: dict | None = None) -> Path:
    """``name`` (``report.md`` for the main job, ``report-<benchmark>.md`` for one
    benchmark, so that benchmarks sharing a folder keep their reports): the ensemble,
    then every section's tables and figures; and beside it ``run[-<benchmark>].json``,
    the command, its ``arguments`` (default: the job's settings), the ensemble and the
    seconds."""
    info = job.info
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    lines = ["# uattr report", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             f"Ensemble: {len(info['member_accuracy'])} members on "
             f"{job.settings.data.dataset}, test accuracy {info['ensemble_accuracy']:.4f} "
             f"(members {accs}).", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        for caption, rows in section.tables:
            lines += [f"**{caption}**", "",
                      markdown_table([{k: v for k, v in r.items() if k != "n"} for r in rows]),
                      ""]
        lines += [f"![{name}]({name})" for name in section.figures] + [""]
    lines.append(f"Seconds for this run: {time.perf_counter() - job.start:.0f}.")
    path = job.out.write_text(name, "\n".join(lines) + "\n")
    settings = dataclasses.asdict(job.settings) if arguments is None else arguments
    record = name.replace("report", "run").removesuffix(".md") + ".json"  # run-<bench>.json
    job.out.write_json(record, {"command": " ".join(sys.argv), **settings,
                                    "ensemble": info,
                                    "seconds": time.perf_counter() - job.start})
    return path
