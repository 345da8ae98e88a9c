"""Choose the optimization-based method's learning rate, initial blur and stopping rule on
MNIST's validation split (docs/hyperparameters.md).

    python tuning/optimization_steps.py record        # a 500-step trace per setting (resumable)
    python tuning/optimization_steps.py common-draws  # each check's loss with fixed draws
    python tuning/optimization_steps.py evaluate      # IoU / ADA of every stopping rule
    python tuning/optimization_steps.py summary       # the table of docs/hyperparameters.md

``evaluate`` writes ``<out>/evaluation.json``; docs/results/tuning-optimization/ holds the
copy that docs/hyperparameters.md quotes.

``record`` runs the method without early stopping on the validation detection set
(N = 100, seed 0, the cached 5-member ensemble, the same images as
``uattr run --split valid``) for every (segments, lr, σ0) and keeps each image's
probabilities, U and blur width at every check. The checks draw from a stream of their
own, so an image's path does not depend on when it is checked or stopped: a stopping rule
only chooses where along the recorded path each image stops, and ``evaluate`` scores
every rule from the traces exactly, without running the method again.
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

from uattr import Ensemble, OptimizationUA, data, segment
from uattr.experiments.benchmarks.detection import build_detection_set
from uattr.metrics import ada, box_iou, find_box
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


def common_draws(args) -> None:
    """Add to each trace the expected loss at every check estimated with the *same* draws
    (``check_draws`` logistic draws per image, fixed for the whole path): the change
    between two checks then measures the optimisation, not the Monte-Carlo noise."""
    from uattr.attribution.optimization import gumbel_sigmoid, logistic_noise
    from uattr.ops.perturb import gaussian_blur
    from uattr.uq import uncertainty

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
        if "crn_loss" in stored["trace"] or "gumbel1" not in path.name:
            continue
        print(f"common draws: {path.name}", file=sys.stderr, flush=True)
        trace, segments = stored["trace"], stored["segments"]
        flat = segments.flatten(1)
        counts = flat.max(1).values + 1
        k_max = trace["probs"].shape[-1]
        valid = torch.arange(k_max)[None, :] < counts[:, None]
        gen = torch.Generator().manual_seed(1234)
        noise = logistic_noise(torch.rand(x.shape[0], DRAWS, k_max, generator=gen))
        losses, us = [], []
        with torch.no_grad():
            for t in range(len(trace["steps"])):
                p = trace["probs"][t].clamp(1e-6, 1 - 1e-6)
                v = torch.log(p) - torch.log1p(-p)  # [B, K]
                weights = gumbel_sigmoid(v[:, None], noise, 0.1) * valid[:, None]  # [B, D, K]
                loss_t, u_t = [], []
                blurred = gaussian_blur(x, trace["sigma"][t])
                for d in range(DRAWS):
                    mask = weights[:, d].gather(1, flat).view_as(segments)[:, None]
                    u = uncertainty(posterior((1 - mask) * x + mask * blurred), "total")
                    u_t.append(u)
                    loss_t.append(u + 3.0 * weights[:, d].sum(1) / counts)
                losses.append(torch.stack(loss_t).mean(0))
                us.append(torch.stack(u_t).mean(0))
        trace["crn_loss"], trace["crn_uncertainty"] = torch.stack(losses), torch.stack(us)
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


def stop_index_probs_mean(probs, tol, patience):
    moved = (probs[1:] - probs[:-1]).abs().mean(-1)
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
    for tol, patience in itertools.product((1e-3, 3e-3, 1e-2), (1, 2)):
        yield "probs-mean", f"mean Δp {tol:g}, patience {patience}", stop_index_probs_mean(
            probs, tol, patience)
    if "crn_loss" in trace:
        crn = trace["crn_loss"]
        for rtol, patience in itertools.product((1e-3, 3e-3, 1e-2, 3e-2), (1, 2, 3)):
            yield "crn-relative", f"rel {rtol:g}, patience {patience}", stop_index_relative(
                crn, rtol, patience)
        for tol, patience in itertools.product((1e-3, 1e-2), (1, 2)):
            yield "crn-abs", f"abs {tol:g}, patience {patience}", stop_index_loss(
                crn, tol, patience)


def evaluate(args) -> None:
    out = Path(args.out)
    rows = []
    for path in sorted(out.glob("*-lr*-sigma*.pt")):
        record_ = torch.load(path)
        n = record_["segments"].shape[0]
        counts = segment.num_segments(record_["segments"])
        reference = None  # every image's IoU at the last recorded step
        for family, rule, index in rules(record_["trace"], counts):
            iou, steps, u_after = score(record_, index)
            reference = iou if reference is None else reference
            rows.append({"setting": path.stem, "family": family, "rule": rule,
                         "IoU": float(iou.mean()), "ADA": ada(iou),
                         "se": float(iou.std() / math.sqrt(n)),
                         "paired se": float((iou - reference).std() / math.sqrt(n)),
                         "steps": float(steps.mean()),
                         "U before": float(record_["u_before"].mean()),
                         "U after": float(u_after.mean())})
    rounded = [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
               for row in rows]
    (out / "evaluation.json").write_text(json.dumps(rounded, separators=(",", ":")))
    keys = ("setting", "family", "rule", "IoU", "ADA", "se", "steps", "U before", "U after")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k])
                                for k in keys) + " |")


def summary(args) -> None:
    """The tables of docs/hyperparameters.md, from ``evaluation.json``: IoU / ADA of every
    setting after 100, 200 and 500 steps, under the paper's rule (fresh draws at each
    check) and under uattr's (common draws, a relative fall under 0.1% twice in a row)."""
    rows = json.loads((Path(args.out) / "evaluation.json").read_text())
    columns = (("fixed", "100 steps"), ("fixed", "200 steps"), ("fixed", "500 steps"),
               ("loss", "abs 0.001, patience 1"), ("crn-relative", "rel 0.001, patience 2"))
    print("| segments | lr | σ0 | Gumbel | 100 steps | 200 steps | 500 steps | paper's rule "
          "(steps) | uattr's rule (steps) |")
    print("|---|---|---|---|---|---|---|---|---|")
    settings = sorted({row["setting"] for row in rows},
                      key=lambda name: (SEGMENTATIONS.index(name.split("-")[0]), name))
    for setting in settings:
        kind, lr, sigma, gumbel = setting.split("-")
        cells = []
        for family, rule in columns:
            found = [r for r in rows if r["setting"] == setting and r["rule"] == rule
                     and r["family"] == family]
            if not found and family == "crn-relative" and gumbel == "gumbel0":
                # without the Gumbel-sigmoid there are no draws: the loss is exact
                found = [r for r in rows if r["setting"] == setting
                         and r["rule"] == rule and r["family"] == "relative"]
            if not found:
                cells.append("–")
                continue
            row = found[0]
            text = f"{row['IoU']:.3f} / {row['ADA']:.2f}"
            cells.append(text if family == "fixed" else f"{text} ({row['steps']:.0f})")
        print(f"| {kind} | {lr[2:]} | {sigma[5:]} | {'yes' if gumbel == 'gumbel1' else 'no'} | "
              + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("record", "common-draws", "evaluate", "summary"))
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
    args = parser.parse_args()
    {"record": record, "common-draws": common_draws, "evaluate": evaluate,
     "summary": summary}[args.action](args)


if __name__ == "__main__":
    main()
