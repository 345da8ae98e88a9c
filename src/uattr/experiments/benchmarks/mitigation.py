"""Uncertainty mitigation with attention (papers/002 §5.2.2 and Table 2).

A random subset of the training split (500 images on MNIST, the paper's) gets each
method's map of the ensemble's epistemic uncertainty, turned into an attention
``A = (1 - M) ⊙ M`` (:mod:`uattr.mitigation`); a fresh :class:`~uattr.mitigation.
AttentionCNN` is trained on the subset with it, and ACC and NLL are measured on a fixed
random subset of the evaluated split, each image with its own attention from the same
method. "No attention" is the same training with A = 0. Every row runs ``runs`` times
(network seeds 0..runs-1) and reports mean ± standard deviation, as the paper does.

The ensemble that makes the maps is the job's, trained on the whole training split: it
saw images outside the subset, as the paper's did. Each method's maps of both subsets are
one cell, computed once; each training run is a cell too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ... import viz
from ...mitigation import ATTENTION_SPACES, AttentionCNN, attention, normalise_map, with_attention
from ...zoo import data
from ...zoo.data import Split
from ...zoo.models import TrainConfig, train_member
from ..commands import (
    BenchCommand,
    chosen_methods,
    float_in,
    non_negative_int,
    option,
    positive_int,
)
from ..common import MethodSpec, attribute_counted, cached_cell, method_key
from ..job import Job, Section, choose_methods, log, print_table
from ..registry import PIXEL_METHODS, pixel_methods
from . import added_rows
from .paper_numbers import MITIGATION_MNIST

__all__ = ["COMMAND", "MITIGATION_METHODS", "NO_ATTENTION", "MitigationSettings", "benchmark",
           "evaluate", "subset", "train_with_attention"]

# papers/002 Table 2's methods, and the optimization-based method at the pixel level
MITIGATION_METHODS = ("ua-backprop", "grad", "smoothgrad", "fullgrad", "integrated gradients",
                      "blur ig", "clue", "delta-clue", "optimization (pixels)")
NO_ATTENTION = "no attention"


@dataclass(frozen=True)
class MitigationSettings:
    """The mitigation benchmark's settings: ``train_images`` of the training split (the
    paper's 500), ``test_images`` of the evaluated split (0: all of it), ``runs`` network
    seeds, the attention's ``alpha`` (chosen on the validation split:
    docs/hyperparameters.md) and ``temperature``, the uncertainty the maps explain, the
    methods whose attention is also tried in the input space (the paper's ablation, for
    its own method), and the training of each network (``epochs`` of Adam at ``lr``,
    batches of ``batch_size``)."""

    train_images: int = 500
    test_images: int = 2000
    runs: int = 5
    alpha: float = 2.0
    temperature: float = 0.25
    kind: str = "epistemic"
    input_space: tuple[str, ...] = ("ua-backprop",)
    epochs: int = 40
    batch_size: int = 50
    lr: float = 2e-3
    subset_seed: int = 0


def subset(size: int, n: int, seed: int) -> Tensor:
    """``n`` distinct indices of ``range(size)`` (all when ``n`` is 0), sorted, seeded."""
    if n == 0 or n >= size:
        return torch.arange(size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def train_with_attention(train: Split, attention_maps: Tensor, space: str, alpha: float,
                         seed: int, config: TrainConfig) -> AttentionCNN:
    """A fresh :class:`AttentionCNN` (initialised from ``seed``) trained on ``train`` with
    the attention ``attention_maps [N, H, W]``."""
    _, channels, height, _ = train.images.shape
    torch.manual_seed(seed)
    model = AttentionCNN(channels, int(train.labels.max()) + 1, height, alpha=alpha,
                         space=space)
    augmented = Split(with_attention(train.images, attention_maps), train.labels)
    return train_member(model, augmented, config, seed=seed, desc=f"{space} seed {seed}")


@torch.no_grad()
def evaluate(model: AttentionCNN, test: Split, attention_maps: Tensor,
             batch_size: int = 1000) -> dict[str, float]:
    """ACC (%) and NLL (mean negative log-likelihood, nats) of ``model`` on ``test``."""
    correct, nll = 0, 0.0
    for i in range(0, len(test), batch_size):
        x = with_attention(test.images[i : i + batch_size], attention_maps[i : i + batch_size])
        logits, labels = model(x), test.labels[i : i + batch_size]
        correct += int((logits.argmax(1) == labels).sum())
        nll += float(F.cross_entropy(logits, labels, reduction="sum"))
    return {"ACC": 100 * correct / len(test), "NLL": nll / len(test)}


def _maps(job: Job, spec: MethodSpec, train: Split, test: Split, key: dict) -> tuple:
    """The method's maps of the training subset and of the test subset (one cell)."""

    def compute() -> tuple[dict, np.ndarray]:
        images = torch.cat([train.images, test.images])
        done = attribute_counted(spec, images, job.settings.batch_size, job.settings.device,
                                 log=log)
        return {"s/image": done.seconds}, done.maps.numpy()

    record, maps = cached_cell(job.out, f"mitigation-maps-{spec.name}",
                               {**method_key(spec), **key}, compute, log, spec.name)
    maps = torch.from_numpy(maps)
    return maps[: len(train)], maps[len(train) :], record["s/image"]


def _runs(job: Job, name: str, space: str, maps: tuple[Tensor, Tensor] | None,
          train: Split, test: Split, settings: MitigationSettings, key: dict) -> list[dict]:
    """ACC and NLL of every seed for one row (``maps`` None: no attention)."""
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                         lr=settings.lr)
    alpha = 0.0 if maps is None else settings.alpha
    if maps is None:
        train_a = torch.zeros(len(train), *train.images.shape[2:])
        test_a = torch.zeros(len(test), *test.images.shape[2:])
    else:
        train_a, test_a = (attention(normalise_map(m, settings.temperature)) for m in maps)
    scores = []
    for seed in range(settings.runs):

        def compute(seed: int = seed) -> tuple[dict, np.ndarray]:
            model = train_with_attention(train, train_a, space, alpha, seed, config)
            return evaluate(model, test, test_a), np.zeros(0)

        # α in the name: one folder keeps the runs of several α (tuning/mitigation_alpha.py)
        record, _ = cached_cell(job.out, f"mitigation-run-{name}-{space}-a{alpha:g}-{seed}",
                                {**key, "row": name, "space": space, "alpha": alpha,
                                 "seed": seed}, compute, log, f"{name}, {space}, seed {seed}")
        scores.append(record)
    return scores


def _spread(values: list[float]) -> float:
    """Sample standard deviation; 0 for a single run."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _row(name: str, space: str, scores: list[dict], baseline: list[dict],
         seconds: float | None) -> dict:
    """Mean and standard deviation over seeds, and the paired difference from "no
    attention" (seed s of both starts from the same weights and sees the same batches),
    with its standard error ``sd / √runs`` and the difference in standard errors."""
    acc, nll = [s["ACC"] for s in scores], [s["NLL"] for s in scores]
    # an accuracy in % of T test images is a multiple of 100 / T: rounding the paired
    # differences and their mean to 1e-10 drops the subtraction's float noise (a tie
    # comes out 0, not 3e-15), not a digit of the result
    d_acc = [round(s["ACC"] - b["ACC"], 10) for s, b in zip(scores, baseline, strict=True)]
    gain = round(statistics.mean(d_acc), 10)
    paper = MITIGATION_MNIST.get(name) if space == "latent" else None
    se = _spread(d_acc) / len(d_acc) ** 0.5
    return {"method": name, "space": space, "ACC (%)": statistics.mean(acc),
            "ACC sd": _spread(acc), "NLL": statistics.mean(nll), "NLL sd": _spread(nll),
            "ΔACC": gain, "ΔACC sd": _spread(d_acc), "ΔACC s.e.": se,
            "ΔACC in s.e.": gain / se if se else None,
            "runs": len(scores), "maps s/image": seconds,
            "ACC (paper)": paper[0] if paper else None, "NLL (paper)": paper[1] if paper else None}


# ------------------------------------------------------------ the job of uattr bench/run
@dataclass(frozen=True)
class _Subsets:
    """The training subset and the evaluated subset, and the keys of their cells."""

    train: Split
    test: Split
    whole_test: int  # images of the evaluated split
    data_key: dict
    train_key: dict


def _subsets(job: Job, settings: MitigationSettings) -> _Subsets:
    where = job.settings.data
    if settings.kind not in ("total", "aleatoric", "epistemic"):
        raise ValueError(f"kind must be total, aleatoric or epistemic, got {settings.kind!r}")
    unknown = sorted(set(settings.input_space) - set(PIXEL_METHODS))
    if unknown:
        raise ValueError(f"input_space: unknown methods {unknown}; choose from "
                         f"{list(PIXEL_METHODS)}")
    full_train = data.load(where.dataset, "train", root=where.data_dir)
    full_test = data.load(where.dataset, where.split, root=where.data_dir)
    train_idx = subset(len(full_train), settings.train_images, settings.subset_seed)
    test_idx = subset(len(full_test), settings.test_images, settings.subset_seed + 1)
    data_key = {"dataset": where.dataset, "train": train_idx.tolist(),
                "split": where.split, "test": test_idx.tolist()}
    train_key = {"data": data_key, "epochs": settings.epochs, "lr": settings.lr,
                 "batch_size": settings.batch_size, "temperature": settings.temperature,
                 "kind": settings.kind}
    return _Subsets(Split(full_train.images[train_idx], full_train.labels[train_idx]),
                    Split(full_test.images[test_idx], full_test.labels[test_idx]),
                    len(full_test), data_key, train_key)


def _baseline(job: Job, sets: _Subsets, settings: MitigationSettings) -> list[dict]:
    """ACC and NLL of every seed trained without attention."""
    return _runs(job, NO_ATTENTION, "latent", None, sets.train, sets.test, settings,
                 sets.train_key)


def _method_rows(job: Job, names: list[str] | None, sets: _Subsets,
                 settings: MitigationSettings, baseline: list[dict]
                 ) -> tuple[list[dict], dict[str, Tensor]]:
    """The rows of the methods ``names`` (every space each is tried in), and each method's
    maps of the first 6 test images."""
    explained = dataclasses.replace(job.settings.method, uncertainty=settings.kind)
    wanted = list(names) if names is not None else list(MITIGATION_METHODS)
    methods = choose_methods(pixel_methods(job.posterior, explained, job.vae_for(wanted),
                                           job.amortized_for(wanted, explained)),
                             wanted, "mitigation")
    rows, shown = [], {}
    for spec in methods:
        train_maps, test_maps, seconds = _maps(job, spec, sets.train, sets.test,
                                               {"data": sets.data_key, "kind": settings.kind})
        shown[spec.name] = test_maps[:6]
        spaces = ATTENTION_SPACES if spec.name in settings.input_space else ("latent",)
        for space in spaces:
            scores = _runs(job, spec.name, space, (train_maps, test_maps), sets.train,
                           sets.test, settings, {**sets.train_key, "maps": method_key(spec)})
            rows.append(_row(spec.name, space, scores, baseline, seconds))
    return rows, shown


def _description(job: Job, settings: MitigationSettings, sets: _Subsets) -> str:
    where = job.settings.data
    whole = ("the whole" if len(sets.test) == sets.whole_test
             else f"a fixed random {len(sets.test)} of the")
    return (f"{len(sets.train)} random {where.dataset} training images, each with its "
            f"{settings.kind} map from the ensemble turned into A = (1 - M) ⊙ M (M: the map "
            f"over its largest magnitude, a softmax over pixels at T = {settings.temperature:g}"
            f", rescaled to peak at 1); a fresh network trained {settings.epochs} epochs with "
            f"(1 + α·A) ⊙ features (latent) or ⊙ image (input), α = {settings.alpha:g}; "
            f"ACC and NLL on {whole} {where.split} images ({len(sets.test)}), mean and "
            f"standard deviation over {settings.runs} seeds; ΔACC: the paired difference "
            "from no attention (the same seed starts from the same weights). The paper's "
            "columns are papers/002 Table 2, MNIST (latent space).")


def benchmark(job: Job, settings: MitigationSettings,
              names: list[str] | None = None, stem: str = "mitigation",
              figure: bool = True) -> Section:
    """papers/002 Table 2: ACC and NLL of training with each method's attention, written
    as ``<stem>.{md,csv,json}`` and (with ``figure``) ``<stem>_attention.png``."""
    sets = _subsets(job, settings)
    baseline = _baseline(job, sets, settings)
    rows = [{**_row(NO_ATTENTION, "latent", baseline, baseline, None), "space": "–"}]
    method_rows, shown = _method_rows(job, names, sets, settings, baseline)
    rows += method_rows
    job.out.write_table(stem, rows)
    figures = []
    if shown and figure:
        job.out.save_figure(f"{stem}_attention.png",
                            attention_figure(sets.test.images[:6], shown, settings.temperature))
        figures.append(f"{stem}_attention.png")
    text = _description(job, settings, sets)
    print_table(f"Mitigation: {text}", rows)
    return Section("Uncertainty mitigation with attention", text, [(stem, rows)],
                   figures)


# What ties a row to the others: its paired seeds. "No attention" trained again must come
# out as the table's to the last bit, or this machine trains otherwise.
_BASELINE_COLUMNS = ("ACC (%)", "ACC sd", "NLL", "NLL sd")


def _read_table(folder: Path, name: str, what: str):
    path = folder / name
    if not path.is_file():
        raise ValueError(f"--add-to: {folder} has no {name} ({what}); rows can be added "
                         "only to a mitigation table that uattr wrote with it")
    return json.loads(path.read_text())


def add_rows(job: Job, settings: MitigationSettings, names: list[str], folder: str | Path,
             arguments: dict) -> Section:
    """The rows of the methods ``names``, trained on the subsets, seeds and weights of the
    mitigation table in ``folder`` and written into it after its other rows.

    Refused (``ValueError``) where the table was made with other settings or weights
    (:mod:`.added_rows`), and where "no attention", trained again here, differs from the
    table's: training is bit-reproducible only on one kind of CPU at one thread count, and
    a row's ΔACC pairs each of its seeds with that seed's plain network."""
    folder = Path(folder)
    record = _read_table(folder, "run-mitigation.json", "the run record")
    committed = _read_table(folder, "mitigation.json", "the table")
    added_rows.check_new_rows(folder, {row["method"] for row in committed}, names)
    added_rows.check_same_settings(folder, record, arguments, job.info.get("weights", {}))
    sets = _subsets(job, settings)
    baseline = _baseline(job, sets, settings)
    ours = _row(NO_ATTENTION, "latent", baseline, baseline, None)
    theirs = next((row for row in committed if row["method"] == NO_ATTENTION), {})
    if any(ours[column] != theirs.get(column) for column in _BASELINE_COLUMNS):
        here = ", ".join(f"{c} {ours[c]:.4f}" for c in _BASELINE_COLUMNS)
        there = ", ".join(f"{c} {theirs.get(c, float('nan')):.4f}" for c in _BASELINE_COLUMNS)
        raise ValueError(
            f"--add-to: no attention trained here ({here}) is not the table's ({there}): "
            "training the attention network is bit-reproducible only on one kind of CPU "
            "at one thread count (--threads; this run: "
            f"{torch.get_num_threads()}), and a row is compared with the plain network of "
            f"each of its seeds; remake the whole table on one machine instead")
    new_rows, _ = _method_rows(job, names, sets, settings, baseline)
    # the table's other rows were made with the weights its record names (the VAE's where
    # it has CLUE rows): the new record names them too
    job.weights.update({key: digest for key, digest in (record.get("weights") or {}).items()
                        if key not in job.weights})
    rows = [*committed, *new_rows]  # after the table's rows, as one run naming them last
    job.out.write_table("mitigation", rows)
    rows_were = "The rows {} were" if len(names) > 1 else "The row {} was"
    text = (f"{_description(job, settings, sets)} {rows_were.format(', '.join(names))} added "
            f"to the table of {folder}: its other rows as that run measured them, on the same "
            "subsets, seeds and weights; no attention, trained again here, came out equal to "
            "the table's in every digit. mitigation_attention.png shows the earlier run's "
            "rows.")
    print_table(f"Mitigation: {text}", rows)
    return Section("Uncertainty mitigation with attention", text, [("mitigation", rows)],
                   record={"added to": record})


def attention_figure(images: Tensor, maps: dict[str, Tensor], temperature: float):
    """papers/002 Figure 6: for each test image, M and A of the first method, then the
    attention A of every method."""
    first = next(iter(maps))
    normalised = {name: normalise_map(m, temperature) for name, m in maps.items()}
    panels = {f"M: {first}": normalised[first],
              **{f"A: {name}": attention(m) for name, m in normalised.items()}}
    return viz.maps_grid(images, panels)


_DEFAULT = MitigationSettings()


def _settings(args: argparse.Namespace) -> MitigationSettings:
    return MitigationSettings(train_images=args.n, test_images=args.test_images,
                              runs=args.runs, alpha=args.alpha,
                              input_space=tuple(args.input_space))


def _check(args: argparse.Namespace) -> None:
    """``--n`` counts training images; ``--input-space`` names pixel-level methods."""
    size = data.split_size(args.dataset, "train", root=args.data_dir)
    if args.n > size:
        raise ValueError(f"--n must be at most {size} (the training images of "
                         f"{args.dataset}), got {args.n}")
    unknown = sorted(set(args.input_space) - set(PIXEL_METHODS))
    if unknown:
        raise ValueError(f"--input-space: unknown methods {unknown}; choose from "
                         f"{list(PIXEL_METHODS)}")
    if args.add_to is None:
        return
    if chosen_methods(args) is None:
        raise ValueError("--methods: with --add-to, name the rows to add (not all)")
    folder = Path(args.add_to)
    committed = _read_table(folder, "mitigation.json", "the table")
    _read_table(folder, "run-mitigation.json", "the run record")
    added_rows.check_new_rows(folder, {row["method"] for row in committed}, args.methods)
    if args.results is not None and Path(args.results).resolve() != folder.resolve():
        raise ValueError("--results: with --add-to the table is written back into its own "
                         f"folder {args.add_to}; leave --results out or give the same folder")


def _run(job: Job, args: argparse.Namespace) -> Section:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()  # the record says what the trainings ran on
    if args.add_to is None:
        return benchmark(job, _settings(args), chosen_methods(args))
    args.results = args.add_to  # the table is written back where it was read
    arguments = {key: value for key, value in vars(args).items() if not callable(value)}
    return add_rows(job, _settings(args), chosen_methods(args), args.add_to, arguments)


COMMAND = BenchCommand(
    "mitigation", "ACC and NLL of a network trained on a few images with each method's map "
    "as attention (papers/002 Table 2; --n: training images)",
    _run,
    options=(
        option("--test-images", type=non_negative_int, default=_DEFAULT.test_images,
               help="images of the split evaluated, a fixed random subset (0: all; default "
                    f"{_DEFAULT.test_images})"),
        option("--runs", type=positive_int, default=_DEFAULT.runs,
               help=f"network seeds per row (default {_DEFAULT.runs})"),
        option("--alpha", type=float_in(0.0), default=_DEFAULT.alpha,
               help=f"attention strength α (default {_DEFAULT.alpha:g}, chosen on the "
                    "validation split)"),
        option("--input-space", nargs="*", default=list(_DEFAULT.input_space),
               metavar="METHOD",
               help="methods whose attention is also tried on the input, the paper's "
                    f"ablation (default: {' '.join(_DEFAULT.input_space)}; none: no "
                    "ablation)"),
        option("--threads", type=positive_int, default=None,
               help="CPU threads of torch (default: its own choice, one per core); the "
                    "trainings are bit-reproducible on one kind of CPU at one thread count "
                    "only, so a table that rows are added to must be remade with its own"),
        option("--add-to", default=None, metavar="FOLDER",
               help="train only the --methods rows, on the subsets, seeds and weights of "
                    "the mitigation table in FOLDER (a results folder), and write them into "
                    "it after its other rows; refused when the table was made with other "
                    "weights or settings, or when no attention, trained again here, "
                    "differs from the table's (another CPU or thread count)"),
    ),
    methods=lambda args: PIXEL_METHODS, defaults={"n": _DEFAULT.train_images},
    n_counts_split_images=False, check=_check)
