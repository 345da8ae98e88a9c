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

from sweeps import arguments, detection_scores, finish, validation_detection

from uattr.attribution import LIME
from uattr.ops import segment

# uattr's default (the uncertainty-attribution implementation's), an earlier choice, and
# the lime package's ImageNet default
SETTINGS = {"uattr's default": (1, 5, 0.2), "earlier": (2, 10, 0.5),
            "lime's ImageNet default": (4, 200, 0.2)}


def main() -> None:
    args = arguments(__doc__, "runs/tuning-lime").parse_args()
    with validation_detection(args, "lime_segments.py") as (job, detection_set):
        images, boxes = detection_set.images, detection_set.boxes
        rows = []
        for name, (kernel_size, max_dist, ratio) in SETTINGS.items():
            labels = segment.quickshift(images, kernel_size, max_dist, ratio)  # [N, H, W]
            counts = segment.num_segments(labels).double()  # [N]
            maps = LIME(job.posterior, "total", seed=0).attribute(images, segments=labels)
            rows.append({"quickshift": f"{name}: ({kernel_size}, {max_dist}, {ratio})",
                         "segments per image": float(counts.mean()),
                         "fewest": float(counts.min()), "most": float(counts.max()),
                         **detection_scores(maps, boxes)})
        text = (f"mnist valid, N = {args.n}, the detection set of the shipped ensemble: "
                "quickshift's segments per image and LIME's detection over them, for each "
                "setting (kernel_size, max_dist, ratio).")
        finish(job, "lime_segments", rows, "LIME's quickshift segments", text, "lime",
               {"n": args.n, "split": "valid",
                "settings": {k: list(v) for k, v in SETTINGS.items()}}, args.results)


if __name__ == "__main__":
    main()
