"""The one training loop of every network uattr trains: the posteriors' members and
single networks, the VAEs, the corruption detectors and the tabular network."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["fit"]


def fit(
    model: nn.Module,
    examples: int,
    batch_loss: Callable[[Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch_end: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> nn.Module:
    """Minibatch training of ``model`` on ``examples`` examples, in training mode.

    Each epoch visits the examples in an order drawn from ``generator`` (``None``: in
    their own order, e.g. one full batch), in batches of ``batch_size`` indices ``[b]``;
    ``batch_loss(indices)`` returns the batch's mean loss, whose gradient ``optimizer``
    (and ``scheduler``, per batch) follows. ``epoch_end(epoch, mean loss per example)``
    is called after each epoch (logging, keeping the best weights). Returns ``model`` in
    evaluation mode. The draws are those each trainer made by hand before, in the same
    order, so that a seed gives the same weights as it did."""
    model.train()
    steps = epochs * -(-examples // batch_size)
    with tqdm(total=steps, desc=desc, unit="batch", leave=False) as bar:
        for epoch in range(epochs):
            order = (torch.randperm(examples, generator=generator) if generator is not None
                     else torch.arange(examples))
            total = 0.0
            for i in range(0, examples, batch_size):
                indices = order[i : i + batch_size]
                loss = batch_loss(indices)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += float(loss.detach()) * len(indices)
                bar.update()
            if epoch_end is not None:
                epoch_end(epoch, total / examples)
    return model.eval()
