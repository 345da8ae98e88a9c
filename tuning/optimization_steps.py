"""Choose the optimization-based method's learning rate, initial blur and stopping rule on
MNIST's validation split (docs/hyperparameters.md).

    python tuning/optimization_steps.py record        # a 500-step trace per setting (resumable)
    python tuning/optimization_steps.py fresh-draws   # each check's loss with fresh draws
    python tuning/optimization_steps.py evaluate      # every stopping rule; the table

``evaluate`` checks that every trace was recorded with the shipped ensemble (each image's
U before the method, recomputed) and writes ``<out>/evaluation.json`` (every rule of every
setting), the table ``settings.{md,csv,json}`` that docs/hyperparameters.md quotes, and
the report and run record naming the weights; ``--results`` copies them, as
``uattr reproduce tuning-optimization`` does to docs/results/tuning-optimization/.

``record`` runs the method without early stopping on the validation detection set
(N = 100, seed 0, the shipped 5-member ensemble, the same images as
``uattr run --split valid``) for every (segments, lr, σ0) and keeps each image's
probabilities, expected loss (20 draws, the same at every check, as OptimizationUA's
rule has them), U and blur width at every check. The checks draw from a stream of their
own, so an image's path does not depend on when it is checked or stopped: a stopping rule
only chooses where along the recorded path each image stops, and ``evaluate`` scores
every rule from the traces exactly, without running the method again. ``fresh-draws``
adds the loss as papers/001 A.2 estimates it, with new draws at every check, on which
the paper's rule is scored.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from pathlib import Path

import torch
from sweeps import finish

from uattr import Ensemble, OptimizationUA, data, segment
from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.detection import build_detection_set, detection_images
from uattr.experiments.job import running_command
from uattr.metrics import ada, box_iou, find_box
from uattr.uq import uncertainty
from uattr.zoo.models import load_or_train_ensemble

SEGMENTATIONS = ("slic", "oracle", "pixels")
LRS = (0.01, 0.03, 0.1)
SIGMA_INITS = (0.05, 0.1, 0.15)
MAX_STEPS = 500
CHECK_EVERY = 20


def detection_set(n: int, seed: int):
    train, valid = data.load("mnist", "train"), data.load("mnist", "valid")
    members, _ = load_or_train_ensemble("mnist", train, data.load("mnist", "test"))
    posterior = Ensemble(members)
    return posterior, build_detection_set(posterior, valid, train, n=n, seed=seed)


def segments_of(kind: str, images, boxes):
    if kind == "pixels":
        return segment.pixels(images)
    slic = segment.slic(images)  # the defaults: 60 segments asked, compactness 0.3
    return slic if kind == "slic" else segment.with_boxes(slic, boxes)


def record(args) -> None:
    torch.set_num_threads(args.threads)
    posterior, found = detection_set(args.n, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = list(itertools.product(args.segmentations, args.lrs, args.sigma_inits))
    for i, (kind, lr, sigma_init) in enumerate(settings):
        if i % args.workers != args.worker:
            continue
        name = f"{kind}-lr{lr:g}-sigma{sigma_init:g}-gumbel{int(args.gumbel)}"
        if args.init == "first-order":
            name += f"-warm{args.init_scale:g}"
        if args.check_every != CHECK_EVERY:
            name += f"-every{args.check_every}"
        path = out / f"{name}.pt"
        if path.exists():
            continue
        print(f"recording {name}", file=sys.stderr, flush=True)
        method = OptimizationUA(posterior, lr=lr, sigma_init=sigma_init,
                                max_steps=args.max_steps, check_every=args.check_every,
                                check_draws=args.check_draws, early_stop=False,
                                gumbel=args.gumbel, init=args.init,
                                init_scale=args.init_scale, seed=args.seed, progress=True)
        segments = segments_of(kind, found.images, found.boxes)
        result = method.attribute_with_diagnostics(found.images, segments=segments, trace=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"trace": vars(result.trace), "segments": segments, "boxes": found.boxes,
                    "u_before": result.u_before, "patch_delta": found.patch_delta}, tmp)
        os.replace(tmp, path)


def fresh_draws(args) -> None:
    """Add to each trace the expected loss at every check estimated with *fresh* draws
    (``DRAWS`` logistic draws per image, new at every check), as papers/001 A.2 has it:
    the paper's rule is scored on it. The trace's own ``loss`` is OptimizationUA's, with
    the same draws at every check."""
    from uattr.attribution.optimization import gumbel_sigmoid, logistic_noise
    from uattr.ops.perturb import gaussian_blur

    torch.set_num_threads(args.threads)
    posterior, found = detection_set(args.n, args.seed)
    x = found.images
    wanted = {f"{kind}-lr{lr:g}-sigma{sigma:g}-gumbel1.pt" for kind, lr, sigma in
              itertools.product(args.segmentations, args.lrs, args.sigma_inits)}
    paths = sorted(p for p in Path(args.out).glob("*-lr*-sigma*.pt") if p.name in wanted)
    for i, path in enumerate(paths):
        if i % args.workers != args.worker:
            continue
        stored = torch.load(path)
        if "fresh_loss" in stored["trace"]:
            continue
        print(f"fresh draws: {path.name}", file=sys.stderr, flush=True)
        trace, segments = stored["trace"], stored["segments"]
        flat = segments.flatten(1)
        counts = segment.num_segments(segments)
        k_max = trace["probs"].shape[-1]
        valid = torch.arange(k_max)[None, :] < counts[:, None]
        losses = []
        with torch.no_grad():
            for t in range(len(trace["steps"])):
                gen = torch.Generator().manual_seed(1234 + t)  # a new stream per check
                noise = logistic_noise(torch.rand(x.shape[0], DRAWS, k_max, generator=gen))
                p = trace["probs"][t].clamp(1e-6, 1 - 1e-6)
                v = torch.log(p) - torch.log1p(-p)  # [B, K]
                weights = gumbel_sigmoid(v[:, None], noise, 0.1) * valid[:, None]  # [B, D, K]
                blurred = gaussian_blur(x, trace["sigma"][t])[:, None]  # [B, 1, C, H, W]
                masks = weights.gather(2, flat[:, None].expand(-1, DRAWS, -1)).view(
                    x.shape[0], DRAWS, 1, *x.shape[2:])  # [B, D, 1, H, W]
                perturbed = (1 - masks) * x[:, None] + masks * blurred  # every draw at once
                u = uncertainty(posterior(perturbed.flatten(0, 1)), "total").view(-1, DRAWS)
                losses.append((u + 3.0 * weights.sum(2) / counts[:, None]).mean(1))  # [B]
        trace["fresh_loss"] = torch.stack(losses)  # [T, B]
        tmp = path.with_suffix(".tmp")
        torch.save(stored, tmp)
        os.replace(tmp, path)


DRAWS = 20


# ------------------------------------------------------------------------- stopping rules
def stop_index_loss(loss, tol, patience):
    """First check where the expected loss fell by less than ``tol`` (or rose) relative to
    the previous check, ``patience`` checks in a row. ``loss [T, B]`` -> index ``[B]``."""
    return first_run(loss[:-1] - loss[1:] < tol, patience)


def stop_index_relative(loss, rtol, patience):
    """As :func:`stop_index_loss`, the fall measured relative to the loss."""
    fall = (loss[:-1] - loss[1:]) / loss[:-1].abs().clamp_min(1e-12)
    return first_run(fall < rtol, patience)


def stop_index_probs(probs, tol, patience):
    """First check where no probability moved by ``tol`` or more since the previous check,
    ``patience`` checks in a row. ``probs [T, B, K]``."""
    moved = (probs[1:] - probs[:-1]).abs().amax(-1)  # [T-1, B]
    return first_run(moved < tol, patience)


def stop_index_probs_mean(probs, counts, tol, patience):
    """First check where the probabilities moved by less than ``tol`` on average over the
    image's own ``counts [B]`` segments (OptimizationUA's ``stop="movement"``),
    ``patience`` checks in a row."""
    moved = (probs[1:] - probs[:-1]).abs().sum(-1) / counts  # [T-1, B]
    return first_run(moved < tol, patience)


def first_run(quiet, patience):
    """Index into the records (1..T-1) of the first run of ``patience`` True values in
    ``quiet [T-1, B]``; T-1 (the step limit) where there is none."""
    steps, batch = quiet.shape
    run = torch.zeros(batch, dtype=torch.long)
    stop = torch.full((batch,), steps, dtype=torch.long)
    for t in range(steps):
        run = torch.where(quiet[t], run + 1, torch.zeros_like(run))
        hit = (run >= patience) & (stop == steps)
        stop[hit] = t + 1
    return stop


def stop_index_mask(probs, counts, share, patience, every=1):
    """First check where the binary mask ``p > 0.5`` changed on at most a share ``share``
    of the image's segments since the previous check, ``patience`` checks in a row, the
    checks being every ``every``-th record (``OptimizationUA(stop="mask")``): as an index
    into the records. ``probs [T, B, K]``, ``counts [B]``."""
    binary = probs[::every] > 0.5  # [T', B, K]
    flipped = (binary[1:] != binary[:-1]).sum(-1) / counts  # [T'-1, B]
    return first_run(flipped <= share, patience) * every


def score(record_, index):
    """IoU [B], steps [B] and U(x') with the binary mask at the chosen records."""
    trace, segments = record_["trace"], record_["segments"]
    batch = segments.shape[0]
    probs = trace["probs"][index, torch.arange(batch)]  # [B, K]
    maps = probs.gather(1, segments.flatten(1)).view_as(segments).float()
    iou = box_iou(find_box(maps, int(record_["boxes"][0, 2])), record_["boxes"])
    steps = trace["steps"][index]
    u_after = trace["hard_uncertainty"][index, torch.arange(batch)]
    return iou, steps.double(), u_after


def rules(trace, counts=None):
    loss, probs = trace["loss"], trace["probs"]
    recorded = trace["steps"].tolist()
    last = loss.shape[0] - 1
    yield "fixed", f"{recorded[-1]} steps", torch.full((loss.shape[1],), last)
    for steps in (40, 60, 100, 150, 200, 300):
        if steps in recorded[:-1]:
            yield "fixed", f"{steps} steps", torch.full((loss.shape[1],), recorded.index(steps))
    if counts is not None:
        spacing = recorded[1] - recorded[0]
        for every, share, patience in itertools.product((1, 2, 4), (0.0, 0.02, 0.05),
                                                        (1, 2, 3, 4)):
            if every * spacing <= 40:
                yield "mask", (f"every {every * spacing}, flips ≤ {share:g}, patience "
                               f"{patience}"), stop_index_mask(probs, counts, share,
                                                               patience, every)
    if len(recorded) != MAX_STEPS // CHECK_EVERY + 1 or recorded[-1] != MAX_STEPS:
        return  # the loss rules below were scored on the paper's checks only
    for tol, patience in itertools.product((1e-3, 3e-3, 1e-2), (1, 2, 3)):
        yield "loss", f"abs {tol:g}, patience {patience}", stop_index_loss(loss, tol, patience)
    for rtol, patience in itertools.product((1e-3, 3e-3, 1e-2), (1, 2, 3)):
        yield "relative", f"rel {rtol:g}, patience {patience}", stop_index_relative(
            loss, rtol, patience)
    for tol, patience in itertools.product((0.01, 0.02, 0.05), (1, 2, 3)):
        yield "probs", f"max Δp {tol:g}, patience {patience}", stop_index_probs(
            probs, tol, patience)
    for tol, patience in itertools.product((1e-3, 3e-3, 1e-2, 1.5e-2, 2e-2), (1, 2)):
        if counts is not None:
            yield "probs-mean", f"mean Δp {tol:g}, patience {patience}", \
                stop_index_probs_mean(probs, counts, tol, patience)
    if "fresh_loss" in trace:  # the paper's estimate: fresh draws at every check
        fresh = trace["fresh_loss"]
        for tol, patience in itertools.product((1e-3, 3e-3, 1e-2), (1, 2, 3)):
            yield "fresh", f"abs {tol:g}, patience {patience}", stop_index_loss(
                fresh, tol, patience)
        for rtol, patience in itertools.product((1e-3, 3e-3, 1e-2), (1, 2, 3)):
            yield "fresh-relative", f"rel {rtol:g}, patience {patience}", \
                stop_index_relative(fresh, rtol, patience)


def evaluate(args) -> None:
    with running_command(sys.argv[1:], program="python tuning/optimization_steps.py"):
        job = open_job(Settings(data=DataSettings("mnist", "valid")), args.out)
        found = detection_images(job, args.n)
        with torch.no_grad():
            u_before = uncertainty(job.posterior(found.images), "total")  # [N]
        rows, chosen = [], {}  # chosen: each setting's IoU per image under uattr's rule
        for path in sorted(Path(args.out).glob("*-lr*-sigma*.pt")):
            record_ = torch.load(path)
            # a trace of another ensemble (or detection set) would not give these U
            if not (torch.equal(record_["boxes"], found.boxes)
                    and torch.allclose(record_["u_before"], u_before, rtol=1e-4, atol=1e-5)):
                raise ValueError(f"{path} was not recorded on the detection set of the "
                                 f"weights {sorted(job.weights)}: record it again")
            rows += evaluated_rules(path.stem, record_)
            chosen[path.stem] = score(record_, stop_index_relative(
                record_["trace"]["loss"], *UATTRS_RULE))[0].double()  # [N]
        rounded = [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
                   for row in rows]
        job.out.write_text("evaluation.json", json.dumps(rounded, separators=(",", ":")))
        text = (f"mnist valid, N = {args.n}, seed {args.seed}, the detection set of the "
                "shipped ensemble, λ = 3, τ = 0.1: IoU / ADA of each setting after 100, "
                "200 and 500 steps, under the paper's rule (the expected loss with 20 "
                "fresh draws every 20 steps, stop when it rose or fell by less than 0.001) "
                "and under uattr's (the same 20 draws at every check, stop when it fell by "
                "less than 0.1% twice in a row), mean steps in brackets; 'IoU - defaults': "
                "uattr's rule against the same segments at lr 0.01, σ0 0.05 with the "
                "Gumbel-sigmoid, on the same images, with its paired standard error. Every "
                "rule of every setting: evaluation.json.")
        finish(job, "settings", summary_rows(rounded, chosen),
               "Learning rate, initial blur and stopping rule", text, "optimization",
               {"n": args.n, "seed": args.seed, "split": "valid", "max_steps": MAX_STEPS,
                "check_every": CHECK_EVERY, "segmentations": list(SEGMENTATIONS),
                "lrs": list(LRS), "sigma_inits": list(SIGMA_INITS)}, args.results)


def evaluated_rules(setting: str, record_: dict) -> list[dict]:
    """One row per stopping rule of a trace: its IoU / ADA, standard errors (the paired one
    against the last recorded step), mean steps and U before and after. The families
    ``loss``, ``relative``, ``probs``, ``probs-mean`` and ``mask`` read the trace's own
    checks, whose loss has the same draws at every check; ``fresh`` and
    ``fresh-relative`` the loss with fresh draws."""
    n = record_["segments"].shape[0]
    counts = segment.num_segments(record_["segments"])
    reference, rows = None, []  # every image's IoU at the last recorded step
    for family, rule, index in rules(record_["trace"], counts):
        iou, steps, u_after = score(record_, index)
        reference = iou if reference is None else reference
        rows.append({"setting": setting, "family": family, "rule": rule,
                     "IoU": float(iou.mean()), "ADA": ada(iou),
                     "se": float(iou.std() / math.sqrt(n)),
                     "paired se": float((iou - reference).std() / math.sqrt(n)),
                     "steps": float(steps.mean()),
                     "U before": float(record_["u_before"].mean()),
                     "U after": float(u_after.mean())})
    return rows


#: OptimizationUA's default rule: a relative fall under 0.1%, twice in a row
UATTRS_RULE = (1e-3, 2)
#: the columns of the settings table: (column, family, rule of evaluation.json)
SUMMARY_COLUMNS = (("100 steps", "fixed", "100 steps"), ("200 steps", "fixed", "200 steps"),
                   ("500 steps", "fixed", "500 steps"),
                   ("paper's rule (steps)", "fresh", "abs 0.001, patience 1"),
                   ("uattr's rule (steps)", "relative", "rel 0.001, patience 2"))


def summary_rows(rows: list[dict], chosen: dict[str, torch.Tensor]) -> list[dict]:
    """The table of docs/hyperparameters.md from the rows of ``evaluation.json``: one row
    per setting, each cell 'IoU / ADA' (and the mean steps of a stopping rule), and the
    paired difference of uattr's rule from the defaults on the same segments (``chosen``:
    each setting's IoU per image under that rule)."""
    settings = sorted({row["setting"] for row in rows},
                      key=lambda name: (SEGMENTATIONS.index(name.split("-")[0]), name))
    table = []
    for setting in settings:
        kind, lr, sigma, gumbel = setting.split("-")
        line = {"setting": setting, "segments": kind, "lr": lr[2:], "σ0": sigma[5:],
                "Gumbel": "yes" if gumbel == "gumbel1" else "no"}
        for column, family, rule in SUMMARY_COLUMNS:
            found = [r for r in rows if r["setting"] == setting and r["rule"] == rule
                     and r["family"] == family]
            if not found and family == "fresh" and gumbel == "gumbel0":
                # without the Gumbel-sigmoid there are no draws: the loss is exact
                found = [r for r in rows if r["setting"] == setting
                         and r["rule"] == rule and r["family"] == "loss"]
            if not found:
                line[column] = "–"
                continue
            text = f"{found[0]['IoU']:.3f} / {found[0]['ADA']:.2f}"
            line[column] = text if family == "fixed" else f"{text} ({found[0]['steps']:.0f})"
        defaults = chosen.get(f"{kind}-lr{LRS[0]:g}-sigma{SIGMA_INITS[0]:g}-gumbel1")
        if defaults is not None:
            difference = chosen[setting] - defaults
            line["IoU - defaults"] = round(float(difference.mean()), 6)
            line["its s.e."] = round(float(difference.std() / len(difference) ** 0.5), 6)
        table.append(line)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("record", "fresh-draws", "evaluate"))
    parser.add_argument("--out", default="runs/tuning-optimization")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--segmentations", nargs="+", default=list(SEGMENTATIONS))
    parser.add_argument("--lrs", nargs="+", type=float, default=list(LRS))
    parser.add_argument("--sigma-inits", nargs="+", type=float, default=list(SIGMA_INITS))
    parser.add_argument("--no-gumbel", dest="gumbel", action="store_false")
    parser.add_argument("--init", choices=("zeros", "first-order"), default="zeros",
                        help="record: where the mask starts (default zeros)")
    parser.add_argument("--init-scale", type=float, default=1.0,
                        help="record: the warm start's largest |logit| (default 1)")
    parser.add_argument("--check-every", type=int, default=CHECK_EVERY,
                        help=f"record: steps between records (default {CHECK_EVERY})")
    parser.add_argument("--check-draws", type=int, default=20,
                        help="record: draws of each record's expected loss (default 20)")
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS,
                        help=f"record: steps per image (default {MAX_STEPS})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--results", help="evaluate: also copy the tables to this folder")
    args = parser.parse_args()
    {"record": record, "fresh-draws": fresh_draws, "evaluate": evaluate}[args.action](args)


if __name__ == "__main__":
    main()
