"""Which map, over which segments, should the amortised explainer's segment row give?
The shipped explainer's map, the first-order blur effect, and their average, per pixel and
over slic segments of several sizes, on a data set's validation split.

    python tuning/amortized_first_order.py --dataset photo-mnist --n 300 \
        --results docs/results/photo-mnist-valid-n300-seed0
    python tuning/amortized_first_order.py --dataset mnist --n 300 \
        --results docs/results/mnist-valid-n300-seed0

The maps: ``q``, the shipped explainer's (``AmortizedUA``); ``e``, the first-order blur
effect ``∂U/∂x · (x - blur(x))`` (one forward and one backward pass of the posterior) kept
where positive and scaled by its largest pixel; and ``(q + e) / 2``
(``AmortizedUA(first_order=True)``). Each is scored per pixel and averaged over slic
segments (the data set's compactness: 0.1 on photo-mnist, the default elsewhere) on the
validation detection images, paired with the row ``amortized (slic)`` (``q`` over the
settings' 60 segments). 300 images rather than the other sweeps' 100: the variants differ
by a few hundredths, which 100 images' paired standard errors of about 0.02 would not
tell apart. The test split is never read.
"""

from __future__ import annotations

import sys

import torch
from sweeps import arguments, detection_scores, image_ious

from uattr import AmortizedUA
from uattr.experiments import DataSettings, MethodSettings, Settings, open_job
from uattr.experiments.benchmarks.detection import detection_images
from uattr.experiments.job import Section, running_command, write_report
from uattr.experiments.runs import markdown_table
from uattr.ops import segment
from uattr.ops.segment import segment_means

SEGMENT_COUNTS = (15, 20, 25, 30, 40, 60)
COMPACTNESS = {"photo-mnist": 0.1}  # photo-mnist's, chosen by tuning/slic_segments.py


def over_segments(maps: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]``: each map's mean over each of its image's segments."""
    return segment_means(maps, segments).gather(1, segments.flatten(1)).view_as(maps)


def main() -> None:
    parser = arguments(__doc__, "runs/tuning-amortized-first-order")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "photo-mnist"))
    args = parser.parse_args()
    with running_command(sys.argv[1:], program="python tuning/amortized_first_order.py"):
        method = MethodSettings()
        if args.dataset in COMPACTNESS:
            method = MethodSettings(compactness=COMPACTNESS[args.dataset])
        job = open_job(Settings(data=DataSettings(args.dataset, "valid"), method=method),
                       args.out)
        detection_set = detection_images(job, args.n)
        x, boxes = detection_set.images, detection_set.boxes
        network = job.amortized_for(["amortized"])
        kept = {"lam": method.lam, "tau": method.tau, "sigma_init": method.sigma_init}
        explainer = AmortizedUA(job.posterior, method.uncertainty, network=network, **kept)
        averaged = AmortizedUA(job.posterior, method.uncertainty, network=network,
                               first_order=True, **kept)
        q, both = explainer.attribute(x), averaged.attribute(x)
        maps = {"explainer q": q, "first-order effect e": explainer.scaled_effect(x),
                "(q + e) / 2": both}
        segments = {n: segment.slic(x, n_segments=n, compactness=method.compactness)
                    for n in SEGMENT_COUNTS}
        reference = image_ious(over_segments(q, segments[method.n_segments]), boxes).double()
        rows = []
        for name, found in maps.items():
            units = [("pixels", found)] + [(f"slic, {n} segments", over_segments(found, seg))
                                           for n, seg in segments.items()]
            for unit, scored in units:
                difference = image_ious(scored, boxes).double() - reference
                rows.append({"map": name, "segments": unit, "n": len(x),
                             **detection_scores(scored, boxes),
                             "IoU - amortized (slic)": float(difference.mean()),
                             "its s.e.": float(difference.std() / len(difference) ** 0.5)})
        job.out.write_table("amortized_first_order", rows)
        print(markdown_table(rows))
        text = (f"{args.dataset} valid, N = {args.n} detection images of the shipped "
                "ensemble and its shipped amortised explainer: its map q, the first-order "
                "blur effect e (kept where positive, scaled by its largest pixel) and their "
                "average, per pixel and over slic segments (compactness "
                f"{method.compactness}), paired with q over {method.n_segments} segments "
                "(the row amortized (slic)).")
        write_report(job, [Section("The amortised map and the first-order effect", text,
                                   [("amortized_first_order", rows)], [])],
                     "report-tuning-amortized-first-order.md",
                     arguments={"n": args.n, "split": "valid", "dataset": args.dataset,
                                "segment counts": list(SEGMENT_COUNTS)})
        if args.results:
            job.out.publish(args.results)


if __name__ == "__main__":
    main()
