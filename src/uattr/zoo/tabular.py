"""The tabular regression task of papers/004: scikit-learn's bundled diabetes data
(442 rows, 10 features) and a Gaussian MLP that predicts a mean and a log-variance per
row. A posterior over such MLPs (an ensemble, or MC-Dropout with frozen masks) gives
``[B, S, 2]``; :mod:`uattr.explanation.tabular` explains it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .training import fit

__all__ = ["GaussianMLP", "TabularData", "load_diabetes", "train_gaussian_mlp"]


@dataclass(frozen=True)
class TabularData:
    """Standardised features ``x [N, F]`` and targets ``y [N]``, with the names."""

    x: Tensor
    y: Tensor
    feature_names: list[str]


def load_diabetes(split: str = "train", seed: int = 0, test_share: float = 0.2
                  ) -> TabularData:
    """scikit-learn's diabetes data, split (seeded) and standardised with the training
    split's mean and std (features and target alike)."""
    from sklearn.datasets import load_diabetes as sklearn_diabetes
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = sklearn_diabetes()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=test_share, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return TabularData(torch.tensor((x - mean) / std, dtype=torch.float32),
                       torch.tensor((y - y_mean) / y_std, dtype=torch.float32),
                       list(data.feature_names))


class GaussianMLP(nn.Module):
    """``x [B, F] -> [B, 2]``: the mean and the log-variance of a Gaussian, from two ReLU
    layers with dropout (so that MC-Dropout can use it)."""

    def __init__(self, features: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def train_gaussian_mlp(data: TabularData, *, seed: int = 0, epochs: int = 300,
                       lr: float = 1e-2, hidden: int = 64, dropout: float = 0.1) -> GaussianMLP:
    """Full-batch Adam on the Gaussian negative log-likelihood (``nn.GaussianNLLLoss``);
    a few seconds on a CPU for the 353 training rows."""
    torch.manual_seed(seed)
    model = GaussianMLP(data.x.shape[1], hidden, dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.GaussianNLLLoss()

    def batch_loss(rows: Tensor) -> Tensor:
        out = model(data.x[rows])
        return loss_fn(out[:, 0], data.y[rows], out[:, 1].exp())

    rows = len(data.x)  # one full batch, in order, per epoch
    return fit(model, rows, batch_loss, optimizer, epochs=epochs, batch_size=rows,
               generator=None, desc="tabular")
