"""Figures of tabular attributions: which features drive the uncertainty across rows, one
row's waterfall, and the benchmark's scores. Plain matplotlib ``Figure`` objects (no
pyplot), saved by the caller."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["attribution_summary", "benchmark_figure", "deletion_figure"]

#: the most features a panel shows (the rest are summed into one bar)
SHOWN = 12


def attribution_summary(phi: np.ndarray, names: Sequence[str], rows: Sequence[int],
                        base: float, uncertainty: np.ndarray, kind: str) -> Figure:
    """Left: each feature's mean |φ| over the explained rows ``phi [B, F]``, largest first.
    Right: the first row's waterfall, from the background's mean ``base`` to its ``U``,
    one bar per feature (red raises the uncertainty, blue lowers it)."""
    figure = Figure(figsize=(11, 0.45 * min(len(names), SHOWN) + 1.8))
    left, right = figure.subplots(1, 2)
    order = np.argsort(-np.abs(phi).mean(0))[:SHOWN]
    left.barh([names[i] for i in order][::-1], np.abs(phi).mean(0)[order][::-1],
              color="tab:gray")
    left.set_xlabel(f"mean |attribution| over {len(phi)} rows")
    left.set_title(f"What drives the {kind} uncertainty")
    first = phi[0]
    order = np.argsort(-np.abs(first))
    shown, rest = order[:SHOWN - 1], order[SHOWN - 1:]
    labels = [names[i] for i in shown] + ([f"{len(rest)} others"] if len(rest) else [])
    values = list(first[shown]) + ([float(first[rest].sum())] if len(rest) else [])
    start = base
    for position, value in enumerate(values):
        right.barh(len(values) - 1 - position, value, left=start,
                   color="tab:red" if value > 0 else "tab:blue")
        start += value
    right.set_yticks(range(len(values)), labels[::-1])
    right.axvline(base, color="black", lw=0.8, ls=":")
    right.axvline(float(uncertainty[0]), color="black", lw=0.8)
    right.set_xlabel(f"U: background mean {base:.3f} → row {rows[0]}: "
                     f"{float(uncertainty[0]):.3f}")
    right.set_title(f"Row {rows[0]}")
    figure.tight_layout()
    return figure


def benchmark_figure(rows: Sequence[dict]) -> Figure:
    """The rank score of every method, one panel per synthetic set, a group of bars per
    model; the dotted line is chance (1/2)."""
    sets = list(dict.fromkeys(r["set"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    figure = Figure(figsize=(4.2 * len(sets), 3.6))
    axes = np.atleast_1d(figure.subplots(1, len(sets), sharey=True))
    width = 0.8 / len(methods)
    for axis, name in zip(axes, sets, strict=True):
        for k, method in enumerate(methods):
            found = [next((r for r in rows if r["set"] == name and r["model"] == m
                           and r["method"] == method), None) for m in models]
            positions = [i + k * width for i, r in enumerate(found) if r is not None]
            axis.bar(positions, [r["rank score"] for r in found if r is not None], width,
                     yerr=[r["rank score s.e."] for r in found if r is not None],
                     label=method)
        axis.axhline(0.5, color="black", lw=0.8, ls=":")
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models,
                        rotation=15)
        axis.set_title(f"{name} ({rows[[r['set'] for r in rows].index(name)]['uncertainty']})")
        axis.set_ylim(0, 1.05)
    axes[0].set_ylabel("rank score of the planted cause")
    axes[-1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def deletion_figure(curves: dict[str, dict[str, Sequence[float]]]) -> Figure:
    """Each data set's mean deletion curve per order (``{data: {order: [F + 1]}}``): the
    uncertainty as the most attributed features are replaced by the background."""
    figure = Figure(figsize=(4.2 * len(curves), 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(curves)))
    for axis, (name, orders) in zip(axes, curves.items(), strict=True):
        for order, curve in orders.items():
            axis.plot(range(len(curve)), curve, label=order,
                      ls=":" if order == "random order" else "-")
        axis.set_title(name)
        axis.set_xlabel("features removed, most attributed first")
    axes[0].set_ylabel("mean uncertainty of the rows")
    axes[-1].legend(fontsize=8)
    figure.tight_layout()
    return figure
