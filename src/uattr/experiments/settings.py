"""A job's settings as data: frozen dataclasses that the command line builds from its
arguments and a Python user builds directly. Nothing below the command line sees its
parsed arguments.

The defaults of the optimization-based method and of slic are read from
:class:`~uattr.attribution.OptimizationUA` and :func:`uattr.ops.segment.slic` themselves, so
they are written once (chosen on the validation split: docs/hyperparameters.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..attribution import OptimizationUA
from ..attribution.base import keyword_defaults
from ..ops.segment import slic

__all__ = ["BEFORE_ADDED", "DataSettings", "MethodSettings", "PosteriorSettings", "Settings"]


_METHOD = keyword_defaults(OptimizationUA)

#: What the options added since the first tables were recorded meant before they existed:
#: a run record without one was made with this value, whatever the default is now (before
#: ``--max-steps`` the method ran its fixed 500 steps).
BEFORE_ADDED = {"stop": "loss", "init": "zeros", "max_steps": 500}
_SLIC = keyword_defaults(slic)


@dataclass(frozen=True)
class DataSettings:
    """Which images: ``dataset`` (one of :data:`uattr.zoo.data.DATASETS`), the ``split``
    evaluated (tune on ``valid`` only), and the folder of the data set's files where it is
    read from files (Fashion-MNIST, CIFAR, SVHN)."""

    dataset: str = "mnist"
    split: str = "test"
    data_dir: str | None = None


@dataclass(frozen=True)
class PosteriorSettings:
    """Which posterior the benchmarks explain, and how it is trained and cached.

    ``kind``: ``ensemble`` or a single-network posterior (``mc-dropout | dropconnect |
    flipout``), trained on the data set; or the user's own ``model`` (TorchScript files
    or a factory ``module:function``, :func:`uattr.posteriors.loading.load_model`), which
    returns ``output`` (``logits | probs``; outputs that look like the other kind are refused
    unless ``trust_output``), members stacked as ``[(S·B), C]`` when
    ``num_samples`` is given. The ensemble's ``members``, ``epochs`` and index (ensemble K
    trains member s with seed K·members + s); a single-network
    posterior's ``samples``, DropConnect's drop probability and its training images
    (``None``: all); the ensemble members' ``arch`` (``small-cnn``, papers/001's network for
    MNIST and SVHN, or ``resnet18``, its CIFAR-10 one); the cache folder (``None``:
    ``$UATTR_CACHE`` or ``~/.cache/uattr``); ``retrain``: train on this machine instead of
    loading the weights uattr ships (:mod:`uattr.zoo.weights`)."""

    kind: str = "ensemble"
    model: tuple[str, ...] = ()
    output: str = "logits"
    trust_output: bool = False
    num_samples: int | None = None
    members: int = 5
    epochs: int = 1
    ensemble_index: int = 0
    retrain: bool = False
    arch: str = "small-cnn"
    cache_dir: str | None = None
    samples: int = 10
    dropconnect_p: float = 0.1
    posterior_train: int | None = None


@dataclass(frozen=True)
class MethodSettings:
    """What the tables' methods explain (``uncertainty``: ``total | aleatoric |
    epistemic``), the optimization-based method's λ, τ, σ0, most Adam steps per image,
    stopping rule and start, slic's segments and compactness, and the seed of every
    random method."""

    uncertainty: str = "total"
    lam: float = _METHOD["lam"]
    tau: float = _METHOD["tau"]
    sigma_init: float = _METHOD["sigma_init"]
    max_steps: int = _METHOD["max_steps"]
    stop: str = _METHOD["stop"]
    init: str = _METHOD["init"]
    n_segments: int = _SLIC["n_segments"]
    compactness: float = _SLIC["compactness"]
    seed: int = 0


@dataclass(frozen=True)
class Settings:
    """Everything a benchmark job needs besides its size: data, posteriors, methods, and
    how the work runs (``batch_size`` images attributed together, the torch ``device``,
    and, to run the benchmarks' cells on Ray, a local Ray of ``workers`` CPUs or the
    cluster at ``address``; neither: one process)."""

    data: DataSettings = field(default_factory=DataSettings)
    posterior: PosteriorSettings = field(default_factory=PosteriorSettings)
    method: MethodSettings = field(default_factory=MethodSettings)
    batch_size: int = 100
    device: str = "cpu"
    workers: int | None = None
    address: str | None = None
