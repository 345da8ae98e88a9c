"""What the validation sweeps of ``tuning/`` share: their options, the validation
detection set under a run record, a map's detection scores, and the table they write with
its report, run record and published copy."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.detection import DetectionSet, detection_images
from uattr.experiments.job import Job, Section, running_command, write_report
from uattr.experiments.runs import markdown_table
from uattr.metrics import ada, box_iou, find_box


def arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """A sweep's parser: ``--n`` validation images, ``--out`` run folder, ``--results``."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--out", default=out, help="run folder")
    parser.add_argument("--results", help="also copy the table to this folder")
    return parser


@contextmanager
def validation_detection(args: argparse.Namespace,
                         script: str) -> Iterator[tuple[Job, DetectionSet]]:
    """The job of MNIST's validation split in ``args.out`` and its detection set of
    ``args.n`` images, inside the run record of ``python tuning/<script>``."""
    with running_command(sys.argv[1:], program=f"python tuning/{script}"):
        job = open_job(Settings(data=DataSettings("mnist", "valid")), args.out)
        yield job, detection_images(job, args.n)


def image_ious(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[N]``: each image's IoU between its map's best box and the true patch."""
    return box_iou(find_box(maps, int(boxes[0, 2])), boxes)


def detection_scores(maps: torch.Tensor, boxes: torch.Tensor) -> dict[str, float]:
    """The detection columns of a row: mean IoU, its standard error, and ADA."""
    iou = image_ious(maps, boxes)
    return {"IoU": float(iou.mean()), "IoU s.e.": float(iou.std() / len(iou) ** 0.5),
            "ADA": ada(iou)}


def finish(job: Job, stem: str, rows: list[dict], title: str, text: str, report: str,
           settings: dict, results: str | None) -> None:
    """Write ``<stem>.{md,csv,json}``, print it, write ``report-tuning-<report>.md`` and
    its run record (``settings`` and the weights), and copy them to ``results``."""
    job.out.write_table(stem, rows)
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))
    write_report(job, [Section(title, text, [(stem, rows)], [])],
                 f"report-tuning-{report}.md", arguments=settings)
    if results:
        job.out.publish(results)
