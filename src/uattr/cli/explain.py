"""``uattr explain``: maps of any method, on the built-in data or on the user's own
images and model.

    uattr explain --model member*.pt --images photos/ --size 32 --method grad
    uattr explain --dataset mnist --most-uncertain 8 --method "kernelshap-fixed (slic)"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..experiments.amortized import load_or_train_amortized
from ..experiments.benchmarks import segmenters
from ..experiments.common import MethodSpec, most_uncertain
from ..experiments.explain import explain_images, write_explanation
from ..experiments.job import load_posterior, load_vae, log
from ..experiments.registry import ROWS, detection_methods, needs_amortized, registry_row
from ..experiments.runs import RunFolder, markdown_table
from ..experiments.settings import Settings
from ..ops import segment
from ..posteriors.loading import is_factory
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
from .preflight import (
    RECORD,
    check_folder_settings,
    check_output_folder,
    check_package,
    folder_settings,
    write_folder_settings,
)

__all__ = ["EXPLAIN_METHODS", "add_explain_parser", "check_explain", "cmd_explain"]



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
    p.add_argument("--size", type=_size, default=None, metavar="N|HxW",
                   help="resize --images to this size (needed when they differ)")
    add_split_and_method(p)
    p.add_argument("--segmenter", default=None, choices=(*segmenters.SEGMENTER_NAMES, "sam"),
                   help="segments of a method over segments (optimization, kernelshap-fixed, "
                        "lime), instead of its own (paste-detector, retouch-detector: the data "
                        "set's corruption detectors; "
                        "sam: SAM's masks, with --sam-checkpoint)")
    p.add_argument("--sam-checkpoint", default=None, metavar="FILE",
                   help="SAM weights for --segmenter sam (needs pip install 'uattr[sam]')")
    p.add_argument("--sam-model-type", default="vit_h", help="SAM's model type (default vit_h)")
    p.add_argument("--segments", default=None, metavar="FILE.npy",
                   help="your own label maps [N, H, W] (or [H, W] for all), e.g. from SAM")
    p.add_argument("--box", type=positive_int, default=None,
                   help="side of the box of highest mean attribution (default: the detection "
                        "benchmark's patch, 10 px on 20-64 px images)")
    p.add_argument("--out", default="runs/explain",
                   help="output folder (default runs/explain); it records the settings it "
                        "was made with and refuses others")
    p.add_argument("--overwrite", action="store_true",
                   help="replace what an earlier explain of other settings wrote to --out")
    p.set_defaults(func=cmd_explain)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as error:  # argparse would print "invalid value" instead
        raise argparse.ArgumentTypeError(str(error).removeprefix("--size ")) from None


# What uattr explain writes into its folder, and nothing else: --overwrite removes these
# alone, so that an --out given by mistake (a home folder) loses nothing else.
_WRITES = ("explain-*.png", "explanations.png", "maps.npy", "summary.json",
           "diagnostics.md", "diagnostics.csv", "diagnostics.json", RECORD)
# Arguments that do not change what the folder holds
_NOT_RECORDED = ("out", "overwrite", "batch_size")


def check_explain(args: argparse.Namespace) -> None:
    """What argparse alone cannot see, checked before any model or data is loaded."""
    row = registry_row(args.method)
    for flag, value in (("--segmenter", args.segmenter), ("--segments", args.segments)):
        if value is not None and not row.over_segments:
            able = sorted(r.name for r in ROWS if r.over_segments and not r.oracle)
            raise ValueError(f"{flag}: method {args.method!r} does not work on segments; those "
                             f"that do: {able}")
    if args.segmenter is not None and args.segments is not None:
        raise ValueError("--segmenter and --segments both give segments; choose one")
    if row.hooks and args.model and not any(is_factory(spec) for spec in args.model):
        raise ValueError(f"--method {args.method!r} hooks the network's layers, which the "
                         "TorchScript files of --model compile away: choose a method "
                         "without hooks, or give --model as module:function or "
                         "file.py:function returning Python modules")
    if args.segmenter == "sam" and args.sam_checkpoint is None:
        raise ValueError("--segmenter sam needs --sam-checkpoint FILE (SAM's weights)")
    if args.size is not None and not args.images:
        raise ValueError("--size resizes --images; the data set's images keep their size")
    if args.images and args.segmenter in segmenters.DETECTORS:
        raise ValueError(f"--segmenter {args.segmenter} is a corruption detector of the data "
                         "set; on your images use another segmenter or --segments")
    if args.segmenter == "sam":
        check_package("segment_anything", "--segmenter sam", "uattr[sam]")
        if not Path(args.sam_checkpoint).is_file():
            raise ValueError(f"--sam-checkpoint: {args.sam_checkpoint} is not a file")
    elif args.sam_checkpoint is not None:
        raise ValueError("--sam-checkpoint applies to --segmenter sam only")
    if args.images:
        missing = [p for p in args.images if not Path(p).exists()]
        if missing:
            raise ValueError(f"--images: {missing[0]} does not exist")
        shape = (None, *args.size) if args.size else None
    else:
        shape = data.image_shape(args.dataset)
    if shape is not None and args.box is not None and args.box > min(shape[1:]):
        raise ValueError(f"--box must be at most {min(shape[1:])} (the side of the images, "
                         f"{shape[1]}×{shape[2]}), got {args.box}")
    if args.segments is not None:
        count = None if args.images else (len(args.indices) if args.indices
                                          else args.most_uncertain)
        _check_segments_file(args.segments, None if shape is None else shape[1:], count)
    check_output_folder(args.out, "--out")
    _check_folder(args)


def _check_segments_file(path: str, size: tuple[int, int] | None, count: int | None) -> None:
    """The label file's header (dtype, shape) against the images, before anything loads."""
    if not Path(path).is_file():
        raise ValueError(f"--segments: {path} is not a file")
    try:
        labels = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"--segments: {path} is not a .npy array of numbers "
                         f"({type(error).__name__})") from None
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"--segments must hold integer labels, got dtype {labels.dtype}")
    expected = "[H, W] or [N, H, W]" if size is None else \
        f"[{size[0]}, {size[1]}] or [{count or 'N'}, {size[0]}, {size[1]}]"
    if labels.ndim not in (2, 3) or (size is not None and tuple(labels.shape[-2:]) != size) \
            or (labels.ndim == 3 and count is not None and labels.shape[0] != count):
        raise ValueError(f"--segments must have shape {expected}, got {labels.shape}")


def _explain_settings(args: argparse.Namespace) -> dict:
    return folder_settings(args, _NOT_RECORDED)


def _written_here(folder: Path) -> set[Path]:
    return {path for pattern in _WRITES for path in folder.glob(pattern)}


def _check_folder(args: argparse.Namespace) -> None:
    """``--out`` is new, empty, or made by uattr explain with these settings (or
    ``--overwrite``); never a folder holding files explain does not write."""
    folder = Path(args.out)
    if not folder.is_dir():
        return
    others = sorted(p.name for p in folder.iterdir() if p not in _written_here(folder)
                    and not p.name.endswith(".tmp"))
    if others:
        raise ValueError(f"--out {folder} holds files uattr explain does not write (e.g. "
                         f"{others[0]}); choose another --out")
    if not args.overwrite and _written_here(folder):
        if not (folder / RECORD).exists():
            raise ValueError(f"--out {folder} holds the figures of an earlier explain whose "
                             "settings it does not record; choose another --out or pass "
                             "--overwrite to replace them")
        check_folder_settings(folder, _explain_settings(args), "--out",
                              remedy="choose another --out or pass --overwrite to replace "
                                     "them")


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


def _spec(args: argparse.Namespace, settings: Settings, posterior, shape,
          weights: dict[str, str]) -> MethodSpec:
    """The row ``--method`` with ``--segmenter`` in place of its own segments; the SHA-256
    of the networks it loads (the VAE, a detector) are added to ``weights``."""
    row = next(row for row in ROWS if row.name == args.method)
    vae = None
    if row.generative:
        vae, info = load_vae(settings)
        weights.update(info["weights"])
        if tuple(vae.shape) != tuple(shape):
            raise ValueError(f"--method {args.method} searches the latent space of a VAE of "
                             f"{args.dataset} {tuple(vae.shape)}; your images are "
                             f"{tuple(shape)}: pass the --dataset your images look like")
    amortized = None
    if needs_amortized([row.name], settings.method):
        explainer, info = load_or_train_amortized(posterior, settings, log=log)
        weights.update(info["weights"])
        amortized = explainer.network
    spec = detection_methods(posterior, settings.method, vae, amortized)[row.name]
    if args.segmenter is None:
        return spec
    if args.segmenter == "sam":
        make = segment.sam(args.sam_checkpoint, args.sam_model_type, device=args.device)
        return MethodSpec(spec.name, spec.method, make)
    make, config = segmenters.job_segmenter(settings, args.segmenter)
    weights.update((config or {}).get("detector", {}).get("weights", {}))
    return MethodSpec(spec.name, spec.method, make)


def cmd_explain(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.images:  # the model is checked on the user's images, not the data set's
        images, names = _user_images(args)
        side = min(images.shape[-2:])
        if args.box is not None and args.box > side:
            raise ValueError(f"--box must be at most {side} (the side of your images, "
                             f"{images.shape[-2]}×{images.shape[-1]}), got {args.box}")
        if args.segments:
            _check_segments_file(args.segments, tuple(images.shape[-2:]), len(images))
        posterior, info = load_posterior(settings, tuple(images.shape[1:]))
    else:
        posterior, info = load_posterior(settings)
        images, names = _dataset_images(args, posterior)
    segments = _user_segments(args.segments, images) if args.segments else None
    weights = dict(info.get("weights", {}))
    spec = _spec(args, settings, posterior, images.shape[1:], weights)
    explanation = explain_images(spec, images, segments=segments,
                                 batch_size=args.batch_size, device=args.device,
                                 box_size=args.box, names=names)
    out = RunFolder(args.out)
    for path in _written_here(out.path):  # same settings, or --overwrite: nothing mixes
        path.unlink()
    write_folder_settings(out.path, _explain_settings(args))
    rows = write_explanation(out, images, names, explanation, method=args.method,
                             uncertainty=args.uncertainty,
                             extra={"arguments": arguments_record(args),
                                    "weights": dict(sorted(weights.items()))})
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
