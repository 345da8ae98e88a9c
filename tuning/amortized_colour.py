"""Does the amortised explainer's distillation, chosen on MNIST, carry over to colour?
The same variants on photo-mnist's validation split.

    python tuning/amortized_colour.py --results docs/results/photo-mnist-valid-n100-seed0

The shipped colour ensemble's targets are those :mod:`uattr.experiments.amortized` makes
(the per-pixel method's maps, mask rule, of the 3000 training images the ensemble is most
unsure of; stored and shared with ``uattr train --amortized --dataset photo-mnist``). Each
variant of ``python tuning/amortized_distill.py`` is distilled from them and scored on the
validation detection images (N = 100, slic compactness 0.1 as photo-mnist's tables)
against the per-pixel method there, paired. The test split is never read.
"""

from __future__ import annotations

import sys

from amortized_distill import BATCH, LR, VARIANTS, distilled_variants, paired_to_reference
from sweeps import arguments, image_ious

from uattr.experiments import DataSettings, MethodSettings, Settings, open_job
from uattr.experiments.amortized import DEFAULT_CONFIG, distillation_targets, targets_folder
from uattr.experiments.benchmarks.detection import detection_images
from uattr.experiments.job import Section, log, running_command, write_report
from uattr.experiments.registry import per_pixel_optimization
from uattr.experiments.runs import markdown_table
from uattr.ops.rng import index_generators

DATASET = "photo-mnist"


def main() -> None:
    args = arguments(__doc__, "runs/tuning-amortized-colour").parse_args()
    with running_command(sys.argv[1:], program="python tuning/amortized_colour.py"):
        settings = Settings(data=DataSettings(DATASET, "valid"),
                            method=MethodSettings(compactness=0.1))
        job = open_job(settings, args.out)
        detection_set = detection_images(job, args.n)
        images, boxes = detection_set.images, detection_set.boxes
        train = Settings(data=DataSettings(DATASET, "train"))
        x, maps = distillation_targets(job.posterior, train, DEFAULT_CONFIG,
                                       targets_folder(job.posterior, train, DEFAULT_CONFIG),
                                       log=log)
        reference = per_pixel_optimization(job.posterior, settings.method, stop="mask",
                                           seed=0, progress=False).attribute(
            images, generator=index_generators(0, range(len(images))))
        base = image_ious(reference, boxes).double()
        scored = [("per-image method, per pixel, mask rule", reference)]
        scored += [(name, distilled.attribute(images))
                   for name, distilled in distilled_variants(job.posterior, job.settings, x,
                                                             maps)]
        rows = paired_to_reference(base, scored, boxes)
        job.out.write_table("amortized_colour", rows)
        print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))
        text = (f"{DATASET} valid, N = {args.n} detection images of the shipped colour "
                "ensemble; the variants of tuning/amortized_distill.py distilled from the "
                f"per-pixel maps of its {len(x)} most uncertain training images, each scored "
                "against the per-image method per pixel (mask rule), paired.")
        write_report(job, [Section("Amortising by distillation, on colour", text,
                                   [("amortized_colour", rows)], [])],
                     "report-tuning-amortized-colour.md",
                     arguments={"n": args.n, "split": "valid", "dataset": DATASET,
                                "variants": [list(v) for v in VARIANTS], "batch": BATCH,
                                "lr": LR, "n_train": DEFAULT_CONFIG.n_train})
        if args.results:
            job.out.publish(args.results)


if __name__ == "__main__":
    main()
