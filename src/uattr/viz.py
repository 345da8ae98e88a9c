"""Figures. Every function returns a matplotlib ``Figure`` (never shows it).

Figures are built as :class:`matplotlib.figure.Figure` objects, never through pyplot:
importing uattr leaves the user's backend alone (a notebook keeps its inline plots), and
no figure lingers in pyplot's registry after it is saved."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib import cycler
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

__all__ = ["blur_sequences", "detection_grid", "explanation_grid", "image_rows", "maps_grid",
           "optimization_trace", "segments_grid", "urr_curves"]


def _image(x: Tensor) -> np.ndarray:
    """``[C, H, W]`` -> something ``imshow`` draws (grey or RGB)."""
    array = x.detach().cpu().numpy()
    return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))


def _show(ax, x: Tensor) -> None:
    image = _image(x)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _show_segments(ax, x: Tensor, labels: Tensor) -> None:
    """Each segment of ``labels [H, W]`` in its own colour over the image ``x [C, H, W]``
    (boundaries would cover a 28×28 image entirely)."""
    from skimage.color import label2rgb

    ax.imshow(label2rgb(labels.cpu().numpy(), image=_image(x), alpha=0.45, bg_label=-1))
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_box(ax, box, color: str) -> None:
    top, left, height, width = (int(v) for v in box)
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                           edgecolor=color, linewidth=1.5))


def explanation_grid(
    images: Tensor,
    segments: Tensor | None,
    maps: Tensor,
    *,
    titles: list[str] | None = None,
    boxes: Tensor | None = None,
) -> Figure:
    """One row per image: the image | its segments | the map over the image, with the box
    of highest mean attribution ``boxes [B, 4]`` (top, left, height, width) in cyan."""

    n = images.shape[0]
    cols = 3 if segments is not None else 2
    fig = Figure(figsize=(2.2 * cols, 2.2 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        _show(axes[i, 0], images[i])
        axes[i, 0].set_title(titles[i] if titles else "image", fontsize=8)
        if segments is not None:
            _show_segments(axes[i, 1], images[i], segments[i])
            axes[i, 1].set_title("segments", fontsize=8)
        ax = axes[i, cols - 1]
        _show(ax, images[i])
        ax.imshow(maps[i].detach().cpu().numpy(), cmap="inferno", alpha=0.6)
        ax.set_title("uncertainty map", fontsize=8)
        if boxes is not None:
            _draw_box(ax, boxes[i], "cyan")
    fig.tight_layout()
    return fig


def _image_and_columns(images: Tensor, columns: Mapping[str, Callable[[Any, int], None]], *,
                       boxes: Tensor | None = None, titles: list[str] | None = None,
                       first: str | None = None) -> Figure:
    """One row per image: the image (its true box in green when ``boxes`` are given, its
    title from ``titles``), then one column per entry of ``columns``, drawn by its
    function ``draw(ax, i)`` for image i, with the column's name above the first row;
    ``first`` names the image column."""
    n = images.shape[0]
    cols = 1 + len(columns)
    fig = Figure(figsize=(1.8 * cols, 1.8 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        _show(axes[i, 0], images[i])
        if boxes is not None:
            _draw_box(axes[i, 0], boxes[i], "lime")
        if titles:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for j, (name, draw) in enumerate(columns.items(), start=1):
            draw(axes[i, j], i)
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
    if first:
        axes[0, 0].set_title(first, fontsize=8)
    fig.tight_layout()
    return fig


def _heat(ax: Any, values: Tensor) -> None:
    ax.imshow(values.detach().cpu().numpy(), cmap="inferno")
    ax.set_xticks([])
    ax.set_yticks([])


def detection_grid(
    images: Tensor,
    true_boxes: Tensor,
    results: Mapping[str, tuple[Tensor, Tensor]],
) -> Figure:
    """Laid out like papers/000 Fig. 1: one row per image, one column per method.

    ``results[name] = (maps [B, H, W], found boxes [B, 4])``. The true box is drawn in
    green, the found box in red.
    """
    def column(maps: Tensor, found: Tensor) -> Callable[[Any, int], None]:
        def draw(ax: Any, i: int) -> None:
            _heat(ax, maps[i])
            _draw_box(ax, true_boxes[i], "lime")
            _draw_box(ax, found[i], "red")
        return draw

    columns = {name: column(maps, found) for name, (maps, found) in results.items()}
    return _image_and_columns(images, columns, boxes=true_boxes, first="corrupted image")


def segments_grid(images: Tensor, true_boxes: Tensor, segments: Mapping[str, Tensor]) -> Figure:
    """One row per image, one column per segmenter: each segment in its own colour over
    the image, the true box in green. ``segments[name]``: label maps ``[B, H, W]``."""
    def column(labels: Tensor) -> Callable[[Any, int], None]:
        def draw(ax: Any, i: int) -> None:
            _show_segments(ax, images[i], labels[i])
            _draw_box(ax, true_boxes[i], "lime")
        return draw

    columns = {name: column(labels) for name, labels in segments.items()}
    return _image_and_columns(images, columns, boxes=true_boxes, first="corrupted image")


def maps_grid(images: Tensor, maps: Mapping[str, Tensor], *, titles: list[str] | None = None
              ) -> Figure:
    """One row per image: the image, then each method's map ``[B, H, W]``."""
    columns = {name: (lambda ax, i, m=m: _heat(ax, m[i])) for name, m in maps.items()}
    return _image_and_columns(images, columns, titles=titles)


def image_rows(rows: Mapping[str, Tensor]) -> Figure:
    """One row per entry of ``rows`` (``name -> images [B, C, H, W]``), the same B images
    in every row (images and their reconstructions, say), each row named on its left."""
    n = next(iter(rows.values())).shape[0]
    fig = Figure(figsize=(1.2 * n, 1.3 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for i in range(n):
            _show(axes[r, i], images[i])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def blur_sequences(frames: Tensor, u: Tensor, fractions: Tensor, *, title: str = "") -> Figure:
    """papers/002 Figure 5: one row per image, the image as its top pixels are blurred step
    by step (``frames [B, T, C, H, W]``), the uncertainty under each frame (``u [B, T]``)
    and the share of pixels blurred above each column (``fractions [T]``)."""
    n, steps = frames.shape[:2]
    fig = Figure(figsize=(1.3 * steps, 1.5 * n))
    axes = fig.subplots(n, steps, squeeze=False)
    for i in range(n):
        for t in range(steps):
            ax = axes[i, t]
            _show(ax, frames[i, t])
            ax.set_xlabel(f"U={float(u[i, t]):.3f}", fontsize=7)
            if i == 0:
                ax.set_title(f"{100 * float(fractions[t]):.1f}%", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def urr_curves(curves: Mapping[str, tuple[Tensor, Tensor]], *, title: str = "") -> Figure:
    """Median URR against the share of pixels blurred, one line per method
    (``curves[name] = (fractions [T+1], median URR [T+1])``)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    # the benchmarks plot 11 methods, more than the 10 colours of the default cycle: each
    # round of the colour cycle gets its own line style
    colours = matplotlib.rcParams["axes.prop_cycle"]
    ax.set_prop_cycle(cycler(linestyle=["-", "--", ":", "-."]) * colours)
    for name, (fractions, urr) in curves.items():
        ax.plot(100 * fractions.numpy(), urr.numpy(), label=name, linewidth=1.4)
    ax.set_xlabel("pixels blurred (% of the image, in order of attribution)")
    ax.set_ylabel("median URR (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def feature_bars(mean: Tensor, std: Tensor, names: list[str], *, title: str = "") -> Figure:
    """A bar per feature: the mean attribution magnitude over posterior samples, with
    ± one standard deviation as an error bar (papers/004's tabular figure)."""
    if mean.shape != std.shape or mean.ndim != 1 or len(names) != mean.shape[0]:
        raise ValueError(f"mean and std must be [F] with F = len(names) = {len(names)}, got "
                         f"{tuple(mean.shape)} and {tuple(std.shape)}")
    fig = Figure(figsize=(max(4.0, 0.6 * len(names)), 3.2))
    ax = fig.add_subplot()
    ax.bar(range(len(names)), mean.numpy(), yerr=std.numpy(), capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("|attribution|, mean ± std")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def optimization_trace(
    images: Tensor,
    boxes: Tensor | None,
    segments: Tensor,
    trace: Mapping[str, Tensor],
    *,
    stops: Tensor | None = None,
    shown: int = 4,
) -> Figure:
    """The optimisation of each image over steps: one row per image with the image (true
    box in green), the mask ``p`` at ``shown`` steps, the loss and U of the perturbed
    image, and the blur width.

    ``trace`` holds ``steps [T]``, ``loss``, ``uncertainty``, ``hard_uncertainty``,
    ``sigma [T, B]`` and ``probs [T, B, K]`` (an :class:`OptimizationTrace`'s fields);
    ``segments [B, H, W]`` paint the probabilities; ``stops [B]``, where given, is the
    step at which the stopping rule ended each image (a dotted line).
    """
    steps = trace["steps"].numpy()
    n = images.shape[0]
    picks = np.unique(np.linspace(0, len(steps) - 1, shown).round().astype(int))
    cols = 1 + len(picks) + 2
    fig = Figure(figsize=(1.9 * cols, 1.9 * n))
    axes = fig.subplots(n, cols, squeeze=False,
                        gridspec_kw={"width_ratios": [1] * (1 + len(picks)) + [2, 2]})
    flat = segments.flatten(1).cpu()
    for i in range(n):
        _show(axes[i, 0], images[i])
        if boxes is not None:
            _draw_box(axes[i, 0], boxes[i], "lime")
        for j, t in enumerate(picks, start=1):
            mask = trace["probs"][t, i].gather(0, flat[i]).view(segments.shape[1:])
            ax = axes[i, j]
            ax.imshow(mask.numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"p, step {steps[t]}", fontsize=7)
        curves, width = axes[i, -2], axes[i, -1]
        curves.plot(steps, trace["loss"][:, i].numpy(), label="loss", color="black")
        curves.plot(steps, trace["uncertainty"][:, i].numpy(), label="E[U(x')]",
                    color="tab:blue")
        curves.plot(steps, trace["hard_uncertainty"][:, i].numpy(), label="U(x'), p > 0.5",
                    color="tab:orange", linestyle="--")
        width.plot(steps, trace["sigma"][:, i].numpy(), color="tab:green")
        for ax in (curves, width):
            if stops is not None:
                ax.axvline(float(stops[i]), color="grey", linestyle=":", linewidth=1)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
        curves.set_title("loss and U (nats)", fontsize=7)
        width.set_title("blur width σ (px)", fontsize=7)
        if i == 0:
            curves.legend(fontsize=6)
        if i == n - 1:
            curves.set_xlabel("Adam step", fontsize=7)
            width.set_xlabel("Adam step", fontsize=7)
    axes[0, 0].set_title("image", fontsize=7)
    fig.tight_layout()
    return fig
