"""CLUE for rows (Antorán et al., ICLR 2021, whose first experiments were tabular): the
nearest row a VAE of the data can make on which the model is sure, and what had to change.

    z* = argmin_z  u(dec(z)) / s  +  λ_x · mean_f |dec(z)_f − x_f| / σ_f      from z0 = μ_enc(x)

with ``σ_f`` the training rows' standard deviation of feature ``f`` (so that every feature
counts in its own units) and ``s = max(u(x), E_b[u(b)])`` (as the optimization mask's: the
same ``λ_x`` for any score). The attribution is ``|dec(z*) − x| / σ`` ``[B, F]``: how far
each feature had to move. Needs a differentiable uncertainty (PyTorch models).

Every row of a batch is one row of one optimisation (Adam works per coordinate), for a
fixed number of steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..ops.checks import check_positive, check_positive_ints
from .posteriors import RowUncertainty, check_rows, uncertainty_scale

__all__ = ["RowVAE", "clue_map", "row_clue", "train_row_vae"]


class RowVAE(nn.Module):
    """A Gaussian VAE of rows ``[B, F]``: the rows standardised with the training rows'
    mean and std (stored), two ReLU layers each way, a ``latent``-dimensional code;
    ``decode`` returns rows in the original units."""

    def __init__(self, n_features: int, latent: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_features))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log-variance)`` ``[B, latent]`` of rows in the original units."""
        mean, log_var = self.encoder((x.to(self.mean.dtype) - self.mean) / self.std).chunk(2, 1)
        return mean, log_var

    def decode(self, z: Tensor) -> Tensor:
        """Rows ``[B, F]`` in the original units."""
        return self.decoder(z) * self.std + self.mean


def train_row_vae(x: object, *, latent: int | None = None, hidden: int = 64,
                  epochs: int = 500, lr: float = 1e-2, noise_std: float = 0.3,
                  seed: int = 0) -> RowVAE:
    """A :class:`RowVAE` fitted to rows ``x`` by full-batch Adam on the negative ELBO: a
    Gaussian likelihood of the standardised rows with std ``noise_std``, a standard normal
    prior, ``latent`` dimensions (default: as many as features). With ``noise_std`` 1 a
    VAE of standardised rows may ignore its code altogether (a direction whose variance
    is not above the likelihood's is not worth encoding), and CLUE's map would be the
    reconstruction error; 0.3 keeps what varies by more than a third of a std."""
    rows = check_rows(x, name="x").float()
    check_positive(noise_std=noise_std, lr=lr)
    check_positive_ints(epochs=epochs, hidden=hidden)
    torch.manual_seed(seed)
    vae = RowVAE(rows.shape[1], latent or rows.shape[1], hidden)
    vae.mean.copy_(rows.mean(0))
    vae.std.copy_(rows.std(0).clamp_min(1e-6))
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    scaled = (rows - vae.mean) / vae.std
    for _ in range(epochs):
        mean, log_var = vae.encode(rows)
        noise = torch.randn(mean.shape, generator=generator)
        z = mean + (0.5 * log_var).exp() * noise
        reconstruction = (vae.decode(z) - vae.mean) / vae.std
        loss = (0.5 * (reconstruction - scaled).pow(2).sum(1) / noise_std**2
                + 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vae.eval()


def row_clue(u: RowUncertainty, vae: RowVAE, x: object, background: object, *,
             lam_x: float = 1.0, steps: int = 300, lr: float = 0.05,
             progress: bool = False) -> tuple[Tensor, Tensor]:
    """``(φ [B, F], counterfactual rows [B, F])``, float64 (module docstring)."""
    if not u.differentiable:
        raise ValueError("u: CLUE needs a differentiable uncertainty (a PyTorch model); "
                         "this score is not, so use shapley_values or occlusion")
    x = check_rows(x, u.n_features, "x")
    background = check_rows(background, u.n_features, "background")
    check_positive(lam_x=lam_x, allow_zero=True)
    check_positive(lr=lr)
    check_positive_ints(steps=steps)
    std = vae.std.to(torch.float64)
    scale = uncertainty_scale(u, x, background)  # [B]
    with torch.no_grad():
        z = vae.encode(x)[0].detach().clone()
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in tqdm(range(steps), disable=not progress, desc="CLUE", leave=False):
        rows = vae.decode(z).to(torch.float64)
        cost = u(rows) / scale + lam_x * ((rows - x).abs() / std).mean(1)
        optimizer.zero_grad()
        cost.sum().backward()
        optimizer.step()
    with torch.no_grad():
        counterfactual = vae.decode(z).to(torch.float64)
    return ((counterfactual - x).abs() / std), counterfactual


def clue_map(u: RowUncertainty, x: object, background: object, *, vae: RowVAE | None = None,
             **options: float) -> Tensor:
    """:func:`row_clue`'s attribution alone (``attribute_rows(..., "clue", vae=...)``)."""
    if vae is None:
        raise ValueError("vae: CLUE searches a VAE of the rows; pass vae= (train_row_vae "
                         "fits one to training rows)")
    return row_clue(u, vae, x, background, **options)[0]
