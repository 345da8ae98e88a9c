"""Scores of attribution maps: the box search of the detection benchmark, IoU and ADA,
and the pixel deletion / insertion curves of papers/004.

Boxes are ``(top, left, height, width)`` in pixels, as :func:`uattr.data.patch_swap`
returns them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["ada", "box_iou", "deletion_insertion", "find_box"]


def find_box(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The box of the given size with the highest mean attribution, for each map.

    Exhaustive search over every position (an average pool with stride 1); ties go to
    the first position in row-major order. ``maps [B, H, W]`` -> boxes ``[B, 4]``.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape [B, H, W], got {tuple(maps.shape)}")
    height, width = (size, size) if isinstance(size, int) else size
    if not (1 <= height <= maps.shape[1] and 1 <= width <= maps.shape[2]):
        raise ValueError(f"size must fit in the map {tuple(maps.shape[1:])}, got {(height, width)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf values")
    means = F.avg_pool2d(maps[:, None].double(), (height, width), stride=1)[:, 0]  # [B, H', W']
    best = means.flatten(1).argmax(1)  # [B]
    top, left = best // means.shape[2], best % means.shape[2]
    return torch.stack([top, left, torch.full_like(top, height), torch.full_like(top, width)], 1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of paired boxes ``[B, 4]`` -> ``[B]``."""
    a, b = a.double(), b.double()
    top = torch.maximum(a[:, 0], b[:, 0])
    left = torch.maximum(a[:, 1], b[:, 1])
    bottom = torch.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    right = torch.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = (bottom - top).clamp_min(0) * (right - left).clamp_min(0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / union


def ada(iou: Tensor, threshold: float = 0.5) -> float:
    """Anomaly detection accuracy: the share of images whose IoU exceeds ``threshold``."""
    return float((iou > threshold).double().mean())


@torch.no_grad()
def deletion_insertion(
    score: Callable[[Tensor], Tensor],
    x: Tensor,
    maps: Tensor,
    *,
    steps: int = 20,
    deleted: Tensor | None = None,
    targets: Tensor | None = None,
    images_per_eval: int = 2000,
) -> dict[str, Tensor]:
    """Pixel deletion and insertion curves of ``score(x) -> [B]`` (a class score) as the
    pixels of ``x [B, C, H, W]`` are changed in the order of ``maps [B, H, W]`` (highest
    first; ties to the lower flat index), papers/004 "Mechanism 3".

    Step ``t`` of ``steps`` changes the top ``round(t · H·W / steps)`` pixels:

    - **deletion** replaces them by ``deleted`` (default 0, black), starting from ``x``;
    - **insertion** starts from ``deleted`` and puts them back from ``x``.

    ``score`` may also return every class ``[N, K]``; then ``targets [B]`` says which
    class each image's curve follows.

    Returns ``deletion`` and ``insertion`` curves ``[B, steps + 1]`` and their areas
    ``deletion_auc``, ``insertion_auc`` ``[B]`` (trapezoid over the fraction changed,
    0 to 1). A low deletion AUC and a high insertion AUC mean a faithful map.
    """
    if maps.ndim != 3 or maps.shape[0] != x.shape[0] or maps.shape[1:] != x.shape[-2:]:
        raise ValueError(f"maps must have shape [B, H, W] = {[x.shape[0], *x.shape[-2:]]}, "
                         f"got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf values")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    deleted = torch.zeros_like(x) if deleted is None else deleted.expand_as(x)
    batch, pixels = x.shape[0], x.shape[-2] * x.shape[-1]
    rank = torch.empty(batch, pixels, dtype=torch.long, device=x.device)
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(batch, -1))
    counts = torch.round(torch.arange(steps + 1, device=x.device) * pixels / steps)
    changed = rank[:, None, :] < counts[None, :, None]  # [B, T+1, H·W]
    changed = changed.view(batch, steps + 1, 1, *x.shape[-2:])
    curves = {}
    for name, start, end in (("deletion", x, deleted), ("insertion", deleted, x)):
        versions = torch.where(changed, end[:, None], start[:, None])  # [B, T+1, C, H, W]
        flat = versions.flatten(0, 1)
        values = torch.cat([score(flat[i : i + images_per_eval])
                            for i in range(0, flat.shape[0], images_per_eval)])
        values = values.view(batch, steps + 1, *values.shape[1:])
        if values.ndim == 3:  # [B, T+1, K]: follow each image's target class
            if targets is None or targets.shape != (batch,):
                raise ValueError(f"targets must be a tensor [B] = [{batch}] of classes when "
                                 "score returns [N, K]")
            values = values.gather(2, targets.view(batch, 1, 1).expand(-1, steps + 1, 1))
            values = values[..., 0]
        curves[name] = values
        fractions = counts.to(values.dtype) / pixels
        curves[f"{name}_auc"] = torch.trapezoid(curves[name], fractions, dim=1)
    return curves
