"""How much a detection table moves between independently trained ensembles.

Each of K ensembles (``--ensemble-index 0 … K−1``) has its own detection table at the same
N, its own detection set (the N images whose uncertainty its corruption raised most) and a
``detection_per_image.json`` beside it (every row's IoU on every image). For each row:

- its IoU on each ensemble, their mean and the standard error across ensembles
  (std / √K, ddof = 1): how far a second ensemble would move the row;
- the paired standard error across images of its difference to the best row of the same
  ensemble, averaged over the ensembles: how far a second draw of images would;
- how often it is first (oracle rows aside), and its mean rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["ORACLE", "detection_spread", "paired_differences", "paired_differences_by_column",
           "read_per_image"]

ORACLE = "oracle:"


def read_per_image(folder: str | Path, stem: str = "detection") -> dict[str, np.ndarray]:
    """``{row: IoU [N]}`` of a detection table folder (``<stem>_per_image.json``)."""
    path = Path(folder) / f"{stem}_per_image.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the table was written before uattr "
                                "stored per-image values; regenerate it (uattr reproduce)")
    stored = json.loads(path.read_text())
    return {row: np.asarray(values, dtype=np.float64) for row, values in stored["IoU"].items()}


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def paired_differences(table: dict[str, np.ndarray], column: str = "IoU") -> list[dict]:
    """Every ordered pair of rows of one table (``{row: value [N]}``, the same N images, the
    values of ``column``): the mean of ``value[row] − value[against]`` over the images, its
    standard error (paired: std of the per-image differences / √N, ddof = 1), and the
    difference in those standard errors. What a sentence "A leads B by d (k s.e.)" is
    checked against."""
    out = []
    for row, values in table.items():
        for against, other in table.items():
            if against == row:
                continue
            difference = values - other  # [N]
            se = _se(difference)
            mean = float(difference.mean())
            out.append({"method": row, "against": against, f"{column} difference": mean,
                        "its s.e.": se, "in s.e.": mean / se if se > 0 else None})
    return out


def paired_differences_by_column(values: dict[str, dict[str, Sequence[float]]],
                                 prefix: str = "") -> list[dict]:
    """:func:`paired_differences` of every column of a table stored per image as
    ``{row: {column: [N]}}`` (the blurring test's and faithfulness's), one block of pairs
    per column in the first row's column order, each named ``prefix + column``."""
    columns = list(next(iter(values.values())))
    return [pair for column in columns for pair in paired_differences(
        {row: np.asarray(v[column], dtype=np.float64) for row, v in values.items()},
        prefix + column)]


def detection_spread(tables: Sequence[dict[str, np.ndarray]]) -> list[dict]:
    """One row per method of the K ``tables`` (``{row: IoU [N]}``, one per ensemble; the rows
    every table has, in the first table's order), as described in the module docstring."""
    if len(tables) < 2:
        raise ValueError(f"tables must hold at least two ensembles' tables, got {len(tables)}")
    rows = [row for row in tables[0] if all(row in t for t in tables)]
    ranked = [row for row in rows if not row.startswith(ORACLE)]
    means = np.array([[t[row].mean() for t in tables] for row in rows])  # [R, K]
    firsts = {row: 0 for row in rows}
    ranks = {row: [] for row in rows}
    paired = {row: [] for row in rows}
    for table in tables:
        order = sorted(ranked, key=lambda row: -table[row].mean())
        firsts[order[0]] += 1
        for place, row in enumerate(order, start=1):
            ranks[row].append(place)
        for row in rows:
            paired[row].append(_se(table[row] - table[order[0]]))
    out = []
    for i, row in enumerate(rows):
        entry = {"method": row}
        entry.update({f"IoU, ensemble {k}": float(means[i, k]) for k in range(len(tables))})
        entry.update({
            "IoU mean": float(means[i].mean()),
            "s.e. across ensembles": _se(means[i]),
            "paired s.e. across images": float(np.mean(paired[row])),
            "first in": None if row.startswith(ORACLE) else firsts[row],
            "mean rank": None if row.startswith(ORACLE) else float(np.mean(ranks[row])),
            "ensembles": len(tables),
            "n": len(tables[0][row]),
        })
        out.append(entry)
    return out
