"""Segments from mask generators: SAM's automatic masks as a partition of the image.

SAM's automatic mask generator returns, per image, a list of dicts each holding a
boolean ``segmentation [H, W]`` and its ``area``; the masks may overlap and need not cover
the image. A method over segments needs a partition (DESIGN §2), so :func:`from_masks`
paints the masks from the largest to the smallest, each over the ones before it, so that
a small mask inside a large one stays visible, and gives the pixels no mask covers one
segment of their own.

``segment_anything`` needs torchvision and a checkpoint, neither of which uattr installs:
:func:`sam` imports it only when called (``pip install 'uattr[sam]'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..uq import check_images

__all__ = ["MaskSegmenter", "from_masks", "sam"]


def from_masks(masks: Sequence[Mapping[str, Any]], height: int, width: int) -> Tensor:
    """The partition ``[height, width]`` (int64 labels ``0..K-1``) of overlapping masks.

    ``masks``: dicts with a boolean ``segmentation`` of shape ``[height, width]`` and,
    optionally, its ``area`` (default: the mask's pixel count). Larger masks are painted
    first (ties keep the list's order), smaller ones over them; a mask painted over
    entirely leaves no label; the pixels of no mask form one more segment. Labels are
    numbered in the order of each segment's first pixel in row-major order.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} and {width}")
    canvas = np.full((height, width), -1, dtype=np.int64)
    areas = []
    for i, mask in enumerate(masks):
        if not isinstance(mask, Mapping) or "segmentation" not in mask:
            raise ValueError(f"masks[{i}] must be a dict with a boolean 'segmentation' array, "
                             f"got {type(mask).__name__}")
        seg = np.asarray(mask["segmentation"])
        if seg.shape != (height, width):
            raise ValueError(f"masks[{i}]['segmentation'] must have shape [{height}, {width}], "
                             f"got {list(seg.shape)}")
        areas.append(float(mask.get("area", seg.astype(bool).sum())))
    order = sorted(range(len(areas)), key=lambda i: -areas[i])  # stable: ties keep order
    for i in order:
        canvas[np.asarray(masks[i]["segmentation"]).astype(bool)] = i
    # canvas holds -1 (no mask) or a mask index; renumber by first appearance
    _, first, inverse = np.unique(canvas.reshape(-1), return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # label of each distinct value: order of first pixel
    return torch.from_numpy(rank[inverse].reshape(height, width).astype(np.int64))


class MaskSegmenter:
    """A segmenter ``x [B, C, H, W] -> [B, H, W]`` from any mask generator with SAM's
    interface: ``generate(image uint8 [H, W, 3]) -> list of mask dicts``.

    The generator takes one image at a time, so this loops over the batch (SAM's own
    batching is per image, over its point prompts)."""

    def __init__(self, generator: Any) -> None:
        if not callable(getattr(generator, "generate", None)):
            raise ValueError("generator must have a method generate(image) returning a list of "
                             f"mask dicts, got {type(generator).__name__}")
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        check_images(x)
        batch, channels, height, width = x.shape
        if channels not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels for a mask generator, got {channels}")
        rgb = (x.detach().expand(batch, 3, height, width) * 255).round().to(torch.uint8)
        pictures = rgb.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3], what SAM reads
        labels = [from_masks(self.generator.generate(picture), height, width)
                  for picture in pictures]
        return torch.stack(labels).to(x.device)  # [B, H, W]


def sam(checkpoint: str | os.PathLike, model_type: str = "vit_h", *,
        device: torch.device | str = "cpu", **generator_settings: Any) -> MaskSegmenter:
    """SAM's automatic mask generator as a segmenter (papers/000's segments).

    ``checkpoint``: the weights file of ``model_type`` (``vit_h``, ``vit_l`` or ``vit_b``)
    that the user downloaded; ``generator_settings`` go to
    ``segment_anything.SamAutomaticMaskGenerator`` (``points_per_side``,
    ``pred_iou_thresh``, …)."""
    try:
        import segment_anything
    except ImportError as error:
        raise ImportError(
            "the SAM segmenter needs the segment-anything package (and torchvision): install "
            "the extra with `pip install 'uattr[sam]'`, and supply a checkpoint such as "
            "sam_vit_h_4b8939.pth from the segment-anything repository") from error
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist: pass the SAM weights "
                                f"file of model type {model_type!r}")
    if model_type not in segment_anything.sam_model_registry:
        raise ValueError(f"model_type must be one of "
                         f"{sorted(segment_anything.sam_model_registry)}, got {model_type!r}")
    model = segment_anything.sam_model_registry[model_type](checkpoint=str(checkpoint))
    model.to(device)
    return MaskSegmenter(segment_anything.SamAutomaticMaskGenerator(model, **generator_settings))
