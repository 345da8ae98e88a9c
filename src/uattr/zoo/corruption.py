"""A small network that predicts where an image was tampered with, and its training.

The detector segmenters (:class:`uattr.ops.segment.CorruptionSegmenter`) need to know
where an image looks tampered with. Nothing in the data set marks such regions, so the
network is trained on tampering made on the fly from the training split
(:mod:`uattr.zoo.tampering`), inside random curved shapes, and learns the changed mask:

- the **paste detector** (family ``paste``) on the same region of another image pasted
  in, or erased. That is the detection benchmark's own patch-swap mechanism in other
  outlines: the benchmark's rows that use it are marked as trained on its corruption.
- the **retouch detector** (family ``retouch``) on the image's own pixels shifted,
  noised, blurred, sharpened or stroked: never another image's content, so disjoint from
  patch swap. Its training length and threshold are chosen on its own retouches of the
  validation split, never on the benchmark.

Never squares: the benchmark's patches are axis-aligned squares.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data import Split
from .models import cache_dir, restore_or_train
from .tampering import FAMILIES, tamper
from .training import fit

__all__ = ["CorruptionConfig", "CorruptionNet", "choose_relative",
           "load_or_train_corruption_net", "tampered_loss", "train_corruption_net"]


class CorruptionNet(nn.Module):
    """A fully convolutional network ``[B, C, H, W] -> [B, 1, H, W]`` of logits that a pixel
    lies in a tampered region. Dilated convolutions (1, 1, 2, 4, 8, 1) see 35 px around
    each pixel with 7 layers of ``width`` channels: enough for a 28 px image, and fast on
    a CPU."""

    def __init__(self, channels: int = 1, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = channels
        for dilation in (1, 1, 2, 4, 8, 1):
            layers += [nn.Conv2d(previous, width, 3, padding=dilation, dilation=dilation),
                       nn.ReLU()]
            previous = width
        self.layers = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class CorruptionConfig:
    """Training of :class:`CorruptionNet` on the tampering ``family`` (``paste`` or
    ``retouch``): ``epochs`` of Adam with a one-cycle schedule peaking at 3e-3, batches
    of 128, seeded. With ``keep_best``, the weights after the epoch of lowest loss on
    tampered validation images are kept.

    The paste detector's six epochs were chosen on MNIST's validation split by the
    detection benchmark's IoU (three gave a map whose best 10×10 box overlaps the true
    patch by IoU 0.50, six by 0.62): a choice made with the benchmark. The retouch
    detector keeps its best epoch by its own validation loss instead."""

    epochs: int = 6
    batch_size: int = 128
    peak_lr: float = 3e-3
    width: int = 32
    seed: int = 0
    family: str = "paste"
    keep_best: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")


# Validation images tampered once (seeded) to pick the retouch detector's best epoch and
# threshold: enough that the loss's standard error is far below its epoch-to-epoch change.
VALIDATION_IMAGES = 2000


def _validation_set(valid: Split, config: CorruptionConfig) -> tuple[Tensor, Tensor]:
    """``(tampered, mask)``: :data:`VALIDATION_IMAGES` validation images tampered with the
    config's family, seeded apart from training."""
    images = valid.images[:VALIDATION_IMAGES]
    return tamper(config.family, images, images,
                  torch.Generator().manual_seed(10_000 + config.seed))


def train_corruption_net(train: Split, config: CorruptionConfig | None = None,
                         log: Callable[[str], None] = print, *,
                         valid: Split | None = None) -> CorruptionNet:
    """Train a :class:`CorruptionNet` on the config's tampering of ``train``'s images
    (seeded). With ``config.keep_best``, the weights of the epoch with the lowest loss on
    tampered images of ``valid`` (required then) are returned."""
    config = config or CorruptionConfig()
    if config.keep_best and valid is None:
        raise ValueError("valid: keep_best picks the epoch on validation images; give a "
                         "validation Split")
    images = train.images
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = CorruptionNet(images.shape[1], config.width)
    steps = config.epochs * math.ceil(len(images) / config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), config.peak_lr / 1.5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.peak_lr,
                                                   total_steps=steps)
    held_out = _validation_set(valid, config) if config.keep_best else None  # [N, ...]
    best: dict = {"loss": float("inf"), "weights": None}

    def batch_loss(order: Tensor) -> Tensor:
        # the tampering draws from the generator that ordered the batch, after it
        tampered, mask = tamper(config.family, images[order], images, generator)
        return F.binary_cross_entropy_with_logits(net(tampered), mask)

    def epoch_end(epoch: int, loss: float) -> None:
        line = f"{config.family} detector: epoch {epoch + 1}/{config.epochs}, loss {loss:.4f}"
        if held_out is not None:
            with torch.no_grad():
                held = float(F.binary_cross_entropy_with_logits(net(held_out[0]), held_out[1]))
            line += f", validation loss {held:.4f}"
            if held < best["loss"]:
                best.update(loss=held, weights=copy.deepcopy(net.state_dict()))
        log(line)

    fit(net, len(images), batch_loss, optimizer, epochs=config.epochs,
        batch_size=config.batch_size, generator=generator, scheduler=schedule,
        epoch_end=epoch_end, desc=f"{config.family} detector")
    if best["weights"] is not None:
        net.load_state_dict(best["weights"])
    return net.eval()


# The thresholds ``relative`` (of the image's highest score) that choose_relative tries.
RELATIVE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def choose_relative(net: nn.Module, valid: Split, config: CorruptionConfig) -> float:
    """The threshold of :func:`uattr.ops.segment.top_region` whose region overlaps the
    tampered mask best (mean IoU over the tampered validation images of the config's
    family, ties to the lower threshold): a setting chosen on the detector's own task."""
    from ..ops.segment import top_region

    tampered, mask = _validation_set(valid, config)
    touched = mask.flatten(1).any(1)
    with torch.no_grad():
        scores = torch.sigmoid(net(tampered[touched]))[:, 0]  # [n, H, W]
    truth = mask[touched, 0] > 0
    means = []
    for relative in RELATIVE_GRID:
        region = top_region(scores, relative)
        union = (region | truth).flatten(1).sum(1)
        means.append(float(((region & truth).flatten(1).sum(1) / union).mean()))
    return RELATIVE_GRID[max(range(len(means)), key=lambda k: (means[k], -k))]


def load_or_train_corruption_net(dataset: str, train: Split, *,
                                 config: CorruptionConfig | None = None,
                                 valid: Split | None = None,
                                 cache: str | os.PathLike | None = None,
                                 shipped: bool = True, retrain: bool = False,
                                 log: Callable[[str], None] = print,
                                 ) -> tuple[CorruptionNet, dict]:
    """The :class:`CorruptionNet` of ``dataset`` for ``config``: the shipped one
    (:mod:`.weights`) when its settings are shipped and ``shipped``, else trained once on
    its training split (``valid``: the validation split, for ``keep_best``) and cached
    (``<cache>/<dataset>-<family>-detector-<hash of the config>.pt``, written atomically;
    ``retrain``: trained again); and ``info``: its name, config and SHA-256."""
    from .weights import file_hashes, is_shipped

    config = config or CorruptionConfig()
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()
    name = f"{dataset}-{config.family}-detector-{digest[:10]}"
    path = Path(cache_dir(cache)) / f"{name}.pt"
    net = CorruptionNet(train.images.shape[1], config.width)

    def train_it() -> CorruptionNet:
        log(f"training the {config.family} detector of {dataset} ({config.epochs} epochs on "
            f"{len(train)} images; cached in {path})")
        return train_corruption_net(train, config, log, valid=valid)

    # a damaged cache file is moved aside: trained again
    net, source, _ = restore_or_train(net, name, "model.pt", path, train_it, retrain=retrain,
                                      shipped=shipped, log=log)
    return net.eval(), {"name": name, "spec": asdict(config), "shipped": is_shipped(source),
                        "cache": str(path), "weights": file_hashes(name, {"model.pt": source})}


def tampered_loss(net: nn.Module, split: Split, config: CorruptionConfig) -> float:
    """The mean binary cross-entropy of ``net`` on :data:`VALIDATION_IMAGES` images of
    ``split`` tampered with the config's family (seeded as the validation set is)."""
    tampered, mask = _validation_set(split, config)
    with torch.no_grad():
        return float(F.binary_cross_entropy_with_logits(net(tampered), mask))
