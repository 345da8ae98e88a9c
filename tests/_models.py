"""Tiny hand-checkable posteriors for the tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from uattr.uq import Posterior


class SpotPosterior(Posterior):
    """Two members whose uncertainty depends only on the pixel at ``spot``.

    Member logits ``[±κ·(1 - s)·... ]``: with ``s = x[..., i, j]`` the value at the spot,
    member 0 gives class-0 logit ``κ(1 - s)`` and member 1 the same, so at ``s = 1`` both
    are uniform (U_t = log 2) and as ``s`` falls (a blur spreads a bright spot out) both
    become confident and U_t falls. Nothing else in the image matters.
    """

    def __init__(self, spot: tuple[int, int], kappa: float = 6.0) -> None:
        super().__init__()
        self.spot = spot
        self.kappa = kappa
        self.num_samples = 2

    def forward(self, x: Tensor) -> Tensor:
        s = x[:, 0, self.spot[0], self.spot[1]]  # [B]
        logit = self.kappa * (1 - s)
        logits = torch.stack([logit, torch.zeros_like(logit)], -1)  # [B, 2]
        probs = logits.softmax(-1)
        return torch.stack([probs, probs], 1)  # [B, S=2, C=2]


def tiny_cnn_members(in_channels: int = 1, classes: int = 3, members: int = 3,
                     seed: int = 0) -> list[nn.Module]:
    """Randomly initialised small CNNs (seeded): a real, non-linear ensemble."""
    torch.manual_seed(seed)
    return [
        nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(64, classes),
        ).eval()
        for _ in range(members)
    ]


def tiny_dropout_cnn(in_channels: int = 1, classes: int = 4, p: float = 0.3,
                     seed: int = 0) -> nn.Module:
    """One randomly initialised small CNN with a dropout layer (seeded), in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Dropout(p),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, classes),
    ).eval()


def tiny_posteriors(classes: int = 4, samples: int = 4, seed: int = 3) -> dict:
    """One posterior of each kind over tiny CNNs, frozen noise: name -> posterior."""
    from uattr import Flipout, MCDropConnect, MCDropout, as_posterior
    from uattr.posteriors.stochastic import to_flipout

    flipout = to_flipout(tiny_dropout_cnn(classes=classes, seed=seed), rho_init=-2.0).eval()
    return {
        "ensemble": as_posterior(tiny_cnn_members(members=3, classes=classes, seed=seed)),
        "mc-dropout": MCDropout(tiny_dropout_cnn(classes=classes, seed=seed), samples=samples),
        "dropconnect": MCDropConnect(tiny_dropout_cnn(classes=classes, seed=seed), p=0.2,
                                     samples=samples),
        "flipout": Flipout(flipout, samples=samples),
    }


def tiny_vae(shape: tuple[int, int, int] = (1, 12, 12), seed: int = 0) -> nn.Module:
    """A randomly initialised small VAE (seeded), in eval mode."""
    from uattr.zoo.vae import VAE

    torch.manual_seed(seed)
    return VAE(shape, latent=4, hidden=16).eval()


class RegionVAE(nn.Module):
    """A hand-made 'VAE' of 1×8×8 images with two latent coordinates: ``z[0]`` is the
    intensity of the 3×3 block ``REGION`` at the top left, ``z[1]`` that of the 3×3 block
    at the bottom right; every other pixel is 0. ``encode`` reads both means back, so
    ``decode(encode(x)) = x`` for such images."""

    REGION = (slice(0, 3), slice(0, 3))
    OTHER = (slice(5, 8), slice(5, 8))

    def __init__(self) -> None:
        super().__init__()
        basis = torch.zeros(2, 1, 8, 8)
        basis[0, 0][self.REGION] = 1.0
        basis[1, 0][self.OTHER] = 1.0
        self.register_buffer("basis", basis)
        self.shape = (1, 8, 8)
        self.decoder = nn.Identity()  # what a pass counter may hook

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.stack([x[:, 0][(slice(None), *self.REGION)].mean((1, 2)),
                            x[:, 0][(slice(None), *self.OTHER)].mean((1, 2))], 1)
        return mean, torch.zeros_like(mean)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(torch.einsum("bk,kchw->bchw", z, self.basis))


class RegionPosterior(Posterior):
    """Two members that disagree in proportion to the mean of ``RegionVAE.REGION``: at
    intensity r the members give class-0 logits ``+κr`` and ``-κr``, so the epistemic
    uncertainty rises with r and is 0 at r = 0 (the total stays log 2); nothing else in
    the image matters."""

    def __init__(self, kappa: float = 4.0) -> None:
        super().__init__()
        self.kappa = kappa
        self.num_samples = 2

    def forward(self, x: Tensor) -> Tensor:
        r = x[:, 0][(slice(None), *RegionVAE.REGION)].mean((1, 2))  # [B]
        logits = torch.stack([self.kappa * r, -self.kappa * r], 1)  # [B, S=2]
        first = torch.stack([logits, torch.zeros_like(logits)], -1)  # [B, S, C=2]
        return first.softmax(-1)


class RegionEnergyMember(nn.Module):
    """One member of :func:`colour_region_ensemble`: class-0 logit ``κ(r - c) + δ`` and
    class-1 logit 0, with ``r`` the mean of ``x²`` over the square ``region`` (top, left,
    side) and the three channels. ``r`` is read by a convolution whose kernel is the
    region's indicator (bias 0), so FullGrad and UA-Backprop find a real conv layer."""

    def __init__(self, size: int, region: tuple[int, int, int], kappa: float,
                 centre: float, shift: float) -> None:
        super().__init__()
        top, left, side = region
        self.read = nn.Conv2d(3, 1, size)
        with torch.no_grad():
            self.read.weight.zero_()
            self.read.weight[..., top:top + side, left:left + side] = 1.0 / (3 * side * side)
            self.read.bias.zero_()
        self.kappa, self.centre, self.shift = kappa, centre, shift

    def forward(self, x: Tensor) -> Tensor:
        r = self.read(x * x).flatten(1)  # [B, 1]
        return torch.cat([self.kappa * (r - self.centre) + self.shift, torch.zeros_like(r)], 1)


def colour_region_ensemble(size: int, region: tuple[int, int, int], kappa: float = 20.0,
                           centre: float = 0.52) -> list[nn.Module]:
    """Two members whose uncertainty depends on the energy ``r`` (mean of ``x²``) of one
    square region of a ``size``-px colour image and on nothing else: near ``r = centre``
    their logits are ±0.5 and U_t ≈ log 2; the further r falls below it, the more
    confident both are. On :func:`bright_textured_square`'s images r ≈ 0.52, and a blur of
    the square averages its speckles (r falls towards 0.36, U_t to about 0.2): blurring
    the region, and nothing else, lowers the uncertainty."""
    return [RegionEnergyMember(size, region, kappa, centre, shift).eval()
            for shift in (0.5, -0.5)]


def bright_textured_square(size: int, batch: int = 2,
                           seed: int = 0) -> tuple[Tensor, tuple[int, int, int]]:
    """Colour images ``[batch, 3, size, size]``: dark noise (values in [0, 0.15]) with one
    bright speckled square (each value 0.2 or 1, at random) at the same place in every
    image, a third of the side; returns the images and the square ``(top, left, side)``."""
    g = torch.Generator().manual_seed(seed)
    x = 0.15 * torch.rand(batch, 3, size, size, generator=g)
    side = size // 3
    top, left = size // 5, size // 2
    speckles = (torch.rand(batch, 3, side, side, generator=g) < 0.5).float()
    x[:, :, top:top + side, left:left + side] = 0.2 + 0.8 * speckles
    return x, (top, left, side)


class ColourRegionVAE(nn.Module):
    """A hand-made 'VAE' of ``size``-px colour images with two latent coordinates: ``z[0]``
    is the value of every channel in the square ``region`` (top, left, side), ``z[1]`` in
    the square ``other``; the rest is 0. ``encode`` reads both means back, so ``decode(
    encode(x)) = x`` for such images: :class:`RegionVAE` in colour and at any size."""

    def __init__(self, size: int, region: tuple[int, int, int],
                 other: tuple[int, int, int]) -> None:
        super().__init__()
        basis = torch.zeros(2, 3, size, size)
        for k, (top, left, side) in enumerate((region, other)):
            basis[k, :, top:top + side, left:left + side] = 1.0
        self.register_buffer("basis", basis)
        self.shape = (3, size, size)
        self.decoder = nn.Identity()  # what a pass counter may hook

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        area = self.basis.flatten(1).sum(1)  # [2]
        mean = torch.einsum("bchw,kchw->bk", x, self.basis) / area
        return mean, torch.zeros_like(mean)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(torch.einsum("bk,kchw->bchw", z, self.basis))
