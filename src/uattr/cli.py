"""The ``uattr`` command: ``train``, ``explain`` and ``run`` (the main job)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path

import torch

from . import data, segment, viz
from .attribution import (
    LIME,
    BlurIG,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
)
from .benchmarks.detection import (
    DetectionSet,
    MethodSpec,
    build_detection_set,
    run_detection,
    runtime_rows,
)
from .metrics import find_box
from .models import TrainConfig, load_or_train_ensemble, save_atomic
from .runs import RunFolder, markdown_table
from .uq import Ensemble, predict_probs, uncertainty

# Defaults of the optimization-based method on MNIST, chosen on the validation split
# (see docs/hyperparameters.md); the paper's are lam=3, tau=0.1.
DEFAULT_LAM = 3.0
DEFAULT_TAU = 0.1
DEFAULT_SIGMA_INIT = 0.05
DEFAULT_SLIC_SEGMENTS = 60
DEFAULT_SLIC_COMPACTNESS = 0.3


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    parser.add_argument("--data-dir", default=None,
                        help="folder of IDX files for fashion-mnist (default: Debian's path)")
    parser.add_argument("--members", type=int, default=5, help="ensemble size (default 5)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per member")
    parser.add_argument("--cache-dir", default=None,
                        help="where trained models are cached (default $UATTR_CACHE or "
                             "~/.cache/uattr)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uncertainty", default="total",
                        choices=("total", "aleatoric", "epistemic"))
    parser.add_argument("--lam", type=float, default=DEFAULT_LAM, help="sparsity weight λ")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU, help="Gumbel temperature τ")
    parser.add_argument("--sigma-init", type=float, default=DEFAULT_SIGMA_INIT,
                        help="initial blur width as a fraction of the image side")
    parser.add_argument("--n-segments", type=int, default=DEFAULT_SLIC_SEGMENTS,
                        help="slic segments per image")
    parser.add_argument("--compactness", type=float, default=DEFAULT_SLIC_COMPACTNESS,
                        help="slic compactness")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100,
                        help="images attributed together")


def _ensemble(args: argparse.Namespace, retrain: bool = False) -> tuple[Ensemble, dict]:
    """Train or load the cached ensemble the arguments describe, and log its accuracy."""
    train = data.load(args.dataset, "train", root=args.data_dir)
    test = data.load(args.dataset, "test", root=args.data_dir)
    members, info = load_or_train_ensemble(
        args.dataset, train, test, members=args.members, config=TrainConfig(epochs=args.epochs),
        cache=args.cache_dir, device=args.device, retrain=retrain, log=_log)
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    _log(f"ensemble of {args.members} on {args.dataset}: test accuracy "
         f"{info['ensemble_accuracy']:.4f} (members: {accs}); cached in {info['cache']}")
    return Ensemble(members), info


def cmd_train(args: argparse.Namespace) -> int:
    _, info = _ensemble(args, retrain=args.retrain)
    rows = [{"model": f"member {s}", "test accuracy": a}
            for s, a in enumerate(info["member_accuracy"])]
    rows.append({"model": "ensemble", "test accuracy": info["ensemble_accuracy"]})
    print(markdown_table(rows))
    print(f"cached in {info['cache']}")
    return 0


def _segmenter(name: str, args: argparse.Namespace):
    """The segmenter a command asked for, or ``None`` for pixel mode."""
    if name == "pixels":
        return None
    if name == "slic":
        return lambda x: segment.slic(x, n_segments=args.n_segments,
                                      compactness=args.compactness)
    return segment.get_segmenter(name)


def _optimization(posterior: Ensemble, args: argparse.Namespace, **overrides) -> OptimizationUA:
    return OptimizationUA(posterior, args.uncertainty, lam=args.lam, tau=args.tau,
                          sigma_init=args.sigma_init, seed=args.seed, progress=True, **overrides)


def cmd_explain(args: argparse.Namespace) -> int:
    posterior, _ = _ensemble(args)
    split = data.load(args.dataset, args.split, root=args.data_dir)
    if args.indices:
        indices = torch.tensor(args.indices)
        if (indices < 0).any() or (indices >= len(split)).any():
            raise ValueError(f"--indices must lie in [0, {len(split) - 1}]")
    else:
        u = uncertainty(predict_probs(posterior, split.images, device=args.device,
                                      progress=True), args.uncertainty)
        indices = torch.argsort(u, descending=True)[: args.most_uncertain]
    x = split.images[indices].to(args.device)
    segmenter = _segmenter(args.segmenter, args)
    segments = segmenter(x) if segmenter is not None else None
    if args.method == "grad":
        maps = Grad(posterior, args.uncertainty).attribute(x)
    else:
        maps = _optimization(posterior, args).attribute(x, segments=segments)
    u = uncertainty(predict_probs(posterior, x), args.uncertainty)
    out = RunFolder(args.out)
    titles = [f"#{i} U={v:.2f}" for i, v in zip(indices.tolist(), u.tolist(), strict=True)]
    out.save_figure("explanations.png", viz.explanation_grid(x.cpu(), segments, maps.cpu(),
                                                              titles=titles))
    out.write_npy("maps.npy", maps.cpu().numpy())
    out.write_npy("indices.npy", indices.numpy())
    print(f"wrote {out.path / 'explanations.png'} and {out.path / 'maps.npy'}")
    return 0


# The main job's size: every method costs ~11 s per image on 2 CPU cores together, so
# 25 images keep `make run` within its 15 minutes with training included; the paper's
# size is `uattr bench detection --n 500`.
RUN_N = 25


def _defaults(function) -> dict:
    """A function's keyword defaults, so that a cell's key changes when they do."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def detection_methods(posterior: Ensemble, args: argparse.Namespace) -> dict[str, MethodSpec]:
    """Every method of the detection table, configured by the command's arguments."""
    slic = _segmenter("slic", args)
    slic_config = {"n_segments": args.n_segments, "compactness": args.compactness}
    kind, seed = args.uncertainty, args.seed
    specs = [
        MethodSpec("optimization (slic)", _optimization(posterior, args), slic, slic_config),
        MethodSpec("optimization (pixels)", _optimization(posterior, args)),
        MethodSpec("grad", Grad(posterior, kind)),
        MethodSpec("smoothgrad", SmoothGrad(posterior, kind, seed=seed)),
        MethodSpec("integrated gradients", IntegratedGradients(posterior, kind)),
        MethodSpec("blur ig", BlurIG(posterior, kind)),
        MethodSpec("fullgrad", FullGrad(posterior, kind)),
        MethodSpec("guided backprop", GuidedBackprop(posterior, kind)),
        MethodSpec("ua-backprop", UABackprop(posterior, kind)),
        MethodSpec("occlusion", Occlusion(posterior, kind)),
        MethodSpec("kernelshap", KernelSHAP(posterior, kind, seed=seed)),
        MethodSpec("kernelshap (slic)", KernelSHAP(posterior, kind, seed=seed), slic,
                   slic_config),
        MethodSpec("lime", LIME(posterior, kind, seed=seed), segment.quickshift,
                   {"quickshift": _defaults(segment.quickshift)}),
        MethodSpec("lime (pixels)", LIME(posterior, kind, seed=seed), segment.pixels),
    ]
    return {spec.name: spec for spec in specs}


def cmd_bench_detection(args: argparse.Namespace) -> int:
    names = None if args.methods == ["all"] else args.methods
    return _detection(args, names)


def cmd_run(args: argparse.Namespace) -> int:
    return _detection(args, None)


def _detection(args: argparse.Namespace, names: list[str] | None) -> int:
    """Build (or load) the detection set, attribute it with ``names`` (all if None), and
    write the table and figure into the run folder."""
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    posterior, info = _ensemble(args)
    evaluated = data.load(args.dataset, args.split, root=args.data_dir)
    donors = data.load(args.dataset, "train", root=args.data_dir)
    out = RunFolder(args.out or f"runs/{args.dataset}-{args.split}-n{args.n}-seed{args.seed}")
    # The set is a function of the cached ensemble and the data alone: keep it beside the
    # ensemble, so that a rerun with the ensemble cached skips 20 000 forward passes.
    set_path = Path(info["cache"]) / (f"detection-{args.members}members-{args.split}-"
                                      f"n{args.n}-seed{args.seed}.pt")
    if set_path.exists():
        detection = DetectionSet(**torch.load(set_path))
    else:
        _log(f"building the detection set: the {args.n} most affected of {len(evaluated)} "
             f"{args.split} images")
        detection = build_detection_set(posterior, evaluated, donors, n=args.n,
                                        seed=args.seed, device=args.device)
        save_atomic(dataclasses.asdict(detection), set_path)

    available = detection_methods(posterior, args)
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {sorted(available)}")
    methods = [available[name] for name in (names or available)]
    rows, maps = run_detection(detection, methods, folder=out, batch_size=args.batch_size,
                               device=args.device, log=_log)

    examples = slice(0, min(8, args.n))
    results = {name: (m[examples], find_box(m[examples], detection.patch_size))
               for name, m in maps.items()}
    out.save_figure("detection_examples.png",
                    viz.detection_grid(detection.images[examples], detection.boxes[examples],
                                       results))
    out.write_table("detection", rows)
    runtime = runtime_rows(rows, batch_size=args.batch_size, device=args.device)
    out.write_table("runtime", runtime)
    out.write_json("detection_set.json", {"indices": detection.indices.tolist(),
                                          "boxes": detection.boxes.tolist(),
                                          "u_clean": detection.u_clean.tolist(),
                                          "u_corrupted": detection.u_corrupted.tolist(),
                                          "patch_delta": detection.patch_delta.tolist()})
    out.write_json("run.json", {"command": " ".join(sys.argv), "dataset": args.dataset,
                                "split": args.split, "n": args.n, "seed": args.seed,
                                "ensemble": info, "seconds": time.perf_counter() - start})
    print(f"\nDetection of problematic regions: {args.dataset} {args.split}, N = {args.n}, "
          f"seed {args.seed}, patch {detection.patch_size}×{detection.patch_size}, U = total\n")
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))
    print("\nRuntime (papers/000 Table 5): seconds and passes per image, this machine, "
          f"batch {args.batch_size}\n")
    print(markdown_table([{k: v for k, v in row.items() if k not in ("batch", "device")}
                          for row in runtime]))
    removes = int((detection.patch_delta < 0).sum())
    print(f"{removes} of {args.n} patches lower the mean intensity (on MNIST: they remove "
          "strokes, which a blur cannot put back)")
    print(f"run folder: {out.path}  ({time.perf_counter() - start:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uattr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or load) the ensemble and report test accuracy")
    _add_common(p)
    p.add_argument("--retrain", action="store_true", help="ignore the cache")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="attribute the uncertainty of some images")
    _add_common(p)
    _add_method_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--most-uncertain", type=int, default=8,
                       help="explain the K most uncertain images (default 8)")
    which.add_argument("--indices", type=int, nargs="+", help="explain these images")
    p.add_argument("--split", default="test", choices=data.SPLITS)
    p.add_argument("--method", default="optimization", choices=("optimization", "grad"))
    p.add_argument("--segmenter", default="slic", choices=tuple(segment.SEGMENTERS))
    p.add_argument("--out", default="runs/explain", help="output folder")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("run", help="the main job: the detection benchmark on every method")
    _add_common(p)
    _add_method_options(p)
    p.add_argument("--n", type=int, default=RUN_N,
                   help=f"images in the benchmark (default {RUN_N})")
    p.add_argument("--split", default="test", choices=data.SPLITS,
                   help="split to evaluate on; tune hyper-parameters on 'valid' only")
    p.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<split>-...)")
    p.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="the papers' benchmarks").add_subparsers(
        dest="benchmark", required=True)
    p = bench.add_parser("detection", help="problematic-region detection with every method "
                                          "(papers/000 Table 1, papers/001 Table 6)")
    _add_common(p)
    _add_method_options(p)
    p.add_argument("--n", type=int, default=500, help="images (default 500, the paper's)")
    p.add_argument("--split", default="test", choices=data.SPLITS)
    p.add_argument("--methods", nargs="+", default=["all"],
                   help="method names (see the table), or 'all'")
    p.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<split>-...)")
    p.set_defaults(func=cmd_bench_detection)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"uattr: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
