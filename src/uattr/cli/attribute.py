"""``uattr attribute``: the maps of a whole split, in resumable shards, in one process or
on Ray.

    uattr attribute --dataset mnist --split test --method "optimization (slic)" --workers 2
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..experiments.attribute import attribute_dataset, most_uncertain
from ..experiments.healing import DAMAGED
from ..experiments.job import command_line, log
from ..experiments.runs import RunFolder, markdown_table
from ..zoo import data
from .arguments import (
    add_common,
    add_method_options,
    add_parallel,
    add_posterior_options,
    add_results,
    add_split_and_method,
    arguments_record,
    non_negative,
    positive_int,
    settings_from,
)
from .preflight import (
    RECORD,
    check_folder_settings,
    check_output_folder,
    folder_settings,
    write_folder_settings,
)

__all__ = ["add_attribute_parser", "check_attribute", "cmd_attribute"]

SHARD_SIZE = 200  # images per shard: minutes of work for the slow methods, so Ray's
# per-task cost (milliseconds) is lost in it, and a killed run loses at most one shard
TOP = 10  # the most uncertain images the command lists


def add_attribute_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", help="the maps of every image of a split, in resumable "
                                         "shards, in one process or on Ray")
    add_common(p)
    add_method_options(p)
    add_posterior_options(p)
    add_split_and_method(p)
    p.add_argument("--limit", type=positive_int, default=None,
                   help="only the first N images of the split")
    p.add_argument("--shard-size", type=positive_int, default=SHARD_SIZE,
                   help=f"images per shard file (default {SHARD_SIZE})")
    add_parallel(p)
    p.add_argument("--stop-after", type=non_negative, default=None, metavar="MINUTES",
                   help="start no shard after this many minutes (those running finish) and "
                        "write the tables of the maps so far: for a job with a wall-time "
                        "limit; the same command continues where it stopped")
    p.add_argument("--out", default=None,
                   help="folder of the shards (default runs/attribute-<dataset>-<split>-"
                        "<method>)")
    add_results(p)
    p.set_defaults(func=cmd_attribute)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# What uattr attribute writes into its folder, and a README.md that may describe it; a
# folder holding anything else is another command's and is refused.
_WRITES = ("manifest.json", "timing.*", "shard-*.npz", "most_uncertain.*", "run-attribute.json",
           RECORD, f"*{DAMAGED}", "tmp*.tmp", "README.md")
# Arguments that do not change the maps: where the shards run, how many at once and when
# the run stops
_NOT_RECORDED = ("out", "results", "workers", "address", "batch_size", "stop_after")


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.out or f"runs/attribute-{args.dataset}-{args.split}-{_slug(args.method)}")


def check_attribute(args: argparse.Namespace) -> None:
    """The folder, before the posterior is loaded: writable, and new or made by
    uattr attribute with these settings (the manifest, checked once the posterior is
    loaded, then compares the weights too)."""
    folder = _folder(args)
    check_output_folder(folder, "--out")
    if not folder.is_dir():
        return
    ours = {path for pattern in _WRITES for path in folder.glob(pattern)}
    others = sorted(p.name for p in folder.iterdir() if p not in ours)
    if others:
        raise ValueError(f"--out {folder} holds files uattr attribute does not write (e.g. "
                         f"{others[0]}); choose another --out")
    check_folder_settings(folder, folder_settings(args, _NOT_RECORDED), "--out",
                          remedy="choose another --out or remove it")


def cmd_attribute(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    folder = str(_folder(args))
    write_folder_settings(folder, folder_settings(args, _NOT_RECORDED))
    result = attribute_dataset(settings, args.method, folder, limit=args.limit,
                               shard_size=args.shard_size, workers=args.workers,
                               address=args.address, log=log,
                               stop_after=None if args.stop_after is None
                               else 60 * args.stop_after)
    images = data.load(args.dataset, args.split, root=args.data_dir).images
    planned = result.manifest["data"]["images"]
    rows, figure = most_uncertain(result, images, args.uncertainty, TOP)
    print(f"\nThe {len(rows)} most uncertain of the {len(result.indices)} images, and where "
          "their maps point:\n")
    print(markdown_table(rows))
    out = RunFolder(folder)
    out.write_table("most_uncertain", rows)
    out.save_figure("most_uncertain.png", figure)
    if result.timing:
        print(f"\nThe invocations that wrote {folder} (timing.json):\n")
        print(markdown_table(result.timing))
        out.write_table("timing", result.timing)  # timing.json as it was, beside .md, .csv
    out.write_json("run-attribute.json", {**arguments_record(args), "command": command_line(),
                                          "manifest": result.manifest,
                                          "images": len(result.indices),
                                          "complete": len(result.indices) == planned})
    if args.results:  # what a document quotes; never the shards
        written = out.publish(args.results)
        print(f"copied {len(written)} tables, figures and records to {args.results}")
    if len(result.indices) < planned:
        print(f"{len(result.indices)} of {planned} images attributed so far: the same command "
              "continues from the shards written")
    print(f"maps of {len(result.indices)} images in {folder}, the most uncertain drawn in "
          "most_uncertain.png (read the maps with uattr.experiments.attribute.load_maps)")
    return 0
