"""The ``uattr`` command: ``train``, ``explain``, ``run`` (the main job), ``bench`` and
``tabular`` (rows of a CSV file)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .. import viz
from ..experiments import studies
from ..experiments.amortized import load_or_train_amortized
from ..experiments.benchmarks import (
    blur_test,
    detection,
    explanation_uncertainty,
    faithfulness,
    figures,
    mitigation,
    segmenters,
)
from ..experiments.benchmarks.mitigation import MitigationSettings
from ..experiments.commands import BenchCommand
from ..experiments.job import (
    POSTERIOR_KINDS,
    Job,
    choose_methods,
    command_line,
    load_posterior,
    load_vae,
    log,
    open_job,
    running_command,
    write_report,
)
from ..experiments.registry import AMORTIZED, DETECTION_ROWS, ORACLE
from ..experiments.runs import RunFolder, markdown_table
from ..explanation.distributions import EXPLAINERS
from ..zoo import data
from .arguments import (
    add_common,
    add_method_options,
    add_parallel,
    add_posterior_options,
    add_results,
    arguments_record,
    positive_int,
    settings_from,
)
from .attribute import add_attribute_parser, check_attribute
from .explain import add_explain_parser, check_explain
from .preflight import (
    CommandLineParser,
    check_applicable,
    check_folder_settings,
    check_output_folder,
    check_ray,
    folder_settings,
    interrupted,
    one_line,
    write_folder_settings,
)
from .reproduce import add_reproduce_parser, add_spread_parser, check_reproduce, check_spread
from .tabular import add_tabular_parsers, check_tabular

# The main job's sizes: every benchmark once, small enough that `make run` on a fresh
# machine stays under 10 minutes on the slowest machine of this kind, which has run
# about 3.5× slower than the one these were timed on. Detection runs every method but
# the two oracle rows (an upper bound, not a method) on 2 images (~16 s an image); the
# faithfulness test refines each method's top pixels with up to 500 Adam steps per
# fraction (~10 s a method, whatever the images), so the main job refines two methods'
# maps (the optimization-based one and UA-Backprop); the blurring test ~6 s an image;
# the explanation-uncertainty comparison ~8 s an image. A smoke test of every
# benchmark, not a ranking: the papers' size is N = 500, every method: `uattr bench
# detection|faithfulness|blur-test --n 500`.
RUN_N_DETECTION = 2
RUN_DETECTION_METHODS = [name for name in DETECTION_ROWS
                         if not name.startswith(ORACLE) and name not in AMORTIZED]
RUN_N_FAITHFULNESS = 2
RUN_FAITHFULNESS_METHODS = ["optimization (pixels)", "ua-backprop"]
RUN_N_BLUR_TEST = 2
# papers/004 in the main job: every posterior × explanation method on one image, the
# single-network posteriors those trained on a fifth of the training set (shipped;
# `uattr bench explanation-uncertainty` uses those trained on all of it).
RUN_N_EXPLANATION = 1
RUN_POSTERIOR_TRAIN = 10_000
# papers/002 Table 2 in the main job: two methods' attention (UA-Backprop, the paper's,
# and the plain gradient), 50 training images, 100 test images (each needs a map: about
# 0.1 s each with UA-Backprop's 50 backward passes), one seed (`uattr bench mitigation`
# runs the paper's size, every method).
RUN_MITIGATION = MitigationSettings(train_images=50, test_images=100, runs=1,
                                    input_space=())
RUN_MITIGATION_METHODS = ["ua-backprop", "grad"]


def cmd_train(args: argparse.Namespace) -> int:
    if sum(map(bool, (args.vae, args.detector, args.amortized))) > 1:
        raise ValueError("--vae, --detector and --amortized each name what to train; "
                         "choose one")
    if args.vae:
        return _train_vae(args)
    if args.detector:
        return _train_detector(args)
    if args.amortized:
        return _train_amortized(args)
    if args.model:
        raise ValueError("--model: uattr train trains uattr's own posteriors; yours is "
                         "trained already")
    settings = settings_from(args)

    def load(retrain: bool = False) -> tuple[object, dict]:
        return POSTERIOR_KINDS[args.kind].load(settings, retrain)

    _, info = load(args.retrain)
    if args.ship:  # then as a benchmark loads them: the shipped, rounded weights
        files = ([f"member{s}.pt" for s in range(args.members)] if args.kind == "ensemble"
                 else ["model.pt"])
        _ship(args, info, {file: Path(info["cache"]) / file for file in files}, load)
        _, info = load()
    if args.kind == "ensemble":
        rows = [{"model": f"member {s}", "test accuracy": a}
                for s, a in enumerate(info["member_accuracy"])]
        rows.append({"model": "ensemble", "test accuracy": info["ensemble_accuracy"]})
    else:
        rows = [{"model": f"{args.kind}, one sample", "test accuracy":
                 info["sample_accuracy"]},
                {"model": f"{args.kind}, mean of {args.samples} samples",
                 "test accuracy": info["accuracy"]}]
    print(markdown_table(rows))
    print("the weights uattr ships" if info["shipped"] else f"cached in {info['cache']}")
    return 0


def _ship(args: argparse.Namespace, info: dict, files: dict[str, Path],
          reload: Callable[[], tuple[object, dict]]) -> None:
    """``--ship``: store the weights just trained (or cached) as the weights uattr ships,
    rounded to ``--ship``'s dtype, with their test scores computed from the rounded
    weights (:func:`uattr.zoo.weights.ship`)."""
    from ..zoo.weights import ship

    if info["shipped"]:
        raise ValueError(f"--ship: {info['name']} is shipped already; pass --retrain to "
                         "train it again and replace it")
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ValueError(f"--ship: the cache lacks {missing}")
    states = {file: torch.load(path, map_location="cpu", weights_only=True)
              for file, path in files.items()}

    def scores() -> dict:
        return {k: v for k, v in reload()[1].items()
                if "accuracy" in k or k in ("test_l1", "test_loss", "relative")}

    kind = ("vae" if args.vae else "detector" if args.detector
            else "amortized" if args.amortized else args.kind)
    entry = ship(info["name"], kind, info["spec"], states,
                 dtype=args.ship, command=command_line(), scores=scores)
    print(f"shipped {info['name']} ({args.ship}): {entry['scores']}")


def _train_vae(args: argparse.Namespace) -> int:
    """``uattr train --vae``: the data set's VAE (what CLUE and δ-CLUE search), its test
    reconstruction error, and a figure of test images over their reconstructions."""
    settings = settings_from(args)
    vae, info = load_vae(settings, retrain=args.retrain)
    if args.ship:
        _ship(args, info, {"model.pt": Path(info["cache"])}, lambda: load_vae(settings))
        vae, info = load_vae(settings)
    test = data.load(args.dataset, "test", root=args.data_dir)
    x = test.images[:12].to(args.device)
    with torch.no_grad():
        recon = vae.decode(vae.encode(x)[0])
    out = RunFolder(args.out or f"runs/vae-{args.dataset}")
    out.save_figure("reconstructions.png",
                    viz.image_rows({"test image": x.cpu(), "reconstruction": recon.cpu()}))
    print(markdown_table([{"model": f"VAE of {args.dataset}",
                           "test reconstruction error (mean absolute difference per pixel)":
                           info["test_l1"]}]))
    where = "the weights uattr ships" if info["shipped"] else f"cached in {info['cache']}"
    print(f"{where}; reconstructions in "
          f"{out.path / 'reconstructions.png'}")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    """``uattr train --detector NAME``: the data set's corruption detector (a segmenter's
    network), its loss on tampered test images of its own family, and the threshold of
    its region."""
    settings = settings_from(args)
    settings = dataclasses.replace(settings, posterior=dataclasses.replace(
        settings.posterior, retrain=args.retrain))
    _, info = segmenters.load_detector(settings, args.detector, scored=True)
    if args.ship:
        _ship(args, info, {"model.pt": Path(info["cache"])},
              lambda: segmenters.load_detector(settings, args.detector, scored=True))
        _, info = segmenters.load_detector(settings, args.detector, scored=True)
    print(markdown_table([{"detector": args.detector, "trained on":
                           segmenters.DETECTORS[args.detector].trained_on,
                           "test loss (its own tampering)": info["test_loss"],
                           "region threshold": info["relative"]}]))
    print("the weights uattr ships" if info["shipped"] else f"cached in {info['cache']}")
    return 0


def _train_amortized(args: argparse.Namespace) -> int:
    """``uattr train --amortized``: the amortised explainer of the chosen posterior
    (distilled from the per-pixel maps of its most uncertain training images, or loaded)."""
    settings = settings_from(args)
    posterior, _ = load_posterior(settings)

    def load(retrain: bool = False) -> tuple[object, dict]:
        return load_or_train_amortized(posterior, settings, retrain=retrain, log=log)

    _, info = load(args.retrain)
    if args.ship:
        _ship(args, info, {"model.pt": Path(info["cache"])}, load)
        _, info = load()
    print(markdown_table([{"explainer": info["name"], "training images": info["spec"]["n_train"],
                           "epochs": info["spec"]["epochs"]}]))
    print("the weights uattr ships" if info["shipped"] else f"cached in {info['cache']}")
    return 0


def _run_folder(args: argparse.Namespace) -> str:
    """``--out``, or the default folder of ``uattr run`` or ``uattr bench``."""
    if args.out:
        return args.out
    if args.command == "run":
        return f"runs/{args.dataset}-{args.split}-main-seed{args.seed}"
    return f"runs/{args.dataset}-{args.split}-n{args.n}-seed{args.seed}"


# What a run folder's tables depend on, beside each cell's own key: the images and the
# posterior. Benchmarks of other methods or sizes share a folder; other data or another
# posterior would mix tables of two models in one report.
_RUN_KEYS = ("dataset", "data_dir", "split", "kind", "model", "output", "num_samples",
             "members", "epochs", "arch", "ensemble_index", "retrain")


def _run_settings(args: argparse.Namespace) -> dict:
    return {k: v for k, v in folder_settings(args, ()).items() if k in _RUN_KEYS}


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: detection, faithfulness and the blurring test on every method, the
    explanation-uncertainty comparison and a small mitigation run, at small sizes, one run
    folder with ``report.md``."""
    job = open_job(settings_from(args), _run_folder(args))
    write_folder_settings(job.out.path, _run_settings(args))
    sections = [detection.benchmark(job, args.n_detection, RUN_DETECTION_METHODS),
                faithfulness.benchmark(job, args.n_faithfulness, RUN_FAITHFULNESS_METHODS),
                blur_test.benchmark(job, args.n_blur_test, args.blur_uncertainty),
                explanation_uncertainty.benchmark(job, args.n_explanation, None,
                                             list(EXPLAINERS)),
                mitigation.benchmark(job, RUN_MITIGATION, RUN_MITIGATION_METHODS)]
    report = write_report(job, sections, arguments=arguments_record(args))
    print(f"\nreport: {report}")
    _publish(job, args)
    return 0


# `uattr bench <name>`: each benchmark declares its command (help, options, run) in its
# own module
BENCHMARKS: dict[str, BenchCommand] = {command.name: command for command in (
    detection.COMMAND, faithfulness.COMMAND, blur_test.COMMAND, *studies.COMMANDS,
    segmenters.COMMAND, mitigation.COMMAND, figures.COMMAND, explanation_uncertainty.COMMAND)}


def cmd_bench(args: argparse.Namespace) -> int:
    job = open_job(settings_from(args), _run_folder(args))
    write_folder_settings(job.out.path, _run_settings(args))
    command = BENCHMARKS[args.benchmark]
    section = command.run(job, args)
    name = command.report(args) if command.report is not None else args.benchmark
    report = write_report(job, [section], f"report-{name}.md",
                          arguments=arguments_record(args))
    print(f"\nreport: {report}")
    _publish(job, args)
    return 0


def _publish(job: Job, args: argparse.Namespace) -> None:
    if args.results:
        written = job.out.publish(args.results)
        print(f"copied {len(written)} tables, figures and reports to {args.results}")


def cmd_table(args: argparse.Namespace) -> int:
    """Print a stored table (a run's ``<table>.json``) as Markdown, some columns only."""
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"file {path} does not exist")
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"file {path} is not JSON ({error})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"file {path} must hold a table: a JSON list of rows")
    every = list(dict.fromkeys(key for row in rows for key in row))
    columns = args.columns or every
    unknown = [c for c in columns if c not in every]
    if unknown:
        raise ValueError(f"--columns: {unknown} are not columns of {path}; it has {every}")
    print(f"<!-- results: {path.as_posix()} -->")
    print(markdown_table(rows, columns), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="uattr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("table", help="print a stored table (JSON) as Markdown, as the "
                                     "README quotes it")
    p.add_argument("file", help="a table's JSON, e.g. docs/results/<run>/detection.json")
    p.add_argument("--columns", nargs="+", default=None,
                   help="columns to print, in this order (default: all)")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("train", help="train (or load) a posterior and report test accuracy")
    add_common(p)
    add_posterior_options(p)
    add_method_options(p)  # what --amortized imitates: the per-pixel method's settings
    p.add_argument("--ship", nargs="?", const="float16", default=None,
                   choices=("float16", "float32"),
                   help="store the weights as those uattr ships (src/uattr/weights, rounded "
                        "to float16 unless float32 is given) and record their SHA-256, "
                        "command and test scores in its manifest.json")
    p.add_argument("--vae", action="store_true",
                   help="train (or load) the data set's VAE instead, which CLUE and δ-CLUE "
                        "search, and draw its reconstructions")
    p.add_argument("--detector", default=None, choices=tuple(segmenters.DETECTORS),
                   help="train (or load) the data set's corruption detector of this name "
                        "instead (the network of a detector segmenter)")
    p.add_argument("--amortized", action="store_true",
                   help="train (or load) the posterior's amortised explainer instead (the "
                        "'amortized' method: a mask network distilled from the per-pixel "
                        "maps of the training images the posterior is most unsure of)")
    p.add_argument("--out", default=None,
                   help="folder of the VAE's figure (default runs/vae-<dataset>)")
    p.set_defaults(func=cmd_train)

    add_explain_parser(sub)
    add_attribute_parser(sub)
    add_reproduce_parser(sub)
    add_spread_parser(sub)
    add_tabular_parsers(sub)

    p = sub.add_parser("run", help="the main job: detection, faithfulness and the blurring "
                                   "test on every method, with report.md")
    add_common(p)
    add_method_options(p)
    blur_test.BLUR_KIND.add_to(p)
    p.add_argument("--n-detection", type=positive_int, default=RUN_N_DETECTION,
                   help=f"images in the detection benchmark (default {RUN_N_DETECTION})")
    p.add_argument("--n-faithfulness", type=positive_int, default=RUN_N_FAITHFULNESS,
                   help=f"images in the faithfulness test (default {RUN_N_FAITHFULNESS})")
    p.add_argument("--n-blur-test", type=positive_int, default=RUN_N_BLUR_TEST,
                   help=f"images in the blurring test (default {RUN_N_BLUR_TEST})")
    p.add_argument("--n-explanation", type=positive_int, default=RUN_N_EXPLANATION,
                   help=f"images in the explanation-uncertainty comparison (default "
                        f"{RUN_N_EXPLANATION})")
    add_posterior_options(p, RUN_POSTERIOR_TRAIN)
    p.add_argument("--split", default="test", choices=data.SPLITS,
                   help="split to evaluate on; tune hyper-parameters on 'valid' only")
    add_parallel(p)
    p.add_argument("--out", default=None,
                   help="run folder (default runs/<dataset>-<split>-main-seed<seed>)")
    add_results(p)
    p.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="the papers' benchmarks at any size").add_subparsers(
        dest="benchmark", required=True)
    for command in BENCHMARKS.values():
        p = bench.add_parser(command.name, help=command.help)
        add_common(p)
        add_method_options(p)
        add_posterior_options(p)
        if command.on_ray:
            add_parallel(p)
        p.add_argument("--n", type=positive_int, default=500,
                       help="images (default 500, the papers')")
        p.add_argument("--split", default="test", choices=data.SPLITS)
        if command.methods is not None:
            p.add_argument("--methods", nargs="+", default=["all"],
                           help="method names (see the table), or 'all'")
        for option in command.options:
            option.add_to(p)
        p.set_defaults(**command.defaults)
        p.add_argument("--out", default=None,
                       help="run folder (default runs/<dataset>-<split>-n<N>-seed<seed>)")
        add_results(p)
        p.set_defaults(func=cmd_bench)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need the data set's size or more than one argument, run before any
    data is loaded or model trained; ``ValueError`` names the argument."""
    if args.command == "reproduce":
        check_reproduce(args)
        check_ray(args.workers, args.address)
        return
    if args.command == "spread":
        check_spread(args)
        return
    if args.command in ("tabular", "tabular-bench"):
        check_tabular(args)
        return
    if not hasattr(args, "device"):
        return  # uattr table: nothing to load or train
    check_applicable(args)
    check_ray(getattr(args, "workers", None), getattr(args, "address", None))
    for flag in ("out", "results"):
        if getattr(args, flag, None) is not None:
            check_output_folder(getattr(args, flag), f"--{flag}")
    if args.command in ("run", "bench"):
        folder = _run_folder(args)
        check_output_folder(folder, "--out")
        check_folder_settings(folder, _run_settings(args), "--out", keys=_RUN_KEYS,
                              remedy="choose another --out")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device must be a torch device such as cpu or cuda, got "
                         f"{args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch sees no CUDA GPU on this machine")
    command = BENCHMARKS.get(getattr(args, "benchmark", None))  # None: not uattr bench
    if getattr(args, "split", None) is not None and not getattr(args, "images", None):
        size = data.split_size(args.dataset, args.split, root=args.data_dir)
        where = f"the {size} {args.split} images of {args.dataset}"
        # a benchmark's --n may count something else, which its own check checks
        counted = [] if command and not command.n_counts_split_images else ["n"]
        for name in (*counted, "n_detection", "n_faithfulness", "n_blur_test",
                     "n_explanation", "most_uncertain"):
            value = getattr(args, name, None)
            if value is not None and value > size:
                raise ValueError(f"--{name.replace('_', '-')} must be at most {size} "
                                 f"({where}), got {value}")
        bad = [i for i in getattr(args, "indices", None) or [] if not 0 <= i < size]
        if bad:
            raise ValueError(f"--indices must lie in [0, {size - 1}] ({where}), got {bad}")
        if getattr(args, "limit", None) is not None and args.limit > size:
            raise ValueError(f"--limit must be at most {size} ({where}), got {args.limit}")
    if command is not None and command.check is not None:
        command.check(args)
    names = getattr(args, "methods", None)
    if command is not None and names is not None and names != ["all"]:
        # the job's own check, run before any data is loaded or model trained
        choose_methods(dict.fromkeys(command.methods(args)), names, args.benchmark)
    explained = {getattr(args, "uncertainty", None), getattr(args, "blur_uncertainty", None)}
    if "epistemic" in explained and args.kind == "ensemble" and not args.model \
            and args.members < 2:
        raise ValueError("--members must be at least 2 to explain epistemic uncertainty "
                         f"(one model has none), got {args.members}")
    if args.command == "explain":
        check_explain(args)
    if args.command == "attribute":
        check_attribute(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
        check_arguments(args)
        with running_command(argv):  # what the records name, however main was called
            return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"uattr: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()


if __name__ == "__main__":
    raise SystemExit(main())
