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
