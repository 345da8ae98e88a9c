"""The blurring test of papers/002 §5.2.1 (Table 1, eq. 13; DESIGN §4).

Pixels are blurred one after another in decreasing order of attribution, up to a budget
of q% of the image (q = 2, 5). With ``x_t`` the image whose top t pixels are blurred,

    URR_x(t) = max_{i ≤ t} 1 - U(x_i) / U(x)                       # eq. 13, one image

MURR is ``URR_x(T)`` at the full budget (higher is better) and AUC-URR the area under the
remaining-uncertainty curve ``1 - URR_x(t)`` over the budget normalised to [0, 1] (lower
is better); both are reported as medians over images, since a blurred image can leave
the data distribution. papers/002 explains the epistemic uncertainty here; any kind works.
The curves and their scores are in :mod:`uattr.metrics`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ... import viz
from ...metrics import BLUR_CURVE_STEPS, blur_curves, curve_scores
from ...uq import uncertainty
from ..commands import BenchCommand, chosen_methods, option
from ..common import (
    Cell,
    MethodSpec,
    Parallel,
    attribute_counted,
    cached_cells,
    method_key,
    method_rows,
    slice_size,
)
from ..job import Job, Section, choose_methods, evaluated_images, log, print_table
from ..registry import PIXEL_METHODS, pixel_methods
from ..runs import RunFolder
from ..spread import paired_differences_by_column
from .paper_numbers import BLUR_TEST_MNIST, beside

__all__ = ["BLUR_TEST_BUDGETS", "COMMAND", "benchmark", "run_blur_test"]

BLUR_TEST_BUDGETS = (0.02, 0.05)

UncertaintyFn = Callable[[Tensor], Tensor]


def run_blur_test(
    images: Tensor,
    methods: list[MethodSpec],
    uncertainty_of: UncertaintyFn,
    *,
    folder: RunFolder | None = None,
    budgets: tuple[float, ...] = BLUR_TEST_BUDGETS,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    data_key: dict | None = None,
    log: Callable[[str], None] = print,
    parallel: Parallel | None = None,
    per_image: dict[str, dict[str, list[float]]] | None = None,
) -> tuple[list[dict], dict[str, tuple[Tensor, Tensor]]]:
    """MURR and AUC-URR (medians over images) of every method at every budget; returns
    ``(rows, {method: (fractions, median curve)})`` at the largest budget, for plotting.
    With a ``folder``, each method is a cell, reused on a rerun. A ``per_image`` dict
    receives each method's MURR and AUC-URR of every image (``{method: {column: [N]}}``;
    none for cells stored before they were kept)."""
    largest = max(budgets)
    benchmark_key = {"budgets": list(budgets), "steps": BLUR_CURVE_STEPS,
                     "blurred": "gaussian 5x5, sigma 2", "data": data_key or {"n": len(images)}}
    cells = []
    for spec in methods:

        def compute(spec: MethodSpec = spec) -> tuple[dict, np.ndarray]:
            done = attribute_counted(spec, images, batch_size, device, log=log)
            row = {"method": spec.name}
            each: dict[str, list[float]] = {}  # column: the value of every image
            for budget in budgets:
                parts = []
                for i in range(0, len(images), batch_size):
                    x = images[i : i + batch_size].to(device)
                    fractions, curves = blur_curves(
                        uncertainty_of, x, done.maps[i : i + batch_size].to(device), budget)
                    parts.append(curves.cpu())
                curves = torch.cat(parts)
                murr, auc = curve_scores(fractions.cpu(), curves)
                row[f"MURR {100 * budget:g}%"] = float(murr.median())
                row[f"AUC-URR {100 * budget:g}%"] = float(auc.median())
                each[f"MURR {100 * budget:g}%"] = murr.tolist()
                each[f"AUC-URR {100 * budget:g}%"] = auc.tolist()
                if budget == largest:
                    median_curve = torch.stack([fractions.cpu(), curves.median(0).values])
            row["s/image"] = done.seconds
            row["forward/image"] = done.forward
            row["n"] = len(images)
            row["per image"] = each
            return row, median_curve.numpy()

        cells.append(Cell(f"blur-test-{spec.name}", {**method_key(spec), **benchmark_key},
                          compute, spec.name))
    rows, curves = method_rows(methods, cached_cells(folder, cells, log, parallel), per_image)
    medians = {spec.name: (torch.as_tensor(curve[0]), torch.as_tensor(curve[1]))
               for spec, curve in zip(methods, curves, strict=True)}
    return rows, medians


def write_per_image(out: RunFolder, images: Tensor, indices: Tensor, kind: str,
                    per_image: dict[str, dict], names: list[str]) -> None:
    """``blur_test_per_image.json`` (every row's MURR and AUC-URR of every image),
    ``blur_test_pairs.json`` (every pair of rows' paired difference in each column,
    :func:`~uattr.experiments.spread.paired_differences`: the table reports medians, a
    lead is judged on the images' paired differences) and ``blur_test_slice.npz`` (the
    images :func:`~.common.slice_size` keeps and every row's values on them), when every
    row has its per-image values."""
    if set(per_image) != set(names):
        log("blur test: cells stored before per-image values were kept; no slice written")
        return
    out.write_json("blur_test_per_image.json", {"indices": indices.tolist(), "kind": kind,
                                                "values": per_image})
    columns = list(per_image[names[0]])
    out.write_json("blur_test_pairs.json",
                   paired_differences_by_column({name: per_image[name] for name in names}))
    k = slice_size(len(images))
    arrays = {"complete": np.array(k == len(images)), "draws_per_image": np.array(True),
              "images": images[:k].numpy(), "indices": indices[:k].numpy(),
              "rows": np.array(names), "columns": np.array(columns), "kind": np.array(kind)}
    for i, name in enumerate(names):
        arrays[f"values{i}"] = np.array([per_image[name][c][:k] for c in columns])
    out.write_npz("blur_test_slice.npz", arrays)


# ------------------------------------------------------------ the job of uattr bench/run
def benchmark(job: Job, n: int, kind: str, names: list[str] | None = None) -> Section:
    """papers/002 Table 1: URR curves by blurring in attribution order, MURR, AUC-URR."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    images, indices, _ = evaluated_images(job, n, kind)
    explained = dataclasses.replace(method, uncertainty=kind)
    methods = choose_methods(pixel_methods(job.posterior, explained, job.vae_for(names),
                                           job.amortized_for(names, explained)),
                             names, "the blurring test")
    per_image: dict[str, dict] = {}
    rows, curves = run_blur_test(
        images, methods, lambda x: uncertainty(job.posterior(x), kind), folder=out,
        batch_size=settings.batch_size, device=settings.device,
        data_key={"split": where.split, "kind": kind, "indices": indices.tolist()}, log=log,
        parallel=job.parallel, per_image=per_image)
    write_per_image(out, images, indices, kind, per_image, [spec.name for spec in methods])
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


# also an option of uattr run, whose blurring test it sets
BLUR_KIND = option("--blur-uncertainty", default="epistemic",
                   choices=("total", "aleatoric", "epistemic"),
                   help="uncertainty explained in the blurring test (default epistemic, as "
                        "papers/002)")

COMMAND = BenchCommand(
    "blur-test", "URR curves, MURR and AUC-URR of blurring in attribution order "
    "(papers/002 Table 1)",
    lambda job, args: benchmark(job, args.n, args.blur_uncertainty, chosen_methods(args)),
    options=(BLUR_KIND,), methods=lambda args: PIXEL_METHODS, on_ray=True)
