"""Scores of attribution maps: the box search of the detection benchmark, IoU and ADA.

Boxes are ``(top, left, height, width)`` in pixels, as :func:`uattr.data.patch_swap`
returns them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["ada", "box_iou", "find_box"]


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
