"""What every benchmark job of ``uattr run`` and ``uattr bench`` works with.

A :class:`Job` holds the settings, the cached ensemble and a run folder. Each
benchmark's job function (``benchmark`` in its module) builds its images, runs its
methods into the run folder, where every finished (method, configuration, images) cell
is stored and reused, writes its tables (Markdown, CSV, JSON) and figures (PNG), prints
its tables, and returns a :class:`Section` of the run's ``report.md``
(:func:`write_report`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..uq import Ensemble
from ..zoo import data
from ..zoo.models import TrainConfig, load_or_train_ensemble, load_or_train_sampled
from ..zoo.vae import VAE, load_or_train_vae
from .benchmarks.common import most_uncertain
from .registry import needs_vae
from .runs import RunFolder, markdown_table
from .settings import Settings

__all__ = ["Job", "Section", "choose_methods", "evaluated_images", "load_ensemble",
           "load_sampled", "load_vae", "log", "open_job", "print_table", "write_report"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Section:
    """A part of ``report.md``: a title, text, tables ``(caption, rows)`` and figures."""

    title: str
    text: str
    tables: list[tuple[str, list[dict]]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


@dataclass
class Job:
    """What every job works with: its settings, the ensemble and what its cache says of it
    (``info``), the run folder, and when the job started."""

    settings: Settings
    posterior: Ensemble
    info: dict
    out: RunFolder
    start: float
    _vae: VAE | None = field(default=None, repr=False)

    def vae(self) -> VAE:
        """The data set's VAE (CLUE and δ-CLUE search its latent space), trained or
        loaded on first use."""
        if self._vae is None:
            self._vae, _ = load_vae(self.settings)
        return self._vae

    def vae_for(self, names: list[str] | None) -> VAE | None:
        """The VAE when the rows ``names`` (``None``: all) include CLUE or δ-CLUE."""
        return self.vae() if needs_vae(names) else None


def load_ensemble(settings: Settings, retrain: bool = False) -> tuple[Ensemble, dict]:
    """Train or load the cached ensemble the settings describe, and log its accuracy."""
    where, trained = settings.data, settings.posterior
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    members, info = load_or_train_ensemble(
        where.dataset, train, test, members=trained.members,
        config=TrainConfig(epochs=trained.epochs), cache=trained.cache_dir,
        device=settings.device, retrain=retrain, log=log)
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    log(f"ensemble of {trained.members} on {where.dataset}: test accuracy "
        f"{info['ensemble_accuracy']:.4f} (members: {accs}); cached in {info['cache']}")
    return Ensemble(members), info


def load_sampled(settings: Settings, kind: str,
                 retrain: bool = False) -> tuple[nn.Module, dict]:
    """Train or load the single-network posterior ``kind`` (MC-Dropout, DropConnect,
    Flipout) with the settings' frozen samples, and log its accuracy."""
    where, trained = settings.data, settings.posterior
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    posterior, info = load_or_train_sampled(
        kind, where.dataset, train, test, samples=trained.samples,
        dropconnect_p=trained.dropconnect_p,
        config=TrainConfig(epochs=trained.epochs, max_train=trained.posterior_train),
        cache=trained.cache_dir, device=settings.device, retrain=retrain, log=log)
    log(f"{kind} on {where.dataset}: test accuracy {info['accuracy']:.4f} "
        f"(mean of {trained.samples} samples; one sample {info['sample_accuracy']:.4f}); "
        f"cached in {info['cache']}")
    return posterior, info


def load_vae(settings: Settings) -> tuple[VAE, dict]:
    """Train or load the cached VAE of the settings' data set, and log its test
    reconstruction error."""
    where = settings.data
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    vae, info = load_or_train_vae(where.dataset, train, test,
                                  cache=settings.posterior.cache_dir, log=log)
    log(f"VAE of {where.dataset}: test reconstruction error {info['test_l1']:.4f} "
        f"(mean |x - dec(enc(x))| per pixel); cached in {info['cache']}")
    return vae.to(settings.device), info


def open_job(settings: Settings, folder: str | Path) -> Job:
    """Load (or train) the ensemble and open the run folder ``folder``."""
    start = time.perf_counter()
    torch.manual_seed(settings.method.seed)
    posterior, info = load_ensemble(settings)
    return Job(settings, posterior, info, RunFolder(folder), start)


def evaluated_images(job: Job, n: int, kind: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, indices, U)``: the ``n`` images of the job's split with the highest
    uncertainty of ``kind`` under its ensemble, most uncertain first."""
    where = job.settings.data
    split = data.load(where.dataset, where.split, root=where.data_dir)
    return most_uncertain(job.posterior, split, n, kind=kind, device=job.settings.device)


def choose_methods(available: dict, names: list[str] | None, what: str) -> list:
    """The methods ``names`` of ``available`` (all when ``None``), in their order."""
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise ValueError(f"--methods: unknown {unknown} for {what}; choose from "
                         f"{sorted(available)}")
    return [available[name] for name in (names or available)]


def print_table(title: str, rows: list[dict]) -> None:
    """A table on standard output, after its title (the ``n`` column left out)."""
    print(f"\n{title}\n")
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))


def write_report(job: Job, sections: list[Section], name: str = "report.md",
                 arguments: dict | None = None) -> Path:
    """``name`` (``report.md`` for the main job, ``report-<benchmark>.md`` for one
    benchmark, so that benchmarks sharing a folder keep their reports): the ensemble,
    then every section's tables and figures; and beside it ``run[-<benchmark>].json``,
    the command, its ``arguments`` (default: the job's settings), the ensemble and the
    seconds."""
    info = job.info
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    lines = ["# uattr report", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             f"Ensemble: {len(info['member_accuracy'])} members on "
             f"{job.settings.data.dataset}, test accuracy {info['ensemble_accuracy']:.4f} "
             f"(members {accs}).", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        for caption, rows in section.tables:
            lines += [f"**{caption}**", "",
                      markdown_table([{k: v for k, v in r.items() if k != "n"} for r in rows]),
                      ""]
        lines += [f"![{name}]({name})" for name in section.figures] + [""]
    lines.append(f"Seconds for this run: {time.perf_counter() - job.start:.0f}.")
    path = job.out.write_text(name, "\n".join(lines) + "\n")
    settings = dataclasses.asdict(job.settings) if arguments is None else arguments
    record = name.replace("report", "run").removesuffix(".md") + ".json"  # run-<bench>.json
    job.out.write_json(record, {"command": " ".join(sys.argv), **settings,
                                    "ensemble": info,
                                    "seconds": time.perf_counter() - job.start})
    return path
