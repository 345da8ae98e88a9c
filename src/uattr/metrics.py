"""Scores of attribution maps, every benchmark's in one place:

- detection (papers/000 §4.1): the box search, IoU and ADA;
- faithfulness (papers/000 §4.2): the top-q% pixel mask, their blur, and the uncertainty
  reduction rate URR;
- the blurring test (papers/002 §5.2.1): URR curves, MURR and AUC-URR;
- papers/004's pixel deletion / insertion curves.

Boxes are ``(top, left, height, width)`` in pixels, as :func:`uattr.zoo.data.patch_swap`
returns them. Pixels are ranked by attribution, highest first, ties to the lower flat
index (:func:`pixel_ranks`), so that no score depends on the batch an image is in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from .ops.perturb import blurred_reference

__all__ = ["BLUR_CURVE_STEPS", "ada", "blur_curves", "blur_top_pixels", "box_iou",
           "curve_scores", "deletion_insertion", "find_box", "pixel_ranks", "top_pixel_mask",
           "urr"]

BLUR_CURVE_STEPS = 100  # beyond this many pixels in the budget, blur them in 100 equal steps

UncertaintyFn = Callable[[Tensor], Tensor]


def pixel_ranks(maps: Tensor) -> Tensor:
    """``[B, H·W]``: each pixel's rank in its map, 0 for the highest attribution; ties go
    to the lower flat index (a stable sort), so a rank never depends on the batch."""
    batch, pixels = maps.shape[0], maps.shape[-2] * maps.shape[-1]
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(pixels, device=maps.device).expand(batch, -1))
    return ranks


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
    rank = pixel_ranks(maps)  # [B, H·W]
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


# ------------------------------------------------------------------------- faithfulness
def top_pixel_mask(maps: Tensor, fraction: float) -> Tensor:
    """``[B, H, W]`` bool: exactly ``ceil(fraction · H · W)`` pixels per image, those of
    highest attribution (ties go to the lower flat index)."""
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape [B, H, W], got {tuple(maps.shape)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps must be finite")
    batch, height, width = maps.shape
    k = math.ceil(fraction * height * width - 1e-9)  # 0.02·784 is 15.68 -> 16, not 17
    return (pixel_ranks(maps) < k).view(batch, height, width)


def urr(u_before: Tensor, u_after: Tensor) -> Tensor:
    """Uncertainty reduction rate ``1 - U(x̃) / U(x)`` ``[B]``; ``U(x)`` must be > 0."""
    if (u_before <= 0).any():
        raise ValueError("u_before must be > 0: the URR of a certain image is undefined")
    return 1 - u_after / u_before


def blur_top_pixels(x: Tensor, maps: Tensor, fraction: float,
                    blurred: Tensor | None = None) -> Tensor:
    """``x`` with its top ``fraction`` pixels (by ``maps``) taken from ``blurred``
    (default: the 5×5, σ = 2 blur of papers/001 A.2), all channels of a pixel together."""
    mask = top_pixel_mask(maps, fraction)[:, None]  # [B, 1, H, W]
    blurred = blurred_reference(x) if blurred is None else blurred
    return torch.where(mask, blurred, x)


# -------------------------------------------------------------------- the blurring test
def blur_curves(
    uncertainty_of: UncertaintyFn,
    x: Tensor,
    maps: Tensor,
    budget: float,
    *,
    blurred: Tensor | None = None,
    images_per_eval: int = 2000,
) -> tuple[Tensor, Tensor]:
    """``(fractions [T+1], URR curves [B, T+1])`` for blurring up to ``budget`` of the
    pixels of ``x [B, C, H, W]`` in the order of ``maps [B, H, W]`` (papers/002 eq. 13:
    ``URR_x(t) = max_{i ≤ t} 1 - U(x_i) / U(x)``).

    ``fractions[t]`` is the share of the image blurred at step t (0 at t = 0, where the
    URR is 0). One pixel per step while the budget holds at most
    :data:`BLUR_CURVE_STEPS` pixels. The ``B·T`` blurred images go through the posterior
    in chunks of ``images_per_eval``.
    """
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"maps must have shape [B, H, W] = {[x.shape[0], *x.shape[-2:]]}, "
                         f"got {tuple(maps.shape)}")
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps must be finite")
    batch, _, height, width = x.shape
    pixels = height * width
    total = math.ceil(budget * pixels - 1e-9)
    steps = min(total, BLUR_CURVE_STEPS)
    counts = torch.round(torch.linspace(0, total, steps + 1)).long()  # pixels blurred [T+1]
    rank = pixel_ranks(maps).view(batch, 1, 1, height, width)  # 0: highest attribution
    blurred = blurred_reference(x) if blurred is None else blurred
    with torch.no_grad():
        u0 = uncertainty_of(x)  # [B]
        if (u0 <= 0).any():
            raise ValueError("every image must have U(x) > 0 for its URR to be defined")
        per_chunk = max(1, images_per_eval // batch)
        u = []
        for start in range(1, steps + 1, per_chunk):
            k = counts[start : start + per_chunk].to(x.device)  # [t]
            mask = rank < k.view(1, -1, 1, 1, 1)  # [B, t, 1, H, W]
            images = torch.where(mask, blurred[:, None], x[:, None])  # [B, t, C, H, W]
            u.append(uncertainty_of(images.flatten(0, 1)).view(batch, -1))
        u = torch.cat(u, 1)  # [B, T]
    reduction = torch.cat([torch.zeros(batch, 1, device=x.device), 1 - u / u0[:, None]], 1)
    curves = torch.cummax(reduction, dim=1).values  # eq. 13: the best so far
    return counts.to(x.dtype) / pixels, curves


def curve_scores(fractions: Tensor, curves: Tensor) -> tuple[Tensor, Tensor]:
    """``(MURR [B], AUC-URR [B])`` of URR curves ``[B, T+1]``: the URR at the full budget,
    and the trapezoid area under ``1 - URR`` with the budget's axis scaled to [0, 1]."""
    axis = (fractions - fractions[0]) / (fractions[-1] - fractions[0])
    return curves[:, -1], torch.trapezoid(1 - curves, axis, dim=1)
