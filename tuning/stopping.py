"""Choose the optimization-based method's mask rule and measure its warm start on MNIST's
validation split (docs/hyperparameters.md), by the detection benchmark's IoU / ADA.

    python tuning/stopping.py --results docs/results/mnist-valid-n100-seed0
    python tuning/stopping.py --segments pixels --results docs/results/mnist-valid-n100-seed0

On the detection set of the validation split (the 100 images whose uncertainty the patch
swap raised most under the shipped ensemble), each start (cold: p = 0.5; warm: the
first-order blur effect) and Adam setting runs without a stopping rule and records every
image's probabilities and loss every 20 steps. The checks draw from a stream of their own,
so a stopping rule only chooses *where along the recorded path* an image stops: the loss
rule (the default: the loss with 20 fixed draws fell by less than 0.1% twice in a row),
fixed budgets and every mask rule of the grid are scored exactly from the same traces,
each against the cold start's loss rule on the same images (paired standard error). The
table ``stopping_rules.{md,csv,json}`` lands in ``--out`` and, with ``--results``, there
too. The test images are never read.

``--segments pixels`` does the same per pixel (one segment per pixel), for the defaults
only, over a grid of mask rules whose tolerances suit 784 segments (a few pixels keep
flipping long after the map has settled): ``stopping_rules_pixels.{md,csv,json}``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from optimization_steps import first_run, stop_index_mask
from sweeps import arguments, detection_scores, finish, image_ious, validation_detection

from uattr.attribution import OptimizationUA
from uattr.experiments.registry import segmenter
from uattr.ops import segment

CHECK_EVERY = 20  # the loss rule's spacing: its checks are the records
# (name, start, lr, σ0, steps recorded): the defaults, their warm start, and the setting
# of the learning-rate grid (tuning/optimization_steps.py) that peaks earliest
SETTINGS = (("defaults", "zeros", 0.01, 0.05, 500),
            ("defaults, warm start", "first-order", 0.01, 0.05, 300),
            ("lr 0.03, σ0 0.1", "zeros", 0.03, 0.1, 300))
BUDGETS = (100, 150, 200, 300, 500)
MASK_EVERY = (20, 40, 60)
MASK_TOL = (0.0, 0.02, 0.05)
MASK_PATIENCE = (1, 2, 3, 4)
# per pixel: the defaults, checked every 20 steps, with shares of flipped pixels from none
# to 2% (16 of MNIST's 784)
PIXEL_SETTINGS = (("defaults, pixels", "zeros", 0.01, 0.05, 500),)
PIXEL_MASK_EVERY = (20,)
PIXEL_MASK_TOL = (0.0, 0.005, 0.01, 0.02)


def loss_rule(loss: torch.Tensor, tol: float = 1e-3, patience: int = 2) -> torch.Tensor:
    """Records where :class:`OptimizationUA`'s loss rule ends each image ``[B]`` (its
    relative fall, floored at OptimizationUA's 1e-6)."""
    fall = (loss[:-1] - loss[1:]) / loss[:-1].abs().clamp_min(1e-6)
    return first_run(fall < tol, patience)


def paired(difference: torch.Tensor) -> dict[str, float | None]:
    """A row's IoU minus the loss rule's, per image ``[N]``: mean, paired standard error
    and the mean in those standard errors."""
    mean, se = float(difference.mean()), float(difference.std() / len(difference) ** 0.5)
    return {"IoU - loss rule": mean, "its s.e.": se, "in s.e.": mean / se if se > 0 else None}


def record(job, detection_set, segments, start: str, lr: float, sigma_init: float,
           steps: int, path: Path) -> dict:
    """The traced run of one setting, stored at ``path`` (resumable: a stored one is
    read back)."""
    if path.exists():
        return torch.load(path)
    method = OptimizationUA(job.posterior, "total", lr=lr, sigma_init=sigma_init,
                            max_steps=steps, check_every=CHECK_EVERY, early_stop=False,
                            init=start, progress=True)
    result = method.attribute_with_diagnostics(detection_set.images, segments=segments,
                                               trace=True)
    stored = {"probs": result.trace.probs, "loss": result.trace.loss,
              "steps": result.trace.steps}
    tmp = path.with_suffix(".tmp")
    torch.save(stored, tmp)
    os.replace(tmp, path)
    return stored


def main() -> None:
    parser = arguments(__doc__, "runs/tuning-stopping")
    parser.add_argument("--segments", choices=("slic", "pixels"), default="slic",
                        help="slic segments (default) or one segment per pixel")
    args = parser.parse_args()
    per_pixel = args.segments == "pixels"
    settings, mask_every, mask_tol = ((PIXEL_SETTINGS, PIXEL_MASK_EVERY, PIXEL_MASK_TOL)
                                      if per_pixel else (SETTINGS, MASK_EVERY, MASK_TOL))
    with validation_detection(args, "stopping.py") as (job, detection_set):
        boxes = detection_set.boxes
        images = detection_set.images
        segments = (segment.pixels(images) if per_pixel
                    else segmenter("slic", job.settings.method)(images))
        counts = segment.num_segments(segments)  # [N]
        traces = Path(args.out) / "traces"
        traces.mkdir(parents=True, exist_ok=True)
        reference, rows = None, []
        for name, start, lr, sigma_init, steps in settings:
            trace = record(job, detection_set, segments, start, lr, sigma_init, steps,
                           traces / f"{args.segments}-{start}-lr{lr:g}-sigma{sigma_init:g}"
                                    f"-{steps}.pt")
            recorded = trace["steps"].tolist()
            rules = [("loss rule (0.1%, twice)", loss_rule(trace["loss"]))]
            budgets = ((0,) if start == "first-order" else ()) + BUDGETS  # 0: the start
            rules += [(f"{budget} steps", torch.full((len(boxes),), recorded.index(budget)))
                      for budget in budgets if budget in recorded]
            rules += [(f"mask: every {every}, flips ≤ {tol:g}, patience {patience}",
                       stop_index_mask(trace["probs"], counts, tol, patience,
                                       every // CHECK_EVERY))
                      for every, tol, patience in itertools.product(mask_every, mask_tol,
                                                                    MASK_PATIENCE)]
            for rule, index in rules:  # index [N]: the record where each image stops
                chosen = trace["probs"][index, torch.arange(len(index))]  # [N, K]
                maps = chosen.gather(1, segments.flatten(1)).view_as(segments).float()
                iou = image_ious(maps, boxes).double()
                reference = iou if reference is None else reference  # the defaults' loss rule
                difference = iou - reference
                taken = torch.tensor(recorded, dtype=torch.float64)[index]
                warm = 1 if start == "first-order" else 0  # the warm start's own pass
                rows.append({"setting": name, "rule": rule, "mean steps": float(taken.mean()),
                             "backward/image": float(taken.mean()) + warm,
                             **detection_scores(maps, boxes),
                             **paired(difference)})
        text = (f"mnist valid, N = {args.n}, the detection set of the shipped ensemble, "
                f"{'one segment per pixel' if per_pixel else 'slic segments'}: each "
                "setting's IoU / ADA and mean Adam steps under the loss rule, "
                "fixed budgets and every mask rule of the grid, scored from one traced run "
                "per setting; 'IoU - loss rule' is against the defaults' loss rule on the "
                "same images, with its paired standard error. Backward passes per image "
                "count the warm start's own; the warm start's '0 steps' row is its "
                "starting map.")
        suffix = "_pixels" if per_pixel else ""
        finish(job, f"stopping_rules{suffix}", rows, "Stopping rules and the warm start",
               text, f"stopping{suffix.replace('_', '-')}",
               {"n": args.n, "split": "valid", "segments": args.segments,
                "settings": [list(s) for s in settings], "mask_every": mask_every,
                "mask_tol": mask_tol, "mask_patience": MASK_PATIENCE}, args.results)


if __name__ == "__main__":
    main()
