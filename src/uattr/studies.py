"""Studies of the optimization-based method: ablation, sensitivity, convergence.

- **Ablation** (papers/000 Table 3 on detection, papers/001 Table 7 on faithfulness): the
  relaxed mask of Eq. (3) per pixel with a fixed blur, then + segments, + the learnable
  perturbation (LP), + the Gumbel-sigmoid.
- **Sensitivity** (papers/000 Table 4, papers/001 Table 8): detection for λ ∈ {2, 3} and
  τ ∈ {0.07, 0.1, 0.15} (papers/000 §4.3 calls τ in 0.05-0.2 good binary approximations).
- **Convergence** (papers/001 Table 9): Adam steps until the early stop, per pixel and on
  segments.

Each study reuses the benchmark machinery, so its cells are stored and reused like the
tables' cells.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .benchmarks.detection import MethodSpec, run_detection
from .benchmarks.faithfulness import most_uncertain, run_faithfulness
from .data import load
from .jobs import Job, Section, _print_table, detection_images, log
from .registry import detection_methods, optimization, segmenter
from .uq import uncertainty

__all__ = ["LAMBDAS", "TAUS", "ablation", "convergence", "sensitivity"]

LAMBDAS = (2.0, 3.0)
TAUS = (0.07, 0.1, 0.15)

# (row, segments?, learnable perturbation?, Gumbel-sigmoid?) in the order of the papers
_DETECTION_ABLATION = (
    ("Eq. (3) per pixel", False, False, False),
    ("Eq. (3) + segments", True, False, False),
    ("Eq. (3) + segments + LP", True, True, False),
    ("Eq. (3) + segments + LP + Gumbel", True, True, True),
)
_FAITHFULNESS_ABLATION = (
    ("Eq. (3) per pixel", False, False, False),
    ("+ LP", False, True, False),
    ("+ Gumbel", False, False, True),
    ("+ LP + Gumbel", False, True, True),
)


def _variant(job: Job, name: str, segments: bool, learn_blur: bool, gumbel: bool,
             **overrides) -> MethodSpec:
    """The optimization-based method with some components or settings changed.

    The complete method with the command's own λ and τ is the tables' row itself (same
    name, same key), so a study reuses the cells of ``bench detection|faithfulness`` in
    the same folder instead of computing them again; its rows are relabelled by
    :func:`_relabel`."""
    args = job.args
    settings = {"lam": args.lam, "tau": args.tau}
    if learn_blur and gumbel and all(settings.get(k) == v for k, v in overrides.items()):
        table_row = "optimization (slic)" if segments else "optimization (pixels)"
        spec = detection_methods(job.posterior, args)[table_row]
        return MethodSpec(spec.name, spec.method, spec.segmenter, spec.config,
                          label=name)
    config = {"n_segments": args.n_segments, "compactness": args.compactness} if segments \
        else None
    return MethodSpec(name, optimization(job.posterior, args, learn_blur=learn_blur,
                                         gumbel=gumbel, **overrides),
                      segmenter("slic", args) if segments else None, config)


def _relabel(rows: list[dict], specs: list[MethodSpec]) -> list[dict]:
    """The study's own row names in place of the tables' names of shared cells."""
    labels = {spec.name: spec.label or spec.name for spec in specs}
    return [{**row, "method": labels[row["method"]]} for row in rows]


def ablation(job: Job, n: int) -> Section:
    """Each component's contribution, on detection and on faithfulness."""
    args, out = job.args, job.out
    detection_set = detection_images(job, n)
    specs = [_variant(job, *row) for row in _DETECTION_ABLATION]
    detection_rows, _ = run_detection(detection_set, specs, folder=out,
                                      batch_size=args.batch_size, device=args.device, log=log)
    detection_rows = [{k: row[k] for k in ("method", "IoU", "ADA", "s/image")}
                      for row in _relabel(detection_rows, specs)]
    split = load(args.dataset, args.split, root=args.data_dir)
    images, indices, _ = most_uncertain(job.posterior, split, n, kind=args.uncertainty,
                                        device=args.device)
    specs = [_variant(job, *row) for row in _FAITHFULNESS_ABLATION]
    faithful_rows, _ = run_faithfulness(
        images, specs, lambda x: uncertainty(job.posterior(x), args.uncertainty), folder=out,
        batch_size=args.batch_size, device=args.device,
        data_key={"split": args.split, "indices": indices.tolist()}, log=log)
    faithful_rows = [{k: v for k, v in row.items() if k not in ("forward/image", "n")}
                     for row in _relabel(faithful_rows, specs)]
    out.write_table("ablation_detection", detection_rows)
    out.write_table("ablation_faithfulness", faithful_rows)
    text = (f"The optimization-based method with its components added one by one "
            f"(papers/000 Table 3, papers/001 Table 7), N = {n}, {args.dataset} "
            f"{args.split}. Eq. (3): the relaxed mask σ(v) with a fixed blur of σ0; LP: the "
            "learnable blur width; Gumbel: the Gumbel-sigmoid mask.")
    _print_table(f"Ablation on detection: {text}", detection_rows)
    _print_table("Ablation on faithfulness (pixel level)", faithful_rows)
    return Section("Ablation", text, [("ablation on detection", detection_rows),
                                      ("ablation on faithfulness", faithful_rows)])


def sensitivity(job: Job, n: int) -> Section:
    """Detection with slic segments over the grid λ × τ."""
    args, out = job.args, job.out
    detection_set = detection_images(job, n)
    specs = [_variant(job, f"λ = {lam:g}, τ = {tau:g}", True, True, True, lam=lam, tau=tau)
             for lam in LAMBDAS for tau in TAUS]
    rows, _ = run_detection(detection_set, specs, folder=out, batch_size=args.batch_size,
                            device=args.device, log=log)
    rows = [{k: row[k] for k in ("method", "IoU", "ADA", "s/image")}
            for row in _relabel(rows, specs)]
    out.write_table("sensitivity", rows)
    text = (f"Detection with slic segments for λ ∈ {list(LAMBDAS)} and τ ∈ {list(TAUS)} "
            f"(papers/000 Table 4), N = {n}, {args.dataset} {args.split}.")
    _print_table(f"Sensitivity: {text}", rows)
    return Section("Sensitivity to λ and τ", text, [("sensitivity", rows)])


def convergence(job: Job, n: int) -> Section:
    """Adam steps until the early stop on the detection images, per pixel and on slic
    segments (papers/001 Table 9)."""
    args, out = job.args, job.out
    detection_set = detection_images(job, n)
    rows = []
    for mode in ("slic", "pixels"):
        method = optimization(job.posterior, args)
        config = {"mode": mode, "repr": repr(method), "n_segments": args.n_segments,
                  "compactness": args.compactness, "data": detection_set.indices.tolist()}
        cached = out.load_cell(f"convergence-{mode}", config)
        if cached is not None:
            row, _ = cached
            log(f"convergence ({mode}): loaded from {out.path / 'cells'}")
        else:
            log(f"convergence ({mode}): attributing {n} images")
            start, steps = time.perf_counter(), []
            make_segments = segmenter(mode, args)
            for i in range(0, n, args.batch_size):
                x = detection_set.images[i : i + args.batch_size].to(args.device)
                segments = make_segments(x) if make_segments is not None else None
                steps.append(method.attribute_with_diagnostics(x, segments=segments)
                             .steps.cpu())
            steps = torch.cat(steps).double()
            row = {"mode": mode, "mean steps": float(steps.mean()),
                   "median steps": float(steps.median()),
                   "share at the limit": float((steps >= method.max_steps).double().mean()),
                   "s/image": (time.perf_counter() - start) / n, "n": n}
            out.save_cell(f"convergence-{mode}", config, row, steps.numpy().astype(np.int32))
        rows.append(row)
    out.write_table("convergence", rows)
    limit = optimization(job.posterior, args).max_steps
    text = (f"Adam steps until the early stop (at most {limit}), N = {n} detection "
            f"images of {args.dataset} {args.split} (papers/001 Table 9).")
    _print_table(f"Convergence: {text}", rows)
    return Section("Convergence", text, [("convergence", rows)])
