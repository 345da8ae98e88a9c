"""A small network that predicts where an image was tampered with, and its training.

The learned segmenter (:class:`uattr.ops.segment.CorruptionSegmenter`) needs to know
where an image looks *cut and pasted*: strokes that end abruptly along a line, texture
that changes at an edge. Nothing in the data set marks such regions, so the network is
trained on corruptions made on the fly from the training split: a random shape (an
ellipse, or a blob of thresholded smooth noise, at a random place, size and angle) is
filled with the same region of another training image, or erased to the background,
and the network learns the shape's mask.

Never squares: the detection benchmark corrupts images with axis-aligned square patches
(:func:`uattr.zoo.data.patch_swap`), and a segmenter trained on those would be told the
answer. Training sees only curved shapes, never the benchmark's split or corruption.
"""

from __future__ import annotations

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
from tqdm.auto import tqdm

from ..ops.perturb import gaussian_blur
from .data import Split
from .models import cache_dir, restore_or_train

__all__ = ["CorruptionConfig", "CorruptionNet", "corrupt", "load_or_train_corruption_net",
           "random_shapes", "train_corruption_net"]


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


def random_shapes(n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """``n`` random masks ``[n, 1, H, W]`` (float 0/1): half ellipses with half-axes of
    2.5-8.5 px at a random angle, half blobs of Gaussian noise smoothed at σ = 3 px and
    thresholded, cut to a disc of radius 9 px around a random point."""
    rows = torch.arange(height, dtype=torch.float32)[None, :, None]
    cols = torch.arange(width, dtype=torch.float32)[None, None, :]
    centre_y = torch.rand(n, generator=generator)[:, None, None] * height
    centre_x = torch.rand(n, generator=generator)[:, None, None] * width
    axis_a = 2.5 + 6 * torch.rand(n, generator=generator)[:, None, None]
    axis_b = 2.5 + 6 * torch.rand(n, generator=generator)[:, None, None]
    angle = math.pi * torch.rand(n, generator=generator)[:, None, None]
    dy, dx = rows - centre_y, cols - centre_x  # [n, H, W]
    along = (dx * angle.cos() + dy * angle.sin()) / axis_a
    across = (-dx * angle.sin() + dy * angle.cos()) / axis_b
    ellipse = along**2 + across**2 <= 1
    noise = torch.randn(n, 1, height, width, generator=generator)
    smooth = gaussian_blur(noise, 3.0, radius=7)[:, 0]
    smooth = smooth / smooth.flatten(1).std(1)[:, None, None]
    level = 0.8 + 0.8 * torch.rand(n, generator=generator)[:, None, None]
    blob = (smooth > level) & ((dx / 9) ** 2 + (dy / 9) ** 2 <= 1)
    pick = torch.rand(n, generator=generator)[:, None, None] < 0.5
    return torch.where(pick, ellipse, blob).float()[:, None]


def corrupt(images: Tensor, donors: Tensor, generator: torch.Generator, *,
            erase: float = 0.3, clean: float = 0.2) -> tuple[Tensor, Tensor]:
    """``(tampered [B, C, H, W], mask [B, 1, H, W])``: a random shape of each image filled
    with a random donor's pixels, or with zeros (share ``erase``); a share ``clean`` of
    the images is left untouched with an empty mask, so that the network learns to find
    nothing where nothing was done."""
    batch, _, height, width = images.shape
    mask = random_shapes(batch, height, width, generator)
    donor = donors[torch.randint(0, len(donors), (batch,), generator=generator)]
    erased = torch.rand(batch, generator=generator)[:, None, None, None] < erase
    donor = torch.where(erased, torch.zeros_like(donor), donor)
    untouched = torch.rand(batch, generator=generator)[:, None, None, None] < clean
    mask = torch.where(untouched, torch.zeros_like(mask), mask)
    return images * (1 - mask) + donor * mask, mask


@dataclass(frozen=True)
class CorruptionConfig:
    """Training of :class:`CorruptionNet`: 6 epochs of Adam with a one-cycle schedule
    peaking at 3e-3, batches of 128, seeded. Six epochs were chosen on MNIST's validation
    split (three gave a map whose best 10×10 box overlaps the true patch by IoU 0.50,
    six by 0.62)."""

    epochs: int = 6
    batch_size: int = 128
    peak_lr: float = 3e-3
    width: int = 32
    seed: int = 0


def train_corruption_net(train: Split, config: CorruptionConfig | None = None,
                         log: Callable[[str], None] = print) -> CorruptionNet:
    """Train a :class:`CorruptionNet` on corruptions of ``train``'s images (seeded)."""
    config = config or CorruptionConfig()
    images = train.images
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = CorruptionNet(images.shape[1], config.width)
    steps = config.epochs * math.ceil(len(images) / config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), config.peak_lr / 1.5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.peak_lr,
                                                   total_steps=steps)
    with tqdm(total=steps, desc="corruption detector", unit="batch") as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(len(images), generator=generator)
            total = 0.0
            for i in range(0, len(images), config.batch_size):
                tampered, mask = corrupt(images[order[i:i + config.batch_size]], images,
                                         generator)
                loss = F.binary_cross_entropy_with_logits(net(tampered), mask)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(tampered)
                bar.update()
            log(f"corruption detector: epoch {epoch + 1}/{config.epochs}, "
                f"loss {total / len(images):.4f}")
    return net.eval()


def load_or_train_corruption_net(dataset: str, train: Split, *,
                                 config: CorruptionConfig | None = None,
                                 cache: str | os.PathLike | None = None,
                                 shipped: bool = True, retrain: bool = False,
                                 log: Callable[[str], None] = print,
                                 ) -> tuple[CorruptionNet, dict]:
    """The :class:`CorruptionNet` of ``dataset``: the shipped one (:mod:`.weights`) when
    its settings are shipped and ``shipped``, else trained once on its training split and
    cached (``<cache>/<dataset>-corruption-<hash of the config>.pt``, written atomically;
    ``retrain``: trained again); and ``info``: its name, config and SHA-256."""
    from .weights import file_hashes, is_shipped

    config = config or CorruptionConfig()
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()
    name = f"{dataset}-corruption-{digest[:10]}"
    path = Path(cache_dir(cache)) / f"{name}.pt"
    net = CorruptionNet(train.images.shape[1], config.width)

    def train_it() -> CorruptionNet:
        log(f"training the corruption detector of {dataset} ({config.epochs} epochs on "
            f"{len(train)} images; cached in {path})")
        return train_corruption_net(train, config, log)

    # a damaged cache file is moved aside: trained again
    net, source, _ = restore_or_train(net, name, "model.pt", path, train_it, retrain=retrain,
                                      shipped=shipped, log=log)
    return net.eval(), {"name": name, "spec": asdict(config), "shipped": is_shipped(source),
                        "weights": file_hashes(name, {"model.pt": source})}
