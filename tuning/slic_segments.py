"""Choose slic's segment count and compactness for the optimization-based method on a data
set's validation split (docs/hyperparameters.md), by the detection benchmark's IoU / ADA.

    python tuning/slic_segments.py --dataset photo-mnist \
        --results docs/results/photo-mnist-valid-n100-seed0
    python tuning/slic_segments.py --dataset mnist --grid 40:0.1 40:0.3 60:0.1 60:0.3 \
        80:0.1 80:0.3 --results docs/results/mnist-valid-n100-seed0

Each setting is ``uattr bench detection --split valid --n 100 --methods "optimization
(slic)" --n-segments N --compactness C`` in a folder of its own under ``--out`` (so a rerun
reuses every finished setting); the rows are gathered into ``slic.{md,csv,json}``, which
``--results`` copies with a run record naming the weights. The test images are never
read.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from uattr.experiments import DataSettings, MethodSettings, Settings, open_job
from uattr.experiments.benchmarks import detection
from uattr.experiments.job import Section, running_command, write_report
from uattr.experiments.runs import RunFolder, markdown_table
from uattr.metrics import box_iou, find_box
from uattr.ops import segment

METHOD = "optimization (slic)"
# the segment counts around the default 60, and its compactness 0.3 a third and 3 times
GRID = ((30, 0.3), (60, 0.3), (100, 0.3), (60, 0.1), (60, 1.0))
DEFAULT = (60, 0.3)


def image_ious(out: RunFolder) -> torch.Tensor:
    """``[N]``: each validation image's IoU, from the run's stored maps and true boxes."""
    maps = torch.from_numpy(np.load(out.path / "cells" / f"detection-{METHOD}.npy"))
    boxes = torch.tensor(out.read_json("detection_set.json")["boxes"])
    return box_iou(find_box(maps, int(boxes[0, 2])), boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="photo-mnist")
    parser.add_argument("--n", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--out", default="runs/tuning-slic", help="folder of the runs")
    parser.add_argument("--results", help="also copy the table to this folder")
    parser.add_argument("--grid", nargs="+", metavar="SEGMENTS:COMPACTNESS",
                        default=[f"{n}:{c:g}" for n, c in GRID],
                        help="the settings to score (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="where the method runs")
    args = parser.parse_args()
    with running_command(sys.argv[1:], program="python tuning/slic_segments.py"):
        run(args)


def run(args: argparse.Namespace) -> None:
    grid = [(int(n), float(c)) for n, c in (item.split(":") for item in args.grid)]
    if DEFAULT not in grid:
        raise ValueError(f"--grid must hold the default {DEFAULT[0]}:{DEFAULT[1]:g}, "
                         f"against which every setting is compared; got {args.grid}")
    rows, ious = [], {}
    for n_segments, compactness in grid:
        settings = Settings(data=DataSettings(args.dataset, "valid"),
                            method=MethodSettings(n_segments=n_segments,
                                                  compactness=compactness),
                            device=args.device)
        job = open_job(settings, f"{args.out}/{args.dataset}-n{n_segments}-c{compactness:g}")
        detection.benchmark(job, args.n, [METHOD])
        row = next(r for r in job.out.read_json("detection.json") if r["method"] == METHOD)
        images = detection.detection_images(job, args.n).images
        counts = segment.num_segments(segment.slic(images, n_segments=n_segments,
                                                   compactness=compactness))
        iou = ious[n_segments, compactness] = image_ious(job.out)
        rows.append({"slic": f"{n_segments} segments, compactness {compactness:g}",
                     "segments per image": float(counts.double().mean()),
                     "IoU": row["IoU"], "IoU s.e.": float(iou.std() / len(iou) ** 0.5),
                     "ADA": row["ADA"],
                     "IoU, brighter patch": row["IoU, brighter patch"],
                     "IoU, darker patch": row["IoU, darker patch"]})
    for row, key in zip(rows, grid, strict=True):  # paired: the same images in every run
        difference = ious[key] - ious[DEFAULT]
        row["IoU - default's"] = float(difference.mean())
        row["its s.e."] = float(difference.std() / len(difference) ** 0.5)
    job = open_job(Settings(data=DataSettings(args.dataset, "valid"), device=args.device),
                   args.out)
    job.out.write_table("slic", rows)
    print(markdown_table(rows))
    text = (f"{args.dataset} valid, N = {args.n}: the optimization-based method over slic "
            "segments of each count and compactness, by detection IoU / ADA, each against "
            f"the default {DEFAULT[0]} segments at compactness {DEFAULT[1]:g} on the same "
            "images.")
    write_report(job, [Section("slic's settings", text, [("slic", rows)], [])],
                 "report-tuning-slic.md",
                 arguments={"dataset": args.dataset, "n": args.n, "split": "valid",
                            "grid": args.grid, "device": args.device})
    if args.results:
        job.out.publish(args.results)


if __name__ == "__main__":
    main()
