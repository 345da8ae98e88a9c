"""The small CNN of papers/001 A.1, its training loop, and a cache of trained ensembles."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .data import Split
from .training import fit

__all__ = [
    "ARCHITECTURES",
    "SmallCNN",
    "TrainConfig",
    "accuracy",
    "cache_dir",
    "load_cached",
    "load_or_train_ensemble",
    "save_atomic",
    "train_member",
]


class SmallCNN(nn.Module):
    """Conv-ReLU-Conv-ReLU-MaxPool-Dropout-Dense-ReLU-Dropout-Dense (papers/001 A.1).

    Two 4×4 convolutions with 32 filters, a 2×2 max-pool, a 128-unit dense layer,
    dropout 0.5; returns logits ``[B, num_classes]``. The dense layer fits images of
    ``image_size``; with ``pool_to=k`` the pool is an adaptive max-pool to k×k instead, and
    the network takes images of any size (``pool_to=11`` is the 2×2 pool's output on 28 px
    images, so at 28 px it is the same network).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 pool_to: int | None = None) -> None:
        super().__init__()
        kernel = 4 if image_size >= 16 else 3  # 8×8 digits are too small for two 4×4 convs
        side = pool_to or (image_size - 2 * (kernel - 1)) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel),
            nn.ReLU(),
            nn.MaxPool2d(2) if pool_to is None else nn.AdaptiveMaxPool2d(pool_to),
            nn.Dropout(0.5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * side * side, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

        # channels-last convolutions are ~40% faster for inference on CPU, and no slower
        # to train or to differentiate
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))  # [B, num_classes]


def _architectures() -> dict[str, type[nn.Module]]:
    from .resnet import ResNet18

    # small-cnn is papers/001 A.1's network for MNIST and SVHN, resnet18 its CIFAR-10 one
    return {"small-cnn": SmallCNN, "resnet18": ResNet18}


ARCHITECTURES = ("small-cnn", "resnet18")


@dataclass(frozen=True)
class TrainConfig:
    """How one member is trained.

    The paper trains with SGD for 50 epochs on a GPU; on a 2-core CPU one epoch of Adam
    (lr 2e-3, batch 128) on all 50 000 MNIST images gives members of ~98.3% and an
    ensemble of ~98.6% test accuracy in under a minute per member.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 2e-3
    max_train: int | None = None


def train_member(
    model: nn.Module,
    train: Split,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    desc: str = "train",
    penalty: Callable[[nn.Module], Tensor] | None = None,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy; ``seed`` fixes the data order.

    ``penalty(model) / n`` is added to each batch's mean loss (a Flipout network's KL
    term: the ELBO over ``n`` training images)."""
    images, labels = train.images, train.labels
    if config.max_train is not None:
        images, labels = images[: config.max_train], labels[: config.max_train]
    model.to(device)
    n = images.shape[0]

    def batch_loss(idx: Tensor) -> Tensor:
        loss = nn.functional.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
        return loss + penalty(model) / n if penalty is not None else loss

    return fit(model, n, batch_loss, torch.optim.Adam(model.parameters(), lr=config.lr),
               epochs=config.epochs, batch_size=config.batch_size,
               generator=torch.Generator().manual_seed(seed), desc=desc)


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], split: Split, batch_size: int = 1000) -> float:
    """Share of ``split`` whose arg-max of ``predict(x)`` (``[B, C]``) is the label."""
    correct = 0
    for i in range(0, len(split), batch_size):
        x = split.images[i : i + batch_size]
        correct += int((predict(x).argmax(-1) == split.labels[i : i + batch_size]).sum())
    return correct / len(split)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where trained models are cached: ``override``, else ``$UATTR_CACHE``, else
    ``$XDG_CACHE_HOME/uattr`` (``~/.cache/uattr``)."""
    if override is not None:
        return Path(override)
    if os.environ.get("UATTR_CACHE"):
        return Path(os.environ["UATTR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uattr"


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from others sharing it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_cached(path: Path, log: Callable[[str], None] = print) -> object | None:
    """What ``torch.save`` stored at ``path``, or ``None`` when there is no such file or
    it cannot be read (a copy cut short by a full disk or a killed process). A damaged file
    is logged by name and moved aside to ``<name>.damaged``; the caller builds it again."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu")
    # Any failure to read a cache file means the same thing (rebuild it): a truncated zip
    # raises RuntimeError, a truncated legacy pickle EOFError or UnpicklingError, ...
    except Exception as error:
        from ..experiments.healing import set_aside

        first = str(error).splitlines()[0] if str(error) else ""
        set_aside(path, f"{type(error).__name__}: {first}", log)
        return None


def _load_state(model: nn.Module, path: Path, log: Callable[[str], None]) -> bool:
    """Load a cached state dict into ``model``; ``False`` (file removed) when it is missing,
    damaged or does not fit the model."""
    state = load_cached(path, log)
    if state is None:
        return False
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as error:
        from ..experiments.healing import set_aside

        set_aside(path, f"it does not fit the model: {type(error).__name__}", log)
        return False
    return True


def restore(model: nn.Module, name: str, file: str, cached: Path, *, shipped: bool = True,
            log: Callable[[str], None] = print) -> Path | None:
    """Load the weights of model ``name``'s ``file`` into ``model``: the shipped ones
    (:mod:`.weights`) when ``shipped`` and uattr ships them, else the cache file ``cached``.
    Returns the file loaded, or ``None`` when there is none (the caller trains)."""
    from .weights import SHIPPED, load_shipped

    if shipped:
        state = load_shipped(name, file)
        if state is not None:
            model.load_state_dict(state)
            return SHIPPED / name / file
    return cached if _load_state(model, cached, log) else None


def restore_or_train(model: nn.Module, name: str, file: str, cached: Path,
                     train: Callable[[], nn.Module], *, retrain: bool = False,
                     shipped: bool = True, log: Callable[[str], None] = print,
                     ) -> tuple[nn.Module, Path, bool]:
    """``model`` with the weights :func:`restore` finds (none when ``retrain``), else
    ``train()``'s module, saved to ``cached`` at once (an interrupted run resumes). Returns
    ``(module, the file its weights are in, whether it was trained)``."""
    source = None if retrain else restore(model, name, file, cached, shipped=shipped, log=log)
    if source is not None:
        return model, source, False
    model = train()
    save_atomic(model.cpu().state_dict(), cached)
    return model, cached, True


def weights_tag(hashes: dict[str, str]) -> str:
    """A short tag of a set of weights (their SHA-256): what is cached for one set of
    weights (test scores, a detection set) is never read back for another (shipped or
    trained here)."""
    return hashlib.sha1("".join(sorted(hashes.values())).encode()).hexdigest()[:8]


def _cached_scores(path: Path, compute: Callable[[], dict], *, fresh: bool) -> dict:
    """Test scores cached as JSON beside the model; computed again when the model was just
    trained or the file cannot be read. Written atomically."""
    from ..experiments.healing import read_json_or_set_aside
    from ..experiments.runs import write_atomic

    stored = None if fresh else read_json_or_set_aside(path)
    if isinstance(stored, dict):
        return stored
    scores = compute()
    write_atomic(path, json.dumps(scores).encode())
    return scores


def ensemble_name(dataset: str, spec: dict) -> str:
    """The name of an ensemble's cache folder and shipped weights: the data set and a hash
    of its settings."""
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{dataset}-ensemble-{key}"


def load_or_train_ensemble(
    dataset: str,
    train: Split,
    test: Split,
    *,
    members: int = 5,
    config: TrainConfig | None = None,
    cache: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    retrain: bool = False,
    shipped: bool = True,
    index: int = 0,
    log: Callable[[str], None] = print,
    arch: str = "small-cnn",
) -> tuple[list[nn.Module], dict]:
    """A deep ensemble of ``arch`` members (one of :data:`ARCHITECTURES`: the
    :class:`SmallCNN` or :class:`~uattr.zoo.resnet.ResNet18`); ensemble ``index`` trains
    member s with seed ``index · members + s``, so ensembles of different indices are
    trained independently.

    The weights uattr ships (:mod:`.weights`) are loaded when the settings are theirs and
    ``shipped``; else the cache (keyed by the dataset, the member count, the index and the
    training config) is, so a later command with the same settings loads the members
    instead of training them; else they are trained, each member saved as soon as it is,
    so an interrupted run resumes. ``retrain`` trains them all again.

    Returns ``(members, info)`` with ``info["member_accuracy"]`` and
    ``info["ensemble_accuracy"]`` on ``test`` and ``info["weights"]``, the SHA-256 of every
    member's file.
    """
    from .weights import file_hashes, is_shipped

    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    network = _architectures()[arch]
    config = config or TrainConfig()
    _, channels, height, width = train.images.shape
    num_classes = int(train.labels.max()) + 1
    spec = {"dataset": dataset, "arch": network.__name__, "image": [channels, height, width],
            "classes": num_classes, **asdict(config)}
    if index:  # the first ensemble keeps the name it had before there were several
        spec["index"] = index
    name = ensemble_name(dataset, spec)
    folder = cache_dir(cache) / name

    def build() -> nn.Module:
        return network(channels, num_classes, height)

    models: list[nn.Module] = []
    loaded_from: dict[str, Path] = {}
    trained = False
    for s in range(members):
        file, seed = f"member{s}.pt", index * members + s
        torch.manual_seed(seed)  # member s starts from its own initialisation
        model = build()

        def train_it(model: nn.Module = model, s: int = s, seed: int = seed) -> nn.Module:
            log(f"training member {s + 1}/{members} on {dataset} ({len(train)} images)")
            return train_member(model, train, config, seed=seed, device=device,
                                desc=f"member {s + 1}")

        model, source, fresh = restore_or_train(model, name, file, folder / file, train_it,
                                                retrain=retrain, shipped=shipped, log=log)
        trained = trained or fresh
        models.append(model.to(device).eval())
        loaded_from[file] = source
    hashes = file_hashes(name, loaded_from)

    def on_device(x: Tensor) -> Tensor:
        return x.to(device)

    def score() -> dict:
        return {
            "member_accuracy": [accuracy(lambda x, m=m: m(on_device(x)).cpu(), test)
                                for m in models],
            "ensemble_accuracy": accuracy(
                lambda x: torch.stack([m(on_device(x)).softmax(-1) for m in models])
                .mean(0).cpu(), test),
        }

    scores = _cached_scores(
        folder / f"accuracy-{members}-{len(test)}-{int(test.labels.sum())}-"
                 f"{weights_tag(hashes)}.json", score, fresh=trained)
    return models, {"cache": str(folder), "name": name, "spec": spec,
                    "shipped": all(map(is_shipped, loaded_from.values())),
                    "weights": hashes, **scores}


SAMPLED_POSTERIORS = ("mc-dropout", "dropconnect", "flipout")


def load_or_train_sampled(
    kind: str,
    dataset: str,
    train: Split,
    test: Split,
    *,
    samples: int = 10,
    dropconnect_p: float = 0.1,
    config: TrainConfig | None = None,
    cache: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    retrain: bool = False,
    shipped: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict]:
    """A single-network posterior of ``kind`` (``mc-dropout | dropconnect |
    flipout``) on :class:`SmallCNN`, trained with seed 0, as a frozen-noise posterior of
    ``samples`` samples.

    - ``mc-dropout``: the CNN as it is (its two dropout layers, p = 0.5), trained as
      usual; MC-Dropout keeps the dropout on at inference.
    - ``dropconnect``: trained with DropConnect (``dropconnect_p`` on every weight of its
      conv and dense layers) on top of its dropout.
    - ``flipout``: every conv and dense layer a Flipout layer (σ starts at 0.007, prior
      N(0, 1)), trained on the ELBO: cross-entropy + KL / (training images).

    Loaded as :func:`load_or_train_ensemble` loads an ensemble: shipped, else cached, else
    trained (``retrain``: trained again).

    Returns ``(posterior, info)`` with ``info["accuracy"]``, the test accuracy of the mean
    prediction over the samples, and ``info["weights"]``, the SHA-256 of its file.
    """
    from ..posteriors.sampled import Flipout, MCDropConnect, MCDropout
    from ..posteriors.stochastic import DropConnect, flipout_kl, to_flipout
    from ..uq import predict_probs
    from .weights import file_hashes, is_shipped

    if kind not in SAMPLED_POSTERIORS:
        raise ValueError(f"kind must be one of {SAMPLED_POSTERIORS}, got {kind!r}")
    config = config or TrainConfig()
    _, channels, height, width = train.images.shape
    num_classes = int(train.labels.max()) + 1
    spec = {"dataset": dataset, "arch": "SmallCNN", "posterior": kind,
            "image": [channels, height, width], "classes": num_classes, **asdict(config)}
    if kind == "dropconnect":
        spec["dropconnect_p"] = dropconnect_p
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{dataset}-{kind}-{key}"
    folder = cache_dir(cache) / name
    path = folder / "model.pt"

    torch.manual_seed(0)
    net = SmallCNN(channels, num_classes, height)
    if kind == "flipout":
        net = to_flipout(net).to(memory_format=torch.channels_last)

    def train_it() -> nn.Module:
        used = min(len(train), config.max_train or len(train))
        log(f"training the {kind} network on {dataset} ({used} images)")
        trainee = DropConnect(net, dropconnect_p) if kind == "dropconnect" else net
        train_member(trainee, train, config, seed=0, device=device, desc=kind,
                     penalty=flipout_kl if kind == "flipout" else None)
        return net

    net, source, trained = restore_or_train(net, name, "model.pt", path, train_it,
                                            retrain=retrain, shipped=shipped, log=log)
    net.to(device).eval()
    hashes = file_hashes(name, {"model.pt": source})
    if kind == "mc-dropout":
        posterior = MCDropout(net, samples=samples)
    elif kind == "dropconnect":
        posterior = MCDropConnect(net, p=dropconnect_p, samples=samples)
    else:
        posterior = Flipout(net, samples=samples)
    def score() -> dict:
        probs = predict_probs(posterior, test.images, device=device)  # [N, S, C]
        return {"accuracy": float((probs.mean(1).argmax(-1) == test.labels).double().mean()),
                "sample_accuracy": float((probs.argmax(-1) == test.labels[:, None])
                                         .double().mean())}

    scores = _cached_scores(
        folder / f"accuracy-{samples}-{len(test)}-{int(test.labels.sum())}-"
                 f"{weights_tag(hashes)}.json", score, fresh=trained)
    return posterior, {"cache": str(folder), "name": name, "spec": spec, "samples": samples,
                       "shipped": is_shipped(source),
                       "weights": hashes, **scores}
