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
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..attribution.base import fingerprint
from ..posteriors.loading import check_model, load_model
from ..uq import Ensemble, Posterior
from ..zoo import data
from ..zoo.models import (
    TrainConfig,
    cache_dir,
    load_or_train_ensemble,
    load_or_train_sampled,
)
from ..zoo.vae import VAE, load_or_train_vae
from .amortized import load_or_train_amortized
from .common import Parallel, most_uncertain
from .registry import PARTIAL, needs_amortized, needs_vae
from .runs import RunFolder, markdown_table
from .settings import MethodSettings, Settings

__all__ = ["POSTERIOR_KINDS", "Job", "PosteriorKind", "Section", "choose_methods",
           "command_line", "evaluated_images", "full_float32", "load_ensemble", "load_posterior",
           "load_sampled", "load_vae", "log", "open_job", "print_table", "running_command",
           "write_report"]


_running: list[str] | None = None  # the words of the command running in this process


@contextmanager
def running_command(argv: Sequence[str], program: str = "uattr") -> Iterator[None]:
    """Within it, :func:`command_line` is ``program`` and ``argv``: the command that
    :func:`uattr.cli.main` runs, also when it is called from Python or from
    ``uattr reproduce`` rather than from the shell, or a script of the repository
    (``program="python tuning/ua_backprop.py"``)."""
    global _running
    previous, _running = _running, [*shlex.split(program), *argv]
    try:
        yield
    finally:
        _running = previous


def command_line() -> str:
    """The command as a user types it (quoted for a shell): ``uattr`` and its arguments,
    however Python was started."""
    return shlex.join(["uattr", *sys.argv[1:]] if _running is None else _running)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Section:
    """A part of ``report.md``: a title, text, tables ``(caption, rows)`` and figures, and
    what the run record (``run[-<benchmark>].json``) keeps beside the command's arguments
    (``record``: for a table that rows were added to, the record of its earlier run)."""

    title: str
    text: str
    tables: list[tuple[str, list[dict]]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)


@dataclass
class Job:
    """What every job works with: its settings, the posterior the settings choose
    (:func:`load_posterior`) and what is known of it (``info``: ``description``,
    ``cache``, ``tag``), the run folder, and when the job started."""

    settings: Settings
    posterior: Posterior
    info: dict
    out: RunFolder
    start: float
    _vae: VAE | None = field(default=None, repr=False)
    _amortized: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    # the SHA-256 of every network's weights the job used, "<name>/<file>": hash (the
    # posterior's, and the VAE's or a detector's once loaded): what run.json records
    weights: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights.update(self.info.get("weights", {}))

    def vae(self) -> VAE:
        """The data set's VAE (CLUE and δ-CLUE search its latent space), trained or
        loaded on first use."""
        if self._vae is None:
            self._vae, info = load_vae(self.settings)
            self.weights.update(info["weights"])
        return self._vae

    @property
    def parallel(self) -> Parallel | None:
        """Where the benchmarks' missing cells run: Ray, when the settings ask for it."""
        if self.settings.workers is None and self.settings.address is None:
            return None
        return Parallel(self.settings.workers, self.settings.address)

    def vae_for(self, names: list[str] | None) -> VAE | None:
        """The VAE when the rows ``names`` (``None``: all) include CLUE or δ-CLUE."""
        return self.vae() if needs_vae(names) else None

    def amortized_for(self, names: list[str] | None,
                      method: MethodSettings | None = None) -> nn.Module | None:
        """The mask network of the posterior's amortised explainer of the uncertainty of
        ``method`` (default: the job's method settings; shipped, cached, else distilled
        now: :mod:`.amortized`) when the rows ``names`` (``None``: the default rows) need
        it: they name it, or ``method`` starts the optimization-based rows from its map."""
        settings = self.settings if method is None else dataclasses.replace(self.settings,
                                                                             method=method)
        if not needs_amortized(names, settings.method):
            return None
        key = repr(settings.method)
        if key not in self._amortized:
            explainer, info = load_or_train_amortized(self.posterior, settings, log=log)
            self.weights.update(info["weights"])
            log(f"amortised explainer {info['name']}: {_source(info)}")
            self._amortized[key] = explainer.network
        return self._amortized[key]


def _source(info: dict) -> str:
    return "the weights uattr ships" if info["shipped"] else f"cached in {info['cache']}"


def load_ensemble(settings: Settings, retrain: bool = False) -> tuple[Ensemble, dict]:
    """Load the ensemble the settings describe (shipped, cached, else trained; ``retrain``:
    trained again), and log its accuracy."""
    where, trained = settings.data, settings.posterior
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    members, info = load_or_train_ensemble(
        where.dataset, train, test, members=trained.members,
        config=TrainConfig(epochs=trained.epochs), cache=trained.cache_dir,
        device=settings.device, retrain=retrain, shipped=not trained.retrain,
        index=trained.ensemble_index, log=log, arch=trained.arch)
    accs = ", ".join(f"{a:.4f}" for a in info["member_accuracy"])
    which = f" (ensemble {trained.ensemble_index})" if trained.ensemble_index else ""
    log(f"ensemble of {trained.members}{which} on {where.dataset}: test accuracy "
        f"{info['ensemble_accuracy']:.4f} (members: {accs}); {_source(info)}")
    info["description"] = (f"ensemble of {trained.members}{which} on {where.dataset}, test "
                           f"accuracy {info['ensemble_accuracy']:.4f} (members {accs})")
    info["tag"] = f"{trained.members}members"
    if trained.ensemble_index:
        info["tag"] += f"-index{trained.ensemble_index}"
    return Ensemble(members), info


def load_sampled(settings: Settings, kind: str,
                 retrain: bool = False) -> tuple[nn.Module, dict]:
    """Train or load the single-network posterior ``kind`` (MC-Dropout, DropConnect,
    Flipout) with the settings' frozen samples, and log its accuracy."""
    where, trained = settings.data, settings.posterior
    if trained.arch != "small-cnn":
        raise ValueError(f"--arch {trained.arch} is for ensembles; the single-network "
                         f"posteriors ({kind}) use the small CNN, whose dropout they sample")
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    posterior, info = load_or_train_sampled(
        kind, where.dataset, train, test, samples=trained.samples,
        dropconnect_p=trained.dropconnect_p,
        config=TrainConfig(epochs=trained.epochs, max_train=trained.posterior_train),
        cache=trained.cache_dir, device=settings.device, retrain=retrain,
        shipped=not trained.retrain, log=log)
    log(f"{kind} on {where.dataset}: test accuracy {info['accuracy']:.4f} "
        f"(mean of {trained.samples} samples; one sample {info['sample_accuracy']:.4f}); "
        f"{_source(info)}")
    info["description"] = (f"{kind} on {where.dataset} ({trained.samples} samples), test "
                           f"accuracy {info['accuracy']:.4f}")
    info["tag"] = f"{kind}-{trained.samples}samples"
    return posterior, info


@dataclass(frozen=True)
class PosteriorKind:
    """A posterior uattr trains (or loads from its shipped weights) by name: ``--posterior
    NAME`` on the command line. ``load(settings, retrain)`` returns ``(posterior,
    info)``: ``info`` has its ``description``, its ``cache`` folder, a ``tag`` for the
    files built from it and the SHA-256 of its ``weights`` (see
    :func:`load_ensemble`)."""

    name: str
    help: str
    load: Callable[[Settings, bool], tuple[nn.Module, dict]]


def _sampled(kind: str) -> Callable[[Settings, bool], tuple[nn.Module, dict]]:
    return lambda settings, retrain=False: load_sampled(settings, kind, retrain)


# Every posterior uattr can train, by name. Adding one is a loader and a row here
# (README, "Extending uattr").
POSTERIOR_KINDS: dict[str, PosteriorKind] = {kind.name: kind for kind in (
    PosteriorKind("ensemble", "a deep ensemble of --members networks", load_ensemble),
    PosteriorKind("mc-dropout", "one network, its dropout on at inference",
                  _sampled("mc-dropout")),
    PosteriorKind("dropconnect", "one network trained with DropConnect on every weight",
                  _sampled("dropconnect")),
    PosteriorKind("flipout", "one network of Flipout layers, trained on the ELBO",
                  _sampled("flipout")),
)}


def load_posterior(settings: Settings,
                   shape: tuple[int, ...] | None = None) -> tuple[Posterior, dict]:
    """The posterior the settings choose: the user's ``model`` when given, checked on
    images of ``shape`` (C, H, W; default: the settings' data set's), else the ``kind``
    trained on the settings' data set (cached). ``info`` describes it (``description``),
    names a cache folder for what is built from it (``cache``) and tags the files built
    there (``tag``)."""
    chosen = settings.posterior
    if chosen.model:
        posterior = load_model(chosen.model, output=chosen.output,
                               num_samples=chosen.num_samples, device=settings.device)
        if shape is None:
            shape = data.image_shape(settings.data.dataset)
        samples = check_model(posterior, shape, settings.device,
                              trust_output=chosen.trust_output)
        key = fingerprint(posterior)
        log(f"your model {' '.join(chosen.model)}: {samples} posterior samples; key {key}")
        return posterior, {"description": f"your model {' '.join(chosen.model)} ({samples} "
                                          f"posterior samples)",
                           "cache": str(cache_dir(chosen.cache_dir) / f"model-{key}"),
                           "tag": "model"}
    if chosen.kind not in POSTERIOR_KINDS:
        raise ValueError(f"posterior must be one of {tuple(POSTERIOR_KINDS)}, got "
                         f"{chosen.kind!r}")
    return POSTERIOR_KINDS[chosen.kind].load(settings, False)


def load_vae(settings: Settings, retrain: bool = False) -> tuple[VAE, dict]:
    """Load the VAE of the settings' data set (shipped, cached, else trained; ``retrain``:
    trained again), and log its test reconstruction error."""
    where = settings.data
    train = data.load(where.dataset, "train", root=where.data_dir)
    test = data.load(where.dataset, "test", root=where.data_dir)
    vae, info = load_or_train_vae(where.dataset, train, test,
                                  cache=settings.posterior.cache_dir,
                                  shipped=not settings.posterior.retrain, retrain=retrain,
                                  log=log)
    log(f"VAE of {where.dataset}: test reconstruction error {info['test_l1']:.4f} "
        f"(mean |x - dec(enc(x))| per pixel); {_source(info)}")
    return vae.to(settings.device), info


def full_float32(device: str | torch.device) -> None:
    """On a CUDA device, turn TensorFloat-32 off for convolutions and matrix products.

    cuDNN's convolutions default to TF32, which keeps 10 bits of mantissa: a table made on
    a GPU would then lie outside the float32 tolerances with which a CPU recomputes its
    slice (:mod:`uattr.experiments.reproduce`). A CPU device leaves the flags alone.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def open_job(settings: Settings, folder: str | Path) -> Job:
    """Load (or train) the settings' posterior and open the run folder ``folder``."""
    start = time.perf_counter()
    torch.manual_seed(settings.method.seed)
    full_float32(settings.device)
    posterior, info = load_posterior(settings)
    return Job(settings, posterior, info, RunFolder(folder), start)


def evaluated_images(job: Job, n: int, kind: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, indices, U)``: the ``n`` images of the job's split with the highest
    uncertainty of ``kind`` under its posterior, most uncertain first."""
    where = job.settings.data
    split = data.load(where.dataset, where.split, root=where.data_dir)
    return most_uncertain(job.posterior, split, n, kind=kind, device=job.settings.device)


def choose_methods(available: dict, names: list[str] | None, what: str) -> list:
    """The methods ``names`` of ``available`` (all when ``None``), in their order; a
    ``ValueError`` for a name that is no method, or a row the job's posterior cannot run
    (:data:`~uattr.experiments.registry.PARTIAL`, left out of ``available``)."""
    missing = sorted(set(names or []) - set(available))
    refused = [name for name in missing if name in PARTIAL]
    if refused:
        raise ValueError(f"--methods: {refused} cannot explain this kind of posterior (see "
                         f"the method's documentation) for {what}; choose from "
                         f"{sorted(available)}")
    if missing:
        raise ValueError(f"--methods: unknown {missing} for {what}; choose from "
                         f"{sorted(available)}")
    return [available[name] for name in (names or available)]


def print_table(title: str, rows: list[dict]) -> None:
    """A table on standard output, after its title (the ``n`` column left out)."""
    print(f"\n{title}\n")
    print(markdown_table([{k: v for k, v in row.items() if k != "n"} for row in rows]))


def write_report(job: Job, sections: list[Section], name: str = "report.md",
                 arguments: dict | None = None) -> Path:
    """``name`` (``report.md`` for the main job, ``report-<benchmark>.md`` for one
    benchmark, so that benchmarks sharing a folder keep their reports): the posterior,
    then every section's tables and figures; and beside it ``run[-<benchmark>].json``,
    the command, its ``arguments`` (default: the job's settings), the posterior and the
    seconds."""
    info = job.info
    description = info["description"]
    lines = ["# uattr report", "",
             f"Command: `{command_line()}`", "",
             f"Posterior: {description}.", ""]
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
    kept = {key: value for section in sections for key, value in section.record.items()}
    job.out.write_json(record, {**settings, **kept, "command": command_line(),
                                    "posterior": info, "weights": dict(sorted(
                                        job.weights.items())),
                                    "seconds": time.perf_counter() - job.start})
    return path
