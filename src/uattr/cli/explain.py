"""``uattr explain``: maps of any method, on the built-in data or on the user's own
images and model.

    uattr explain --model member*.pt --images photos/ --size 32 --method grad
    uattr explain --dataset mnist --most-uncertain 8 --method "kernelshap (slic)"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..experiments.benchmarks import segmenters
from ..experiments.benchmarks.common import MethodSpec, most_uncertain
from ..experiments.explain import explain_images, write_explanation
from ..experiments.job import load_posterior, load_vae, log
from ..experiments.registry import ROWS, detection_methods
from ..experiments.runs import RunFolder, markdown_table
from ..experiments.settings import Settings
from ..ops import segment
from ..zoo import data
from ..zoo.images import load_images, parse_size
from .arguments import (
    EXPLAIN_METHODS,
    add_common,
    add_method_options,
    add_posterior_options,
    add_split_and_method,
    arguments_record,
    positive_int,
    settings_from,
)

__all__ = ["EXPLAIN_METHODS", "add_explain_parser", "cmd_explain"]

# Rows whose method works on segments: --segmenter and --segments apply to them.
_OVER_SEGMENTS = {"optimization", "kernelshap", "lime"}


def add_explain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attribute the uncertainty of some images (the data "
                                       "set's, or --images with --model)")
    add_common(p)
    add_method_options(p)
    add_posterior_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--most-uncertain", type=positive_int, default=8,
                       help="explain the data set's K most uncertain images (default 8)")
    which.add_argument("--indices", type=int, nargs="+", help="explain these images of --split")
    which.add_argument("--images", nargs="+", metavar="PATH",
                       help="your images: PNG/JPEG files, folders of them, or one .npy array "
                            "[N, H, W] or [N, C, H, W]")
    p.add_argument("--size", type=parse_size, default=None, metavar="N|HxW",
                   help="resize --images to this size (needed when they differ)")
    add_split_and_method(p)
    p.add_argument("--segmenter", default=None, choices=(*segmenters.SEGMENTER_NAMES, "sam"),
                   help="segments of a method over segments (optimization, kernelshap, lime), "
                        "instead of its own (learned: the data set's corruption detector; "
                        "sam: SAM's masks, with --sam-checkpoint)")
    p.add_argument("--sam-checkpoint", default=None, metavar="FILE",
                   help="SAM weights for --segmenter sam (needs pip install 'uattr[sam]')")
    p.add_argument("--sam-model-type", default="vit_h", help="SAM's model type (default vit_h)")
    p.add_argument("--segments", default=None, metavar="FILE.npy",
                   help="your own label maps [N, H, W] (or [H, W] for all), e.g. from SAM")
    p.add_argument("--box", type=positive_int, default=None,
                   help="side of the box of highest mean attribution (default: the detection "
                        "benchmark's patch, 10 px on 20-64 px images)")
    p.add_argument("--out", default="runs/explain", help="output folder")
    p.set_defaults(func=cmd_explain)


def _family(method: str) -> str:
    return method.split(" ")[0]


def _check(args: argparse.Namespace) -> None:
    """What argparse alone cannot see, checked before any work."""
    over_segments = _family(args.method) in _OVER_SEGMENTS
    for flag, value in (("--segmenter", args.segmenter), ("--segments", args.segments)):
        if value is not None and not over_segments:
            able = sorted(m for m in EXPLAIN_METHODS if _family(m) in _OVER_SEGMENTS)
            raise ValueError(f"{flag}: method {args.method!r} does not work on segments; those "
                             f"that do: {able}")
    if args.segmenter is not None and args.segments is not None:
        raise ValueError("--segmenter and --segments both give segments; choose one")
    if args.segmenter == "sam" and args.sam_checkpoint is None:
        raise ValueError("--segmenter sam needs --sam-checkpoint FILE (SAM's weights)")
    if args.size is not None and not args.images:
        raise ValueError("--size resizes --images; the data set's images keep their size")
    if args.images and args.segmenter == "learned":
        raise ValueError("--segmenter learned is the data set's corruption detector; on your "
                         "images use another segmenter or --segments")


def _user_images(args: argparse.Namespace) -> tuple[torch.Tensor, list[str]]:
    """``(images [N, C, H, W], file names)`` of ``--images``; the mapping to [0, 1] logged."""
    loaded = load_images(args.images, size=args.size)
    log(f"{len(loaded.images)} images {tuple(loaded.images.shape[1:])}, values mapped to "
        f"[0, 1] as {loaded.mapping}")
    return loaded.images, loaded.names


def _dataset_images(args: argparse.Namespace, posterior) -> tuple[torch.Tensor, list[str]]:
    """``(images [N, C, H, W], names #index)`` of the data set: ``--indices`` or the most
    uncertain."""
    split = data.load(args.dataset, args.split, root=args.data_dir)
    if args.indices:
        indices = torch.tensor(args.indices)
        return split.images[indices], [f"#{i}" for i in indices.tolist()]
    x, indices, _ = most_uncertain(posterior, split, args.most_uncertain,
                                   kind=args.uncertainty, device=args.device, progress=True)
    return x, [f"#{i}" for i in indices.tolist()]


def _user_segments(path: str, images: torch.Tensor) -> torch.Tensor:
    if not Path(path).is_file():
        raise FileNotFoundError(f"--segments: {path} does not exist")
    labels = np.load(path, allow_pickle=False)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"--segments must hold integer labels, got dtype {labels.dtype}")
    return segment.check_segments(torch.from_numpy(labels.astype(np.int64)), images,
                                  "--segments").cpu()


def _spec(args: argparse.Namespace, settings: Settings, posterior, shape) -> MethodSpec:
    """The row ``--method`` with ``--segmenter`` in place of its own segments."""
    row = next(row for row in ROWS if row.name == args.method)
    vae = None
    if row.generative:
        vae = load_vae(settings)[0]
        if tuple(vae.shape) != tuple(shape):
            raise ValueError(f"--method {args.method} searches the latent space of a VAE of "
                             f"{args.dataset} {tuple(vae.shape)}; your images are "
                             f"{tuple(shape)}: pass the --dataset your images look like")
    spec = detection_methods(posterior, settings.method, vae)[row.name]
    if args.segmenter is None:
        return spec
    if args.segmenter == "sam":
        make = segment.sam(args.sam_checkpoint, args.sam_model_type, device=args.device)
        return MethodSpec(spec.name, spec.method, make)
    make, _ = segmenters.job_segmenter(settings, args.segmenter)
    return MethodSpec(spec.name, spec.method, make)


def cmd_explain(args: argparse.Namespace) -> int:
    _check(args)
    settings = settings_from(args)
    if args.images:  # the model is checked on the user's images, not the data set's
        images, names = _user_images(args)
        posterior, _ = load_posterior(settings, tuple(images.shape[1:]))
    else:
        posterior, _ = load_posterior(settings)
        images, names = _dataset_images(args, posterior)
    segments = _user_segments(args.segments, images) if args.segments else None
    spec = _spec(args, settings, posterior, images.shape[1:])
    explanation = explain_images(spec, images, segments=segments,
                                 batch_size=args.batch_size, device=args.device,
                                 box_size=args.box, names=names)
    out = RunFolder(args.out)
    rows = write_explanation(out, images, names, explanation, method=args.method,
                             uncertainty=args.uncertainty,
                             extra={"arguments": arguments_record(args)})
    if explanation.diagnostics:
        out.write_table("diagnostics", explanation.diagnostics)
        print(markdown_table(explanation.diagnostics))
    for line in explanation.warnings:
        print(f"uattr: warning: {line}", file=sys.stderr)
    kind = args.uncertainty
    print(markdown_table([{"image": r["image"], f"U {kind}": r[f"U {kind}"],
                           f"U {kind}, box blurred": r[f"U {kind}, box blurred"],
                           "box (top, left, height, width)":
                               str(r["box (top, left, height, width)"])} for r in rows]))
    print(f"wrote {len(names)} figures, explanations.png, maps.npy and summary.json to "
          f"{out.path}")
    return 0
