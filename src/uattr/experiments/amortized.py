"""The amortised explainer of a posterior (:class:`~uattr.attribution.AmortizedUA`), made
once and cached beside the posteriors, or shipped with them.

Its mask network is distilled from the per-pixel maps of the optimization-based method
(:func:`~uattr.experiments.registry.per_pixel_optimization` with the per-pixel mask rule)
of the ``n_train`` training images the posterior is most unsure of, with no corruption:
the posterior alone chooses them, and neither the benchmark's images nor its patches are
seen. The method's own objective makes the mask collapse on MNIST from a random start;
distilled, the same network keeps most of the per-image IoU (``python
tuning/amortized_distill.py``, validation split; docs/hyperparameters.md).

The targets are written in chunks as they are made (an interrupted training resumes at the
first missing chunk), the network like every cached model (written atomically).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attribution import AmortizedUA
from ..attribution.amortized import MaskNet
from ..ops.rng import index_generators
from ..uq import Posterior
from ..zoo import data
from ..zoo.models import cache_dir, restore_or_train, save_atomic
from ..zoo.weights import file_hashes, is_shipped, shipped_entry
from .common import most_uncertain, posterior_key
from .registry import per_pixel_optimization
from .settings import Settings

__all__ = ["DEFAULT_CONFIG", "AmortizedConfig", "amortized_name", "distil",
           "distillation_targets", "load_or_train_amortized", "targets_folder"]


@dataclass(frozen=True)
class AmortizedConfig:
    """How the explainer is made: the ``n_train`` most uncertain training images, the
    per-image maps of them made ``chunk`` at a time, the :class:`MaskNet`'s ``width``, and
    the distillation's ``epochs``, ``batch_size``, learning rate ``lr`` and ``seed`` (of
    the network's start, the batches' order, and the per-image method's draws), on the
    maps' probabilities or, with ``binary_targets``, on their binary masks (``p > 0.5``).
    The defaults were chosen on MNIST's validation split (``python
    tuning/amortized_distill.py``)."""

    n_train: int = 3000
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    chunk: int = 250
    width: int = 16
    binary_targets: bool = True


# What uattr makes and ships (a test may swap in a smaller one).
DEFAULT_CONFIG = AmortizedConfig()


def _teacher(posterior: Posterior, settings: Settings, config: AmortizedConfig):
    """The per-image method whose maps are the targets: per pixel, the mask rule, from the
    cold start whatever start the settings give the method (an explainer cannot start from
    its own maps, and its cache name stays that of the maps it imitates)."""
    return per_pixel_optimization(posterior, settings.method, stop="mask", init="zeros",
                                  seed=config.seed, progress=False)


def _digest(posterior: Posterior, settings: Settings, config: AmortizedConfig,
            fields: tuple[str, ...]) -> str:
    """A hash of the posterior's weights, the per-image method's settings and ``fields``
    of ``config``."""
    teacher = {k: v for k, v in _teacher(posterior, settings, config).key_settings().items()
               if k != "progress"}
    described = {"config": {k: v for k, v in asdict(config).items() if k in fields},
                 "teacher": teacher, "posterior": posterior_key(posterior)}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()
                          ).hexdigest()[:10]


# What the targets depend on (the rest of the config is the distillation's)
_TARGET_FIELDS = ("n_train", "seed")


def amortized_name(posterior: Posterior, settings: Settings, config: AmortizedConfig) -> str:
    """The cache name of the explainer of ``posterior`` on the settings' data set: it
    changes with the posterior's weights, the per-image method's settings and ``config``
    (but its ``chunk``)."""
    fields = tuple(f for f in asdict(config) if f != "chunk")
    return f"{settings.data.dataset}-amortized-{_digest(posterior, settings, config, fields)}"


def targets_folder(posterior: Posterior, settings: Settings, config: AmortizedConfig) -> Path:
    """Where the targets are stored: one folder for every explainer distilled from the
    same maps (the same posterior, per-image method, ``n_train`` and ``seed``)."""
    digest = _digest(posterior, settings, config, _TARGET_FIELDS)
    return (cache_dir(settings.posterior.cache_dir)
            / f"{settings.data.dataset}-amortized-targets-{digest}")


def distillation_targets(posterior: Posterior, settings: Settings, config: AmortizedConfig,
                         folder: Path, *, log: Callable[[str], None] = print,
                         ) -> tuple[Tensor, Tensor]:
    """``(images [N, C, H, W], maps [N, H, W])``: the ``config.n_train`` training images of
    highest uncertainty of the settings' kind (all of a smaller training split) and the
    per-image method's maps of them, one generator per image seeded by its index in the
    training split. Each chunk of maps is stored in ``folder`` as soon as it is made;
    stored chunks are read back."""
    where = settings.data
    train = data.load(where.dataset, "train", root=where.data_dir)
    images, indices, _ = most_uncertain(posterior, train, min(config.n_train, len(train)),
                                        kind=settings.method.uncertainty,
                                        device=settings.device)
    teacher = _teacher(posterior, settings, config)
    starts = range(0, len(images), config.chunk)
    log(f"amortised explainer: the per-pixel maps of the {len(images)} most uncertain "
        f"training images of {where.dataset}, {config.chunk} at a time (stored in {folder})")
    maps = []
    for start in tqdm(starts, desc="amortized: targets", unit="chunk", leave=False):
        path = folder / f"maps-{start:06d}.pt"
        part = slice(start, start + config.chunk)
        stored = torch.load(path, weights_only=True) if path.exists() else None
        if stored is None or not torch.equal(stored["indices"], indices[part]):
            found = teacher.attribute(images[part].to(settings.device),
                                      generator=index_generators(config.seed,
                                                                 indices[part].tolist()))
            stored = {"indices": indices[part], "maps": found.cpu()}
            save_atomic(stored, path)
        maps.append(stored["maps"])
    return images, torch.cat(maps)


def _explainer(posterior: Posterior, settings: Settings, config: AmortizedConfig,
               network: MaskNet | None = None) -> AmortizedUA:
    """The explainer of ``posterior`` with ``network``, its objective the settings' (the
    uncertainty, λ, τ and σ0 of the per-image method it imitates)."""
    method = settings.method
    return AmortizedUA(posterior, method.uncertainty, network=network, lam=method.lam,
                       tau=method.tau, sigma_init=method.sigma_init, seed=config.seed)


def distil(posterior: Posterior, settings: Settings, images: Tensor, maps: Tensor,
           config: AmortizedConfig, *, progress: bool = False) -> AmortizedUA:
    """An explainer whose new :class:`MaskNet` (``config.width`` channels, its weights
    seeded by ``config.seed``) is distilled from ``maps`` ``[N, H, W]`` of ``images``
    ``[N, C, H, W]`` (from their binary masks ``p > 0.5`` with ``config.binary_targets``),
    with the config's epochs, batch size and learning rate."""
    torch.manual_seed(config.seed)  # the network's initial weights
    network = MaskNet(images.shape[1], config.width)
    targets = (maps > 0.5).float() if config.binary_targets else maps
    return _explainer(posterior, settings, config, network).distill(
        images, targets, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        progress=progress)


def _cache_file(settings: Settings, name: str) -> Path:
    """Where the explainer ``name`` is cached once distilled here."""
    return cache_dir(settings.posterior.cache_dir) / f"{name}.pt"


def amortized_available(posterior: Posterior, settings: Settings,
                        config: AmortizedConfig | None = None) -> bool:
    """Whether :func:`load_or_train_amortized` would load the explainer (shipped, unless
    the settings retrain, or cached) instead of distilling it, which takes the per-image
    method's maps of ``config.n_train`` training images (about an hour on MNIST)."""
    config = config or DEFAULT_CONFIG
    name = amortized_name(posterior, settings, config)
    if _cache_file(settings, name).is_file():
        return True
    return not settings.posterior.retrain and shipped_entry(name) is not None


def load_or_train_amortized(posterior: Posterior, settings: Settings, *,
                            config: AmortizedConfig | None = None, retrain: bool = False,
                            log: Callable[[str], None] = print) -> tuple[AmortizedUA, dict]:
    """The amortised explainer of ``posterior`` (the settings' uncertainty, λ, τ and σ0):
    shipped, cached (``<cache>/<name>.pt``) or distilled now (:func:`distillation_targets`,
    then :func:`distil`); ``retrain``: distilled again from the stored
    targets. ``info``: its name, what it was made with, whether it is shipped, the cache
    path and the SHA-256 of its weights."""
    config = config or DEFAULT_CONFIG
    name = amortized_name(posterior, settings, config)
    cached = _cache_file(settings, name)
    channels = data.image_shape(settings.data.dataset)[0]

    def train() -> MaskNet:
        images, maps = distillation_targets(posterior, settings, config,
                                            targets_folder(posterior, settings, config),
                                            log=log)
        log(f"amortised explainer: distilling {len(images)} maps, {config.epochs} epochs "
            f"(cached in {cached})")
        return distil(posterior, settings, images.to(settings.device), maps, config,
                      progress=True).network

    network, source, _ = restore_or_train(MaskNet(channels, config.width), name, "model.pt",
                                          cached, train, retrain=retrain,
                                          shipped=not settings.posterior.retrain, log=log)
    info = {"name": name, "spec": {**asdict(config), "dataset": settings.data.dataset},
            "shipped": is_shipped(source), "cache": str(cached),
            "weights": file_hashes(name, {"model.pt": source})}
    return _explainer(posterior, settings, config, network.to(settings.device).eval()), info
