"""LIME's quickshift segments on MNIST's validation split (docs/hyperparameters.md): how
many segments each setting makes of a digit, and LIME's detection IoU / ADA over them.

    python tuning/lime_segments.py --results docs/results/mnist-valid-n100-seed0

On the detection set of the validation split (the 100 validation images whose
uncertainty the patch swap raised most under the shipped ensemble), each quickshift
setting ``(kernel_size, max_dist, ratio)``: the segments per image (mean, least, most)
and LIME's total-uncertainty map over them. The table ``lime_segments.{md,csv,json}``
lands in ``--out`` and, with ``--results``, there too. The test images are never read.
"""

from __future__ import annotations

import argparse
import sys

from uattr.attribution import LIME
from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.detection import detection_images
from uattr.experiments.job import Section, running_command, write_report
from uattr.experiments.runs import markdown_table
from uattr.metrics import ada, box_iou, find_box
from uattr.ops import segment

# uattr's default (the uncertainty-attribution implementation's), an earlier choice, and
# the lime package's ImageNet default
SETTINGS = {"uattr's default": (1, 5, 0.2), "earlier": (2, 10, 0.5),
            "lime's ImageNet default": (4, 200, 0.2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--out", default="runs/tuning-lime", help="run folder")
    parser.add_argument("--results", help="also copy the table to this folder")
    args = parser.parse_args()
    with running_command(sys.argv[1:], program="python tuning/lime_segments.py"):
        job = open_job(Settings(data=DataSettings("mnist", "valid")), args.out)
        detection_set = detection_images(job, args.n)
        images, boxes = detection_set.images, detection_set.boxes
        rows = []
        for name, (kernel_size, max_dist, ratio) in SETTINGS.items():
            labels = segment.quickshift(images, kernel_size, max_dist, ratio)  # [N, H, W]
            counts = segment.num_segments(labels).double()  # [N]
            maps = LIME(job.posterior, "total", seed=0).attribute(images, segments=labels)
            iou = box_iou(find_box(maps, int(boxes[0, 2])), boxes)
            rows.append({"quickshift": f"{name}: ({kernel_size}, {max_dist}, {ratio})",
                         "segments per image": float(counts.mean()),
                         "fewest": float(counts.min()), "most": float(counts.max()),
                         "IoU": float(iou.mean()),
                         "IoU s.e.": float(iou.std() / len(iou) ** 0.5), "ADA": ada(iou)})
        job.out.write_table("lime_segments", rows)
        text = (f"mnist valid, N = {args.n}, the detection set of the shipped ensemble: "
                "quickshift's segments per image and LIME's detection over them, for each "
                "setting (kernel_size, max_dist, ratio).")
        print(markdown_table(rows))
        write_report(job, [Section("LIME's quickshift segments", text,
                                   [("lime_segments", rows)], [])],
                     "report-tuning-lime.md",
                     arguments={"n": args.n, "split": "valid",
                                "settings": {k: list(v) for k, v in SETTINGS.items()}})
        if args.results:
            job.out.publish(args.results)


if __name__ == "__main__":
    main()
