"""Faithfulness: does changing only the pixels a map points at remove the uncertainty?
(papers/000 §4.2 and Table 2, papers/001 A.3; DESIGN §4.)

On the N test images of highest uncertainty, every method's pixel-level map picks its
top q% pixels, and the image is refined there only:

- **gradient refinement** (q = 0.5%, 1%): Adam on those pixels alone, learning rate 0.2,
  at most 500 steps, an image stops when its uncertainty stops falling;
- **blurring** (q = 2%, 5%): those pixels are replaced by the blurred image.

The score is the uncertainty reduction rate ``URR = 1 - U(x̃) / U(x)``, averaged over
images (higher is better); the mask, the blur and the URR are in :mod:`uattr.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ... import viz
from ...metrics import blur_top_pixels, top_pixel_mask, urr
from ...uq import uncertainty
from ..commands import BenchCommand, chosen_methods
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
from ..registry import PIXEL_METHODS, family_means, pixel_methods
from ..runs import RunFolder
from ..spread import paired_differences_by_column
from .paper_numbers import FAITHFULNESS_C10, beside

__all__ = [
    "BLUR_FRACTIONS",
    "COMMAND",
    "GRADIENT_FRACTIONS",
    "RefinementResult",
    "benchmark",
    "refine_by_gradient",
    "run_faithfulness",
    "run_for_job",
]

GRADIENT_FRACTIONS = (0.005, 0.01)
BLUR_FRACTIONS = (0.02, 0.05)

UncertaintyFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class RefinementResult:
    """Refined images ``[B, C, H, W]`` (the step of lowest uncertainty), their uncertainty
    before and after ``[B]``, and the steps each image took ``[B]``."""

    images: Tensor
    u_before: Tensor
    u_after: Tensor
    steps: Tensor


def refine_by_gradient(
    uncertainty_of: UncertaintyFn,
    x: Tensor,
    mask: Tensor,
    *,
    lr: float = 0.2,
    max_steps: int = 500,
    clamp: bool = False,
) -> RefinementResult:
    """Minimise ``U`` by Adam on the pixels ``mask [B, H, W]`` marks, all channels; an
    image stops at the first step that does not lower its uncertainty, and keeps its best
    step (papers/001 A.3).

    The papers' update ``x ← x - η · M · ∂U/∂x`` does not keep pixels in range, and
    neither does the default. With ``clamp=True`` the refined image stays in [0, 1]; on
    MNIST's validation split that caps the URR of Grad's top 0.5% / 1% pixels at about
    0.20 / 0.32 (unclamped: 0.73 / 0.87, the magnitude of papers/000 Table 2), because the
    few pixels saturate at 0 or 1 within ~5 steps.

    One forward and one backward pass per step, over the images still running. Adam's
    update is elementwise, so the images do not influence each other.
    """
    if mask.shape != (x.shape[0], *x.shape[-2:]) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor [B, H, W] = "
                         f"{[x.shape[0], *x.shape[-2:]]}, got {mask.dtype} {tuple(mask.shape)}")
    x = x.detach()
    where = mask[:, None].to(x.dtype)  # [B, 1, H, W]
    delta = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    steps = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    u_before = best_u = None
    best_x = x.clone()
    for step in range(max_steps + 1):
        # only the images still running are evaluated: a stopped image's result is kept,
        # and Adam's update is elementwise, so the others do not notice
        rows = active.nonzero().squeeze(1)  # [A]
        candidate = x[rows] + where[rows] * delta[rows]  # [A, C, H, W]
        if clamp:
            candidate = candidate.clamp(0, 1)
        u = uncertainty_of(candidate)  # [A]; the forward of step t scores step t - 1
        with torch.no_grad():
            if step == 0:
                u_before, best_u = u.detach().clone(), u.detach().clone()
            else:
                better = u < best_u[rows]  # [A]
                improved = rows[better]
                best_u[improved] = u[better]
                best_x[improved] = candidate[better]
                steps[rows] += 1
                active[rows[~better]] = False
        if step == max_steps or not active.any():
            break
        # the gradient of delta alone: the networks' weights need none (a third of the work)
        (delta.grad,) = torch.autograd.grad(u.sum(), delta)
        optimizer.step()
    return RefinementResult(best_x, u_before, best_u, steps)


def _column(kind: str, fraction: float) -> str:
    return f"{kind} {100 * fraction:g}%"


def run_faithfulness(
    images: Tensor,
    methods: list[MethodSpec],
    uncertainty_of: UncertaintyFn,
    *,
    folder: RunFolder | None = None,
    gradient_fractions: tuple[float, ...] = GRADIENT_FRACTIONS,
    blur_fractions: tuple[float, ...] = BLUR_FRACTIONS,
    lr: float = 0.2,
    max_steps: int = 500,
    clamp: bool = False,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    data_key: dict | None = None,
    log: Callable[[str], None] = print,
    parallel: Parallel | None = None,
    per_image: dict[str, dict[str, list[float]]] | None = None,
) -> tuple[list[dict], dict[str, Tensor]]:
    """Score every method's pixel-level maps of ``images`` by both refinements; returns
    ``(rows, maps by method)``. ``uncertainty_of`` is the ``U`` being refined (total in
    the papers). With a ``folder``, each method is a cell, reused on a rerun. A
    ``per_image`` dict receives each method's URR of every image in every column
    (``{method: {column: [N]}}``; none for cells stored before they were kept)."""
    # how the refinements work is part of the key: a changed rule must not reuse cells
    # made by the old one
    benchmark_key = {"gradient": list(gradient_fractions), "blur": list(blur_fractions),
                     "refinement": {"lr": lr, "max_steps": max_steps, "clamp": clamp,
                                    "stop": "first step that does not lower U"},
                     "blurred": "gaussian 5x5, sigma 2",
                     "data": data_key or {"n": len(images)}}
    cells = []
    for spec in methods:

        def compute(spec: MethodSpec = spec) -> tuple[dict, np.ndarray]:
            done = attribute_counted(spec, images, batch_size, device, log=log)
            row: dict = {"method": spec.name}
            each: dict[str, list[float]] = {}  # column: URR of every image
            gradient_scores, blur_scores = [], []
            bar = tqdm(total=len(gradient_fractions) * len(images),
                       desc=f"{spec.name}: refining", unit="image", leave=False,
                       disable=len(images) <= batch_size)
            for fraction in gradient_fractions:
                scores = []
                for i in range(0, len(images), batch_size):
                    x = images[i : i + batch_size].to(device)
                    m = done.maps[i : i + batch_size].to(device)
                    result = refine_by_gradient(uncertainty_of, x, top_pixel_mask(m, fraction),
                                                lr=lr, max_steps=max_steps, clamp=clamp)
                    scores.append(urr(result.u_before, result.u_after).cpu())
                    bar.update(len(x))
                row[_column("gradient", fraction)] = float(torch.cat(scores).mean())
                each[_column("gradient", fraction)] = torch.cat(scores).tolist()
                gradient_scores.append(row[_column("gradient", fraction)])
            bar.close()
            for fraction in blur_fractions:
                scores = []
                with torch.no_grad():
                    for i in range(0, len(images), batch_size):
                        x = images[i : i + batch_size].to(device)
                        m = done.maps[i : i + batch_size].to(device)
                        after = uncertainty_of(blur_top_pixels(x, m, fraction))
                        scores.append(urr(uncertainty_of(x), after).cpu())
                row[_column("blur", fraction)] = float(torch.cat(scores).mean())
                each[_column("blur", fraction)] = torch.cat(scores).tolist()
                blur_scores.append(row[_column("blur", fraction)])
            row["gradient avg"] = sum(gradient_scores) / max(1, len(gradient_scores))
            row["blur avg"] = sum(blur_scores) / max(1, len(blur_scores))
            row["s/image"] = done.seconds
            row["forward/image"] = done.forward
            row["n"] = len(images)
            row["per image"] = each
            return row, done.maps.numpy()

        cells.append(Cell(f"faithfulness-{spec.name}", {**method_key(spec), **benchmark_key},
                          compute, spec.name))
    rows, maps = method_rows(methods, cached_cells(folder, cells, log, parallel), per_image)
    return rows, {spec.name: torch.from_numpy(m) for spec, m in zip(methods, maps, strict=True)}


# ------------------------------------------------------------ the job of uattr bench/run
def run_for_job(job: Job, images: Tensor, indices: Tensor, specs: list[MethodSpec],
                per_image: dict | None = None) -> tuple[list[dict], dict[str, Tensor]]:
    """:func:`run_faithfulness` of the job's split's images ``indices`` on the uncertainty
    its methods explain, into its run folder, with its batch size and device."""
    settings = job.settings
    kind = settings.method.uncertainty
    return run_faithfulness(
        images, specs, lambda x: uncertainty(job.posterior(x), kind), folder=job.out,
        batch_size=settings.batch_size, device=settings.device,
        data_key={"split": settings.data.split, "indices": indices.tolist()}, log=log,
        parallel=job.parallel, per_image=per_image)


def write_per_image(out: RunFolder, images: Tensor, indices: Tensor, u: Tensor,
                    maps: dict[str, Tensor], per_image: dict[str, dict]) -> None:
    """``faithfulness_per_image.json`` (every row's URR of every image in every column),
    ``faithfulness_pairs.json`` (every pair of rows' paired difference in each column,
    :func:`~uattr.experiments.spread.paired_differences`) and ``faithfulness_slice.npz``
    (the images :func:`~.common.slice_size` keeps, U, and every row's maps and URRs on
    them), when every row has its per-image values."""
    if set(per_image) != set(maps):
        log("faithfulness: cells stored before per-image values were kept; no slice written")
        return
    out.write_json("faithfulness_per_image.json",
                   {"indices": indices.tolist(), "URR": per_image})
    out.write_json("faithfulness_pairs.json", paired_differences_by_column(per_image, "URR "))
    k = slice_size(len(images))
    arrays = {"complete": np.array(k == len(images)), "draws_per_image": np.array(True),
              "images": images[:k].numpy(), "indices": indices[:k].numpy(),
              "u": u[:k].numpy(), "rows": np.array(list(maps)),
              "columns": np.array(list(next(iter(per_image.values()))))}
    for i, (name, m) in enumerate(maps.items()):
        arrays[f"map{i}"] = m[:k].numpy()
        arrays[f"urr{i}"] = np.array([per_image[name][c][:k] for c in arrays["columns"]])
    out.write_npz("faithfulness_slice.npz", arrays)


def benchmark(job: Job, n: int, names: list[str] | None = None) -> Section:
    """papers/000 Table 2: refinement of each pixel-level map's top pixels, URR."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    images, indices, u = evaluated_images(job, n, method.uncertainty)
    methods = choose_methods(pixel_methods(job.posterior, method, job.vae_for(names),
                                           job.amortized_for(names)),
                             names, "faithfulness")
    per_image: dict[str, dict] = {}
    rows, maps = run_for_job(job, images, indices, methods, per_image)
    write_per_image(out, images, indices, u, maps, per_image)
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


COMMAND = BenchCommand(
    "faithfulness", "URR of refining each pixel-level map's top pixels (papers/000 Table 2)",
    lambda job, args: benchmark(job, args.n, chosen_methods(args)),
    methods=lambda args: PIXEL_METHODS, on_ray=True)
