"""The blurring test of papers/002 §5.2.1 (Table 1, eq. 13; DESIGN §4).

Pixels are blurred one after another in decreasing order of attribution, up to a budget
of q% of the image (q = 2, 5). With ``x_t`` the image whose top t pixels are blurred,

    URR_x(t) = max_{i ≤ t} 1 - U(x_i) / U(x)                       # eq. 13, one image

MURR is ``URR_x(T)`` at the full budget (higher is better) and AUC-URR the area under the
remaining-uncertainty curve ``1 - URR_x(t)`` over the budget normalised to [0, 1] (lower
is better); both are reported as medians over images, since a blurred image can leave
the data distribution. papers/002 explains the epistemic uncertainty here; any kind works.
The curves and their scores are in :mod:`uattr.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..metrics import BLUR_CURVE_STEPS, blur_curves, curve_scores
from ..runs import RunFolder
from .common import MethodSpec, attribute_counted, cached_cell, method_key

__all__ = ["BLUR_TEST_BUDGETS", "run_blur_test"]

BLUR_TEST_BUDGETS = (0.02, 0.05)

UncertaintyFn = Callable[[Tensor], Tensor]


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
    benchmark_key = {"budgets": list(budgets), "steps": BLUR_CURVE_STEPS,
                     "blurred": "gaussian 5x5, sigma 2", "data": data_key or {"n": len(images)}}
    for spec in methods:

        def compute(spec: MethodSpec = spec) -> tuple[dict, np.ndarray]:
            done = attribute_counted(spec, images, batch_size, device, log=log)
            row = {"method": spec.name}
            for budget in budgets:
                parts = []
                for i in range(0, len(images), batch_size):
                    x = images[i : i + batch_size].to(device)
                    fractions, curves = blur_curves(
                        uncertainty_of, x, done.maps[i : i + batch_size].to(device), budget)
                    parts.append(curves.cpu())
                curves = torch.cat(parts)
                murr, auc = curve_scores(fractions.cpu(), curves)
                row[f"MURR {100 * budget:g}%"] = float(murr.median())
                row[f"AUC-URR {100 * budget:g}%"] = float(auc.median())
                if budget == largest:
                    median_curve = torch.stack([fractions.cpu(), curves.median(0).values])
            row["s/image"] = done.seconds
            row["forward/image"] = done.forward
            row["n"] = len(images)
            return row, median_curve.numpy()

        row, median_curve = cached_cell(folder, f"blur-test-{spec.name}",
                                        {**method_key(spec), **benchmark_key}, compute, log,
                                        spec.name)
        rows.append(row)
        medians[spec.name] = (torch.as_tensor(median_curve[0]),
                              torch.as_tensor(median_curve[1]))
    return rows, medians
