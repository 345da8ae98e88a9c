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

import argparse
import sys

import torch

from uattr.attribution import Grad, UABackprop
from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.detection import detection_images
from uattr.experiments.job import Section, running_command, write_report
from uattr.experiments.runs import markdown_table
from uattr.metrics import ada, box_iou, find_box

TAU1 = (0.1, 0.3, 1.0, 3.0)
TAU2_FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
PATHS = ("fullgrad", "gradient")
BATCH = 20  # images per relevance pass: [20, S, C, H, W] in memory at once


def image_ious(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[N]``: each image's IoU between its map's best box and the true patch."""
    return box_iou(find_box(maps, int(boxes[0, 2])), boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--out", default="runs/tuning-ua-backprop", help="run folder")
    parser.add_argument("--results", help="also copy the table to this folder")
    args = parser.parse_args()
    with running_command(sys.argv[1:], program="python tuning/ua_backprop.py"):
        job = open_job(Settings(data=DataSettings("mnist", "valid")), args.out)
        detection_set = detection_images(job, args.n)
        images, boxes = detection_set.images, detection_set.boxes
        rows = []
        grad = Grad(job.posterior, "total").attribute(images)
        iou = image_ious(grad, boxes)
        rows.append({"path": "plain gradient |∂U/∂x|", "τ1": None, "τ2 / scale": None,
                     "τ2": None, "IoU": float(iou.mean()),
                     "IoU s.e.": float(iou.std() / len(iou) ** 0.5), "ADA": ada(iou)})
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
                    iou = image_ious(method.from_relevance(relevance, probs).float(), boxes)
                    rows.append({"path": path, "τ1": tau1, "τ2 / scale": fraction,
                                 "τ2": fraction * scale, "IoU": float(iou.mean()),
                                 "IoU s.e.": float(iou.std() / len(iou) ** 0.5),
                                 "ADA": ada(iou)})
        job.out.write_table("ua_backprop_tuning", rows)
        text = (f"mnist valid, N = {args.n}, the detection set of the shipped ensemble: "
                "UA-Backprop's total-uncertainty map for every τ1 and τ2 of the grid (τ2 as "
                "a fraction of the path's mean per-logit largest relevance), beside the "
                "plain gradient.")
        print(markdown_table(rows))
        write_report(job, [Section("UA-Backprop's temperatures", text,
                                   [("ua_backprop_tuning", rows)], [])],
                     "report-tuning-ua-backprop.md",
                     arguments={"n": args.n, "split": "valid", "tau1": TAU1,
                                "tau2_fractions": TAU2_FRACTIONS})
        if args.results:
            job.out.publish(args.results)


if __name__ == "__main__":
    main()
