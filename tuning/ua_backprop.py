"""Choose UA-Backprop's temperatures τ1 and τ2 on MNIST's validation split
(docs/hyperparameters.md), by the detection benchmark's IoU / ADA.

    python tuning/ua_backprop.py --results docs/results/mnist-valid-n100-seed0

On the detection set of the validation split (the 100 images whose uncertainty the
patch swap raised most under the shipped ensemble), each path's per-logit relevances R
are computed once and every (τ1, τ2) of the grid is scored from them
(:meth:`~uattr.attribution.UABackprop.from_relevance`). τ2 is given as a fraction of the
path's mean per-logit largest relevance, since the FullGrad and gradient paths put R on
different scales; the plain gradient ``|∂U/∂x|`` is scored beside them. The table
``ua_backprop_tuning.{md,csv,json}`` lands in ``--out`` and, with ``--results``, there too.
The test images are never read.
"""

from __future__ import annotations

import torch
from sweeps import arguments, detection_scores, finish, validation_detection

from uattr.attribution import Grad, UABackprop

TAU1 = (0.1, 0.3, 1.0, 3.0)
TAU2_FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
PATHS = ("fullgrad", "gradient")
BATCH = 20  # images per relevance pass: [20, S, C, H, W] in memory at once


def main() -> None:
    args = arguments(__doc__, "runs/tuning-ua-backprop").parse_args()
    with validation_detection(args, "ua_backprop.py") as (job, detection_set):
        images, boxes = detection_set.images, detection_set.boxes
        rows = []
        grad = Grad(job.posterior, "total").attribute(images)
        rows.append({"path": "plain gradient |∂U/∂x|", "τ1": None, "τ2 / scale": None,
                     "τ2": None, **detection_scores(grad, boxes)})
        for path in PATHS:
            parts = [UABackprop(job.posterior, "total", path=path).relevance(images[i:i + BATCH])
                     for i in range(0, len(images), BATCH)]
            relevance = torch.cat([r for r, _ in parts])  # [N, S, C, H, W]
            probs = torch.cat([p for _, p in parts])  # [N, S, C]
            scale = float(relevance.flatten(3).amax(-1).mean())  # mean per-logit largest R
            for tau1 in TAU1:
                for fraction in TAU2_FRACTIONS:
                    method = UABackprop(job.posterior, "total", tau1=tau1,
                                        tau2=fraction * scale, path=path)
                    maps = method.from_relevance(relevance, probs).float()
                    rows.append({"path": path, "τ1": tau1, "τ2 / scale": fraction,
                                 "τ2": fraction * scale, **detection_scores(maps, boxes)})
        text = (f"mnist valid, N = {args.n}, the detection set of the shipped ensemble: "
                "UA-Backprop's total-uncertainty map for every τ1 and τ2 of the grid (τ2 as "
                "a fraction of the path's mean per-logit largest relevance), beside the "
                "plain gradient.")
        finish(job, "ua_backprop_tuning", rows, "UA-Backprop's temperatures", text,
               "ua-backprop", {"n": args.n, "split": "valid", "tau1": TAU1,
                               "tau2_fractions": TAU2_FRACTIONS}, args.results)


if __name__ == "__main__":
    main()
