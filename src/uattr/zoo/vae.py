"""The variational auto-encoder that CLUE and δ-CLUE search in, its training and its cache.

CLUE (Antorán et al., ICLR 2021) explains uncertainty with a counterfactual: the image
nearest to x, among those a generative model can make, whose uncertainty is lowest.
papers/002 compares against it on MNIST, so uattr trains one small VAE per data set,
once, and caches it like the ensemble.

A multilayer perceptron is enough for 28×28 digits and trains in about a minute on two
cores: ``D -> 400 -> (μ, log σ²) [latent]`` and ``latent -> 400 -> D``, Bernoulli
likelihood on pixels in [0, 1] (binary cross-entropy), a standard normal prior.
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

from .data import Split
from .models import _cached_scores, cache_dir, restore_or_train, weights_tag
from .training import fit

__all__ = ["VAE", "VAEConfig", "load_or_train_vae", "reconstruction_error", "train_vae"]


class VAE(nn.Module):
    """``encode(x [B, C, H, W]) -> (μ, log σ²)`` each ``[B, latent]``;
    ``decode(z [B, latent]) -> [B, C, H, W]`` in (0, 1); ``forward`` returns the
    reconstruction from a draw of q(z|x) and both moments.

    ``decoder`` is the one module CLUE runs at every step (it is what a pass counter
    hooks)."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), latent: int = 20,
                 hidden: int = 400) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.latent = int(latent)
        size = math.prod(self.shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(size, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, size), nn.Sigmoid(),
                                     nn.Unflatten(1, self.shape))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_var = self.encoder(x).chunk(2, dim=1)  # [B, latent] each
        return mean, log_var

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)  # [B, C, H, W]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        return self.decode(z), mean, log_var


@dataclass(frozen=True)
class VAEConfig:
    """How the VAE is trained: ``epochs`` of Adam (``lr``, batches of ``batch_size``) on
    the whole training split, seeded; ``latent`` and ``hidden`` sizes. Ten epochs take
    about a minute on two cores and reconstruct MNIST's test digits with a mean absolute
    error near 0.05 per pixel."""

    latent: int = 20
    hidden: int = 400
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


def _elbo_loss(vae: VAE, x: Tensor) -> Tensor:
    """Negative ELBO per image: Bernoulli reconstruction + KL(q(z|x) ‖ N(0, I))."""
    recon, mean, log_var = vae(x)
    rec = F.binary_cross_entropy(recon, x, reduction="sum")
    kl = -0.5 * (1 + log_var - mean.square() - log_var.exp()).sum()
    return (rec + kl) / len(x)


def train_vae(train: Split, config: VAEConfig | None = None,
              log: Callable[[str], None] = print) -> VAE:
    """A :class:`VAE` trained on ``train``'s images (seeded: the same config gives the same
    weights on the same machine)."""
    config = config or VAEConfig()
    images = train.images
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    vae = VAE(tuple(images.shape[1:]), config.latent, config.hidden)

    def epoch_end(epoch: int, loss: float) -> None:
        log(f"vae: epoch {epoch + 1}/{config.epochs}, negative ELBO {loss:.1f} nats per image")

    return fit(vae, len(images), lambda order: _elbo_loss(vae, images[order]),
               torch.optim.Adam(vae.parameters(), lr=config.lr), epochs=config.epochs,
               batch_size=config.batch_size, generator=generator, epoch_end=epoch_end,
               desc="vae")


@torch.no_grad()
def reconstruction_error(vae: VAE, split: Split, batch_size: int = 1000) -> float:
    """Mean absolute error per pixel between ``split``'s images and the decoded encoder
    means (what CLUE starts from)."""
    total = 0.0
    for i in range(0, len(split), batch_size):
        x = split.images[i : i + batch_size]
        total += float((vae.decode(vae.encode(x)[0]) - x).abs().mean((1, 2, 3)).sum())
    return total / len(split)


def load_or_train_vae(dataset: str, train: Split, test: Split, *,
                      config: VAEConfig | None = None,
                      cache: str | os.PathLike | None = None,
                      shipped: bool = True, retrain: bool = False,
                      log: Callable[[str], None] = print) -> tuple[VAE, dict]:
    """The :class:`VAE` of ``dataset``: the shipped one (:mod:`.weights`) when its settings
    are shipped and ``shipped``, else trained once on ``train`` and cached
    (``<cache>/<dataset>-vae-<hash of the config and image shape>.pt``, written
    atomically; ``retrain``: trained again), and ``info``: the cache path, the config, the
    SHA-256 of the weights and the test reconstruction error (mean absolute error per
    pixel), cached beside it."""
    from .weights import file_hashes, is_shipped

    config = config or VAEConfig()
    shape = tuple(train.images.shape[1:])
    spec = {**asdict(config), "image": list(shape)}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{dataset}-vae-{digest}"
    path = Path(cache_dir(cache)) / f"{name}.pt"
    vae = VAE(shape, config.latent, config.hidden)

    def train_it() -> VAE:
        log(f"training the VAE of {dataset} ({config.epochs} epochs on {len(train)} images; "
            f"cached in {path})")
        return train_vae(train, config, log)

    # a damaged cache file is moved aside: trained again
    vae, source, trained = restore_or_train(vae, name, "model.pt", path, train_it,
                                            retrain=retrain, shipped=shipped, log=log)
    vae.eval()
    hashes = file_hashes(name, {"model.pt": source})
    scores = _cached_scores(path.with_suffix(f".test-{len(test)}-{weights_tag(hashes)}.json"),
                            lambda: {"test_l1": reconstruction_error(vae, test)},
                            fresh=trained)
    return vae, {"cache": str(path), "name": name, "config": spec, "spec": spec,
                 "shipped": is_shipped(source), "weights": hashes, **scores}
