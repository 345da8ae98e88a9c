"""Explain some images: what ``uattr explain`` computes and writes, for any method.

For every image: its map, the box of highest mean attribution (the size of the
detection benchmark's patch unless asked otherwise), and the total, aleatoric and
epistemic uncertainty before and after that box is replaced by the blurred image (the
perturbation every method of uattr uses), so that a user sees at once whether the region
the map points to carries the uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import viz
from ..attribution import OptimizationResult
from ..metrics import find_box
from ..ops.perturb import blurred_reference
from ..ops.segment import box_mask
from ..uq import decompose, predict_probs
from ..zoo.data import default_patch_size
from .common import MethodSpec, attribute_in_batches
from .runs import RunFolder

__all__ = ["Explanation", "diagnostics_rows", "explain_images", "summary_rows",
           "uninformative_warnings", "write_explanation"]

KINDS = ("total", "aleatoric", "epistemic")


@dataclass(frozen=True)
class Explanation:
    """``maps [N, H, W]``, the ``segments [N, H, W]`` they were computed on (``None``: the
    method's own unit), ``boxes [N, 4]`` (top, left, height, width) of highest mean
    attribution, and U of each kind ``[N]`` ``before`` and ``after`` the box is blurred.
    ``diagnostics``: per-image rows of the optimization-based method (else empty), and
    its ``warnings`` for images whose found region removes next to no uncertainty."""

    maps: Tensor
    segments: Tensor | None
    boxes: Tensor
    before: dict[str, Tensor]
    after: dict[str, Tensor]
    diagnostics: list[dict]
    warnings: list[str]


def explain_images(spec: MethodSpec, images: Tensor, *, segments: Tensor | None = None,
                   batch_size: int = 100, device: torch.device | str = "cpu",
                   box_size: int | None = None, names: Sequence | None = None) -> Explanation:
    """Attribute ``images [N, C, H, W]`` with the row ``spec``, ``batch_size`` at a time
    (:func:`~.common.attribute_in_batches`). ``segments [N, H, W]`` given by
    the user replace the row's segmenter; ``names`` (default: positions) label the
    diagnostics."""
    n, _, height, width = images.shape
    box_size = box_size or default_patch_size(height, width)
    names = list(range(n)) if names is None else list(names)
    if segments is None and spec.segmenter is not None:  # segmented once: maps and figures
        segments = torch.cat([spec.segmenter(images[i : i + batch_size].to(device)).cpu()
                              for i in range(0, n, batch_size)])
    results: list[OptimizationResult] = []
    maps = attribute_in_batches(spec, images, batch_size, device, segments=segments,
                                results=results)  # [N, H, W]
    diagnostics, warnings, start = [], [], 0
    for result in results:  # the optimization-based method's, batch by batch
        batch = names[start : start + len(result.steps)]
        diagnostics += diagnostics_rows(result, batch)
        warnings += uninformative_warnings(result, batch)
        start += len(batch)
    boxes = find_box(maps, box_size)  # [N, 4]
    perturbed = _blur_boxes(images, boxes)
    posterior = spec.method.posterior
    before = decompose(predict_probs(posterior, images, batch_size=batch_size, device=device))
    after = decompose(predict_probs(posterior, perturbed, batch_size=batch_size, device=device))
    return Explanation(maps, segments, boxes,
                       {k: before[k].cpu() for k in KINDS}, {k: after[k].cpu() for k in KINDS},
                       diagnostics, warnings)


def _blur_boxes(images: Tensor, boxes: Tensor) -> Tensor:
    """``images`` with each box replaced by the blurred image (DESIGN §3.3)."""
    inside = box_mask(boxes, *images.shape[-2:])  # [N, H, W]
    return torch.where(inside[:, None], blurred_reference(images), images)  # [N, C, H, W]


def diagnostics_rows(result: OptimizationResult, names: Sequence) -> list[dict]:
    """One row per image of what the optimization-based method did."""
    return [{"image": name, "U(x)": float(before), "U(x'), found region blurred": float(after),
             "share removed": float(removed), "steps": int(steps), "converged": bool(done),
             "blur σ (px)": float(sigma)}
            for name, before, after, removed, steps, done, sigma in zip(
                _plain(names), result.u_before, result.u_after, result.removed,
                result.steps, result.converged, result.sigma, strict=True)]


def uninformative_warnings(result: OptimizationResult, names: Sequence) -> list[str]:
    """A line for each image whose found region removes less than
    :data:`~uattr.attribution.optimization.UNINFORMATIVE_BELOW` of its uncertainty."""
    names = _plain(names)
    lines = []
    for b in result.uninformative().nonzero().flatten().tolist():
        lines.append(
            f"image {names[b]}: blurring the region found removes only "
            f"{100 * float(result.removed[b]):.1f}% of its uncertainty (U {result.u_before[b]:.3f}"
            f" -> {result.u_after[b]:.3f}); the blur cannot move it, so the map is shaped by "
            "the sparsity term alone and says nothing about where the uncertainty comes from")
    return lines


def _file_stem(name: str) -> str:
    """A figure's name from an image's: its file's extension dropped (``photo.png`` gives
    ``explain-0000-photo.png``, not ``…photo.png.png``), odd characters made ``_``."""
    lowered = name.lower()
    for suffix in (".png", ".jpg", ".jpeg"):
        if lowered.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _plain(names: Sequence) -> list:
    return names.tolist() if isinstance(names, Tensor) else list(names)


def summary_rows(explanation: Explanation, names: list[str]) -> list[dict]:
    """One row per image: its name, the box, and U of each kind before and after."""
    rows = []
    for i, name in enumerate(names):
        row = {"image": name, "box (top, left, height, width)": explanation.boxes[i].tolist()}
        for kind in KINDS:
            row[f"U {kind}"] = float(explanation.before[kind][i])
            row[f"U {kind}, box blurred"] = float(explanation.after[kind][i])
        rows.append(row)
    return rows


def write_explanation(out: RunFolder, images: Tensor, names: list[str],
                      explanation: Explanation, *, method: str, uncertainty: str,
                      extra: dict | None = None) -> list[dict]:
    """Into ``out``: one PNG per image (the image, its segments if any, its map with the
    box), ``explanations.png`` with the first 16, ``maps.npy``, ``summary.json``;
    returns the summary's rows."""
    rows = summary_rows(explanation, names)
    u = explanation.before[uncertainty]
    titles = [f"{name}  U={value:.2f}" for name, value in zip(names, u.tolist(), strict=True)]
    seg = explanation.segments
    for i, name in enumerate(names):
        stem = _file_stem(name)
        out.save_figure(f"explain-{i:04d}-{stem}.png", viz.explanation_grid(
            images[i : i + 1], None if seg is None else seg[i : i + 1],
            explanation.maps[i : i + 1], titles=titles[i : i + 1],
            boxes=explanation.boxes[i : i + 1]))
    first = slice(0, 16)
    out.save_figure("explanations.png", viz.explanation_grid(
        images[first], None if seg is None else seg[first], explanation.maps[first],
        titles=titles[first], boxes=explanation.boxes[first]))
    out.write_npy("maps.npy", explanation.maps.numpy())
    out.write_json("summary.json", {"method": method, "uncertainty explained": uncertainty,
                                    **(extra or {}), "images": rows})
    return rows
