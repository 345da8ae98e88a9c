"""The blurring test of papers/002 §5.2.1 (Table 1, eq. 13; DESIGN §4).

Pixels are blurred one after another in decreasing order of attribution, up to a budget
of q% of the image (q = 2, 5). With ``x_t`` the image whose top t pixels are blurred,

    URR_x(t) = max_{i ≤ t} 1 - U(x_i) / U(x)                       # eq. 13, one image

MURR is ``URR_x(T)`` at the full budget (higher is better) and AUC-URR the area under the
remaining-uncertainty curve ``1 - URR_x(t)`` over the budget normalised to [0, 1] (lower
is better); both are reported as medians over images, since a blurred image can leave
the data distribution. papers/002 explains the epistemic uncertainty here; any kind works.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..attribution.perturbation import blurred_reference
from ..passes import PassCounter
from ..runs import RunFolder
from .detection import MethodSpec, attribute_in_batches

__all__ = ["BLUR_TEST_BUDGETS", "blur_curves", "curve_scores", "run_blur_test"]

BLUR_TEST_BUDGETS = (0.02, 0.05)
MAX_STEPS = 100  # beyond this many pixels in the budget, blur them in 100 equal steps

UncertaintyFn = Callable[[Tensor], Tensor]


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
    pixels of ``x [B, C, H, W]`` in the order of ``maps [B, H, W]``.

    ``fractions[t]`` is the share of the image blurred at step t (0 at t = 0, where the
    URR is 0). One pixel per step while the budget holds at most 100 pixels. The
    ``B·T`` blurred images go through the posterior in chunks of ``images_per_eval``.
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
    steps = min(total, MAX_STEPS)
    counts = torch.round(torch.linspace(0, total, steps + 1)).long()  # pixels blurred [T+1]
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(batch, -1))
    rank = rank.view(batch, 1, 1, height, width)  # 0 = the pixel of highest attribution
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


def run_blur_test(
    images: Tensor,
    methods: list[MethodSpec],
    uncertainty_of: UncertaintyFn,
    *,
    folder: RunFolder | None = None,
    budgets: tuple[float, ...] = BLUR_TEST_BUDGETS,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    data_key: dict | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, tuple[Tensor, Tensor]]]:
    """MURR and AUC-URR (medians over images) of every method at every budget; returns
    ``(rows, {method: (fractions, median curve)})`` at the largest budget, for plotting.
    With a ``folder``, each method is a cell, reused on a rerun."""
    rows, medians = [], {}
    largest = max(budgets)
    for spec in methods:
        config = {"method": spec.name, "repr": repr(spec.method), **(spec.config or {}),
                  "budgets": list(budgets), "steps": MAX_STEPS,
                  "blurred": "gaussian 5x5, sigma 2", "data": data_key or {"n": len(images)}}
        cached = folder.load_cell(f"blur-test-{spec.name}", config) if folder else None
        if cached is not None:
            row, median_curve = cached
            log(f"{spec.name}: loaded from {folder.path / 'cells'}")
        else:
            log(f"{spec.name}: attributing {len(images)} images")
            start = time.perf_counter()
            with PassCounter(spec.method.posterior) as passes:
                maps = attribute_in_batches(spec, images, batch_size, device)
            seconds = (time.perf_counter() - start) / len(images)
            row = {"method": spec.name}
            for budget in budgets:
                parts = []
                for i in range(0, len(images), batch_size):
                    x = images[i : i + batch_size].to(device)
                    fractions, curves = blur_curves(uncertainty_of, x,
                                                    maps[i : i + batch_size].to(device), budget)
                    parts.append(curves.cpu())
                curves = torch.cat(parts)
                murr, auc = curve_scores(fractions.cpu(), curves)
                row[f"MURR {100 * budget:g}%"] = float(murr.median())
                row[f"AUC-URR {100 * budget:g}%"] = float(auc.median())
                if budget == largest:
                    median_curve = torch.stack([fractions.cpu(), curves.median(0).values])
            row["s/image"] = seconds
            row["forward/image"] = passes.forward / len(images) if passes.available else None
            row["n"] = len(images)
            if folder:
                folder.save_cell(f"blur-test-{spec.name}", config, row,
                                 median_curve.numpy())
            median_curve = median_curve.numpy()
        rows.append(row)
        medians[spec.name] = (torch.as_tensor(median_curve[0]),
                              torch.as_tensor(median_curve[1]))
    return rows, medians
