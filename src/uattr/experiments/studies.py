"""Studies of the optimization-based method: ablation, sensitivity, convergence.

- **Ablation** (papers/000 Table 3 on detection, papers/001 Table 7 on faithfulness): the
  relaxed mask of Eq. (3) per pixel with a fixed blur, then + segments, + the learnable
  perturbation (LP), + the Gumbel-sigmoid.
- **Sensitivity** (papers/000 Table 4, papers/001 Table 8): detection over the paper's
  grid λ ∈ {2, 2.5, 3} × τ ∈ {0.07, 0.1, 0.15} (papers/000 §4.3 calls τ in 0.05-0.2 good
  binary approximations).
- **Convergence** (papers/001 Table 9): Adam steps until the early stop, per pixel and on
  segments, without the Gumbel-sigmoid as the paper measures them and for the full
  method, with a figure of the optimisation over steps.
- **Stopping**: the mask and movement rules and the first-order warm start against the
  loss rule.

Each study reuses the benchmark machinery, so its cells are stored and reused like the
tables' cells.
"""

from __future__ import annotations

import dataclasses

from .. import viz
from ..attribution.base import UncertaintyAttribution
from ..metrics import box_iou, find_box
from .amortized import amortized_available
from .benchmarks import detection, faithfulness
from .benchmarks.detection import detection_images
from .benchmarks.paper_numbers import (
    ABLATION_DETECTION_C10,
    ABLATION_FAITHFULNESS_C100,
    CONVERGENCE,
    SENSITIVITY_C10,
    beside,
)
from .commands import BenchCommand, option
from .common import MethodSpec
from .job import Job, Section, evaluated_images, log, print_table
from .registry import (
    ORACLE,
    STARTED,
    detection_methods,
    optimization,
    per_pixel_optimization,
    segmenter,
)
from .spread import paired_differences, paired_differences_by_column

__all__ = ["ABLATION_PARTS", "COMMANDS", "LAMBDAS", "TAUS", "ablation", "convergence",
           "sensitivity", "stopping"]

LAMBDAS = (2.0, 2.5, 3.0)
TAUS = (0.07, 0.1, 0.15)

# (row, segments?, learnable perturbation?, Gumbel-sigmoid?, oracle?) in the order of the
# papers, then the segment rows again on slic segments plus the true patch: upper bounds
# that show what each component does when a segment isolates the cause (as SAM's do)
_DETECTION_ABLATION = (
    ("Eq. (3) per pixel", False, False, False, False),
    ("Eq. (3) + segments", True, False, False, False),
    ("Eq. (3) + segments + LP", True, True, False, False),
    ("Eq. (3) + segments + LP + Gumbel", True, True, True, False),
    (f"{ORACLE}Eq. (3) + segments", True, False, False, True),
    (f"{ORACLE}Eq. (3) + segments + LP", True, True, False, True),
    (f"{ORACLE}Eq. (3) + segments + LP + Gumbel", True, True, True, True),
)
_FAITHFULNESS_ABLATION = (
    ("Eq. (3) per pixel", False, False, False),
    ("+ LP", False, True, False),
    ("+ Gumbel", False, False, True),
    ("+ LP + Gumbel", False, True, True),
)


def _variant(job: Job, name: str, segments: bool, learn_blur: bool, gumbel: bool,
             oracle: bool = False, **overrides) -> MethodSpec:
    """The optimization-based method with some components or settings changed (``oracle``:
    on slic segments plus the true patch).

    The complete method with the command's own λ, τ, stop and start is the tables' row
    itself (same
    name, same key), so a study reuses the cells of ``bench detection|faithfulness`` in
    the same folder instead of computing them again; its rows are relabelled by
    :func:`_relabel`."""
    method = job.settings.method
    network = job.amortized_for(list(STARTED))  # the method's start, where it is the explainer
    chosen = {"lam": method.lam, "tau": method.tau, "stop": method.stop, "init": method.init}
    if learn_blur and gumbel and all(chosen.get(k) == v for k, v in overrides.items()):
        table_row = ("optimization (slic)" if segments else "optimization (pixels)")
        if oracle:
            table_row = f"{ORACLE}optimization (slic + true patch)"
        spec = detection_methods(job.posterior, method, amortized=network)[table_row]
        return dataclasses.replace(spec, label=name)
    config = {"n_segments": method.n_segments, "compactness": method.compactness} if segments \
        else None
    build = optimization if segments else per_pixel_optimization  # per pixel: its mask rule
    return MethodSpec(name, build(job.posterior, method, network, learn_blur=learn_blur,
                                  gumbel=gumbel, **overrides),
                      segmenter("slic", method) if segments else None, config, oracle=oracle)


def _relabel(rows: list[dict], specs: list[MethodSpec]) -> list[dict]:
    """The study's own row names in place of the tables' names of shared cells."""
    labels = {spec.name: spec.label or spec.name for spec in specs}
    return [{**row, "method": labels[row["method"]]} for row in rows]


ABLATION_PARTS = ("detection", "faithfulness")


def ablation(job: Job, n: int, parts: tuple[str, ...] = ABLATION_PARTS) -> Section:
    """Each component's contribution, on detection and on faithfulness (``parts``: either
    half alone, for example to re-measure one half without the other's hours)."""
    unknown = sorted(set(parts) - set(ABLATION_PARTS))
    if unknown or not parts:
        raise ValueError(f"parts must be some of {ABLATION_PARTS}, got {parts}")
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    text = (f"The optimization-based method with its components added one by one "
            f"(papers/000 Table 3, papers/001 Table 7), N = {n}, {where.dataset} "
            f"{where.split}. Eq. (3): the relaxed mask σ(v) with a fixed blur of σ0; LP: the "
            "learnable blur width; Gumbel: the Gumbel-sigmoid mask. Oracle rows: slic "
            "segments plus the true patch as one more segment, an upper bound that uses "
            "the answer. The paper's columns are C10 with SAM segments (detection) and "
            "C100 (faithfulness).")
    tables = []
    if "detection" in parts:
        detection_set = detection_images(job, n)
        specs = [_variant(job, *row) for row in _DETECTION_ABLATION]
        detection_rows, maps = detection.run_for_job(job, detection_set, specs)
        detection_rows = [{k: row[k] for k in ("method", "IoU", "ADA", "mean steps",
                                               "s/image")}
                          for row in _relabel(detection_rows, specs)]
        _write_pairs(job, "ablation_detection", detection_set, maps, specs)
        detection_rows = beside(detection_rows, ABLATION_DETECTION_C10, ("IoU", "ADA"))
        out.write_table("ablation_detection", detection_rows)
        print_table(f"Ablation on detection: {text}", detection_rows)
        tables.append(("ablation on detection", detection_rows))
    if "faithfulness" in parts:
        images, indices, _ = evaluated_images(job, n, method.uncertainty)
        specs = [_variant(job, *row) for row in _FAITHFULNESS_ABLATION]
        per_image: dict[str, dict] = {}
        faithful_rows, _ = faithfulness.run_for_job(job, images, indices, specs, per_image)
        _write_faithfulness_pairs(job, "ablation_faithfulness", indices, per_image, specs)
        faithful_rows = [{k: v for k, v in row.items() if k not in ("forward/image", "n")}
                         for row in _relabel(faithful_rows, specs)]
        faithful_rows = beside(faithful_rows, ABLATION_FAITHFULNESS_C100,
                               ("gradient 0.5%", "gradient 1%", "blur 2%", "blur 5%"))
        out.write_table("ablation_faithfulness", faithful_rows)
        print_table("Ablation on faithfulness (pixel level)", faithful_rows)
        tables.append(("ablation on faithfulness", faithful_rows))
    return Section("Ablation", text, tables)


def _write_pairs(job: Job, stem: str, detection_set, maps: dict,
                 specs: list[MethodSpec]) -> dict[tuple[str, str], dict]:
    """Beside a study's detection table ``stem``: every row's IoU on every image
    (``<stem>_per_image.json``) and every pair of rows' paired difference
    (``<stem>_pairs.json``), under the study's own row names; returns the pairs by
    ``(row, against)``."""
    labels = {spec.name: spec.label or spec.name for spec in specs}
    ious = {labels[name]: box_iou(find_box(m, detection_set.patch_size),
                                  detection_set.boxes).double().numpy()
            for name, m in maps.items()}
    job.out.write_json(f"{stem}_per_image.json", {
        "indices": detection_set.indices.tolist(),
        "IoU": {name: values.tolist() for name, values in ious.items()}})
    pairs = paired_differences(ious)
    job.out.write_json(f"{stem}_pairs.json", pairs)
    return {(pair["method"], pair["against"]): pair for pair in pairs}


def _write_faithfulness_pairs(job: Job, stem: str, indices, per_image: dict[str, dict],
                              specs: list[MethodSpec]) -> None:
    """Beside a study's faithfulness table ``stem``: every row's URR of every image in every
    column (``<stem>_per_image.json``) and every pair of rows' paired difference in each
    column (``<stem>_pairs.json``), under the study's own row names. Rows whose cells were
    stored before per-image values were kept have none and are left out of both."""
    labels = {spec.name: spec.label or spec.name for spec in specs}
    kept = {labels[name]: values for name, values in per_image.items()}
    if not kept:
        return
    job.out.write_json(f"{stem}_per_image.json", {"indices": indices.tolist(), "URR": kept})
    job.out.write_json(f"{stem}_pairs.json", paired_differences_by_column(kept, "URR "))


def sensitivity(job: Job, n: int) -> Section:
    """Detection with slic segments over the grid λ × τ."""
    out, where = job.out, job.settings.data
    detection_set = detection_images(job, n)
    specs = [_variant(job, f"λ = {lam:g}, τ = {tau:g}", True, True, True, lam=lam, tau=tau)
             for lam in LAMBDAS for tau in TAUS]
    rows, maps = detection.run_for_job(job, detection_set, specs)
    _write_pairs(job, "sensitivity", detection_set, maps, specs)
    rows = [{k: row[k] for k in ("method", "IoU", "ADA", "s/image")}
            for row in _relabel(rows, specs)]
    rows = beside(rows, SENSITIVITY_C10, ("IoU", "ADA"))
    out.write_table("sensitivity", rows)
    text = (f"Detection with slic segments for λ ∈ {list(LAMBDAS)} and τ ∈ {list(TAUS)} "
            f"(papers/000 Table 4), N = {n}, {where.dataset} {where.split}. The paper's "
            "columns are C10 with SAM segments.")
    print_table(f"Sensitivity: {text}", rows)
    return Section("Sensitivity to λ and τ", text, [("sensitivity", rows)])


# (row, segments?, Gumbel-sigmoid?) of papers/001 Table 9, all with the learnable blur;
# the names are those of the tables' and the ablation's cells, which are shared
_CONVERGENCE = (
    ("pixels", False, False, "Eq. (3) per pixel + LP"),
    ("slic", True, False, "Eq. (3) + segments + LP"),
    ("pixels", False, True, "optimization (pixels)"),
    ("slic", True, True, "optimization (slic)"),
)


def convergence(job: Job, n: int) -> Section:
    """Adam steps until the stopping rule ends each detection image, per pixel and on slic
    segments, without the Gumbel-sigmoid (papers/001 Table 9, which leaves it out so that
    convergence does not depend on the draws) and for the full method; and a figure of
    the optimisation of the first detection images over all ``max_steps`` steps.

    The rows are detection cells: those of the full method are the detection table's, the
    slic row without the Gumbel-sigmoid is the ablation's, so none is computed twice."""
    settings, out = job.settings, job.out
    where, method = settings.data, settings.method
    detection_set = detection_images(job, n)
    specs, labels = [], []
    for mode, segments, gumbel, name in _CONVERGENCE:
        specs.append(_variant(job, name, segments, True, gumbel))
        labels.append((mode, "full method" if gumbel else "without Gumbel"))
    detected, maps = detection.run_for_job(job, detection_set, specs)
    _write_pairs(job, "convergence", detection_set, maps, specs)
    rows = []
    for (mode, variant), row in zip(labels, detected, strict=True):
        paper = CONVERGENCE.get((mode, variant))
        rows.append({"segments": mode, "variant": variant,
                     **{k: row[k] for k in ("mean steps", "median steps",
                                            "share at the limit", "s/image", "IoU", "ADA")},
                     "paper: C10 / C100 / SVHN": (" / ".join(f"{v:g}" for v in paper)
                                                  if paper else None)})
    out.write_table("convergence", rows)
    figure = _trace_figure(job, detection_set)
    limit = optimization(job.posterior, method, init="zeros").max_steps
    text = (f"Adam steps until the stopping rule ends an image (at most {limit}; share at "
            f"the limit: images it did not end), N = {n} detection images of "
            f"{where.dataset} {where.split}, with their detection IoU and ADA; papers/001 "
            "Table 9 measures steps without the Gumbel-sigmoid, beside the full method. "
            "The paper's segments are SAM's. Figure: the first detection images, slic "
            f"segments, all {limit} steps; the dotted line is where the rule stopped each "
            "one.")
    print_table(f"Convergence: {text}", rows)
    return Section("Convergence", text, [("convergence", rows)], [figure])


def _trace_figure(job: Job, detection_set, shown: int = 4) -> str:
    """``optimization_steps.png``: the optimisation of the first ``shown`` detection images
    on slic segments, traced past the stop to ``max_steps``, with the stop marked."""
    method = job.settings.method
    x = detection_set.images[:shown].to(job.settings.device)
    segments = segmenter("slic", method)(x)
    network = job.amortized_for(list(STARTED))  # the method's start, where it is the explainer
    stopped = optimization(job.posterior, method, network,
                           progress=False).attribute_with_diagnostics(x, segments=segments)
    free = optimization(job.posterior, method, network, progress=False, early_stop=False)
    trace = free.attribute_with_diagnostics(x, segments=segments, trace=True).trace
    job.out.save_figure("optimization_steps.png", viz.optimization_trace(
        x.cpu(), detection_set.boxes[:shown], segments.cpu(), vars(trace),
        stops=stopped.steps.cpu()))
    return "optimization_steps.png"


# (segments, start, stop) of the stopping study, in the order they are computed: the cold
# start with the loss rule, last, is the detection table's own row where the command keeps
# the defaults (often already stored by the detection table or the ablation)
_STOPPING = (
    ("slic", "cold", "mask rule"), ("slic", "warm", "mask rule"),
    ("slic", "cold", "movement rule"), ("slic", "cold", "loss rule"),
    ("slic", "amortized", "mask rule"),
)
# per pixel (`--segments pixels`), the mask rule against the loss rule, and the mask rule
# started from the amortised explainer's map (its network is the posterior's, shipped or
# distilled from the per-pixel maps of training images)
_STOPPING_PIXELS = (("pixels", "cold", "mask rule"), ("pixels", "cold", "loss rule"),
                    ("pixels", "amortized", "mask rule"))
STOPPING_SEGMENTS = ("slic", "pixels")


def _start(job: Job, start: str) -> str | UncertaintyAttribution:
    """The optimization-based method's ``init`` for a start of the stopping study: the
    cold start, the first-order warm start, or the amortised explainer."""
    if start == "amortized":
        network = job.amortized_for(["amortized"])
        return detection_methods(job.posterior, job.settings.method,
                                 amortized=network)["amortized"].method
    return "first-order" if start == "warm" else "zeros"


def stopping(job: Job, n: int, segments: str = "slic") -> Section:
    """The stop that stops and the warm start (DESIGN §3.1): detection with the mask rule
    from the cold start (p = 0.5), from the first-order warm start and from the amortised
    explainer's map, and with the
    movement rule from the cold start, against the cold start with the loss rule, on
    slic segments: steps and passes per image
    beside papers/001 Table 9's steps, and each variant's IoU minus the loss rule's on
    the same images with its paired standard error. ``segments="pixels"``: the mask rule
    of :data:`~.registry.PIXEL_MASK_RULE` from the cold start and from the amortised
    explainer's map against the loss rule, per pixel (``stopping_pixels``)."""
    if segments not in STOPPING_SEGMENTS:
        raise ValueError(f"segments must be one of {STOPPING_SEGMENTS}, got {segments!r}")
    settings, out = job.settings, job.out
    where = settings.data
    detection_set = detection_images(job, n)
    studied = _STOPPING if segments == "slic" else _STOPPING_PIXELS
    stem = "stopping" if segments == "slic" else "stopping_pixels"
    if not amortized_available(job.posterior, settings):
        # distilling the explainer takes the per-image maps of thousands of training
        # images: a study of the stop does not start that on its own
        studied = tuple(row for row in studied if row[1] != "amortized")
        log("stopping: no amortised explainer is shipped or cached for this posterior, so "
            "the rows that start from its map are left out (uattr train --amortized with "
            "the same settings makes it)")
    specs = []
    for mode, start, stop in studied:
        changes = {"stop": stop.split()[0], "init": _start(job, start)}
        specs.append(_variant(job, f"{mode}, {start} start, {stop}", mode == "slic", True, True,
                              **changes))
    rows, maps = detection.run_for_job(job, detection_set, specs)
    rows = _relabel(rows, specs)
    pairs = _write_pairs(job, stem, detection_set, maps, specs)
    table = []
    shown = sorted(zip(studied, rows, strict=True), key=lambda pair: pair[0][2] != "loss rule")
    for (mode, start, stop), row in shown:  # the loss rule first: the others against it
        against = pairs.get((row["method"], f"{mode}, cold start, loss rule"),
                            {"IoU difference": 0.0, "its s.e.": 0.0})  # itself
        paper = CONVERGENCE.get((mode, "full method"))
        table.append({
            "segments": mode, "start": start, "stop": stop,
            **{k: row[k] for k in ("mean steps", "median steps", "share at the limit",
                                   "forward/image", "backward/image")},
            "paper's steps: C10 / C100 / SVHN": (" / ".join(f"{v:g}" for v in paper)
                                                 if paper else None),
            "IoU": row["IoU"], "ADA": row["ADA"],
            "IoU - loss rule": against["IoU difference"], "its s.e.": against["its s.e."],
            "s/image": row["s/image"]})
    out.write_table(stem, table)
    if segments == "pixels":
        rule = per_pixel_optimization(job.posterior, settings.method, stop="mask",
                                      init="zeros")
        text = (f"The optimization-based method's stop per pixel, N = {n} detection images "
                f"of {where.dataset} {where.split}, one segment per pixel: the loss rule "
                f"(at most {rule.max_steps} steps; 'share at the limit' says how many images "
                "it let run to the end) and the mask rule with a tolerance for pixels "
                f"(stop once at most {rule.mask_tol:g} of an image's pixels flipped between "
                f"checks {rule.mask_every} steps apart, {rule.mask_patience} checks in a "
                "row; chosen on MNIST's validation split), from the cold start (p = 0.5) and "
                "from the amortised explainer's map (each pixel's logit starts at "
                f"{rule.init_scale:g} · (2q - 1), q its map; one pass of its network, none "
                "of the posterior). 'IoU - loss rule': the row's IoU "
                "minus the loss rule's on the same images, with its paired standard error. "
                "The paper's steps (papers/001 Table 9) are of its loss rule per pixel on "
                "other data.")
        print_table(f"Stopping per pixel: {text}", table)
        return Section("Stop per pixel", text, [(stem, table)])
    rule = optimization(job.posterior, settings.method, init="zeros")
    text = (f"The optimization-based method's stop and start, N = {n} detection images of "
            f"{where.dataset} {where.split}: the cold start (p = 0.5) with the loss rule "
            f"(papers/001 A.2 with common draws; at most {rule.max_steps} steps, 'share at "
            "the limit' says how many images it let run to the end), and the mask rule "
            f"(stop once at most {rule.mask_tol:g} of an image's segments flipped between "
            f"checks {rule.mask_every} steps apart, {rule.mask_patience} checks in a row) "
            "from the cold start, from the first-order warm start (one more forward "
            "and backward pass) and from the amortised explainer's map averaged over each "
            f"segment (logits {rule.init_scale:g} · (2q - 1); one pass of its network), "
            "and the movement rule from the cold start (stop once an "
            "image's probabilities moved by less than "
            f"{rule.move_tol:g} on average over its segments between checks "
            f"{rule.mask_every} steps apart, {rule.move_patience} check(s) in a row). "
            "'IoU - loss rule': the row's IoU minus the cold start's "
            "with the loss rule on the same images, with its paired standard error. The "
            "paper's steps (papers/001 Table 9) are of its loss rule with SAM segments on "
            "other data.")
    print_table(f"Stopping: {text}", table)
    return Section("Stop and start", text, [("stopping", table)])


COMMANDS = (
    BenchCommand("ablation", "the optimization-based method's components, on detection and "
                 "faithfulness (papers/000 Table 3, papers/001 Table 7)",
                 lambda job, args: ablation(job, args.n, tuple(args.parts)),
                 options=(option("--parts", nargs="+", default=list(ABLATION_PARTS),
                                 choices=ABLATION_PARTS,
                                 help="which halves to measure (default both)"),),
                 on_ray=True),
    BenchCommand("sensitivity", "detection over λ × τ (papers/000 Table 4)",
                 lambda job, args: sensitivity(job, args.n), on_ray=True),
    BenchCommand("convergence", "steps to converge, pixels vs segments (papers/001 Table 9)",
                 lambda job, args: convergence(job, args.n), on_ray=True),
    BenchCommand("stopping", "the mask and movement rules and the warm start against the "
                 "loss rule, on slic segments (or per pixel)",
                 lambda job, args: stopping(job, args.n, args.segments),
                 options=(option("--segments", choices=STOPPING_SEGMENTS, default="slic",
                                 help="slic segments: every rule and start (default); "
                                      "pixels: the mask rule per pixel against the loss "
                                      "rule"),),
                 on_ray=True,
                 report=lambda args: ("stopping" if args.segments == "slic"
                                      else "stopping-pixels")),
)
