"""Segmenters: images ``[B, C, H, W]`` -> label maps ``[B, H, W]``, labels 0..K_b-1.

SAM's masks (:func:`sam`, :func:`from_masks`) live in :mod:`uattr.ops.masks`.

A label map is a partition of the image: every pixel carries exactly one segment
label, and the labels of image b are exactly ``0..K_b-1``. The meaning is Captum's
``feature_mask``. scikit-image segments one image at a time, so the scikit-image
segmenters loop over the batch; everything downstream of them is batched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..uq import check_images
from .checks import check_positive_ints, check_real
from .masks import MaskSegmenter, from_masks, sam

__all__ = [
    "SEGMENTERS",
    "CorruptionSegmenter",
    "MaskSegmenter",
    "box_mask",
    "check_segments",
    "felzenszwalb",
    "from_masks",
    "get_segmenter",
    "grid",
    "num_segments",
    "pixels",
    "quickshift",
    "relabel",
    "sam",
    "segment_means",
    "segment_slots",
    "slic",
    "texture",
    "top_region",
    "with_boxes",
    "with_region",
]


def check_segments(segments: Tensor, x: Tensor, name: str = "segments") -> Tensor:
    """Validate a label map for images ``x`` and return it as ``[B, H, W]`` int64,
    relabelled so that image b uses exactly the labels ``0..K_b-1``.

    ``[H, W]`` is broadcast to the batch. Raises ``ValueError`` when the map is not an
    integer tensor of the images' size, or has negative labels (pixels outside every
    segment).
    """
    batch, _, height, width = x.shape
    if not isinstance(segments, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, H, W], got {type(segments).__name__}")
    if segments.is_floating_point() or segments.is_complex() or segments.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer label map, got dtype {segments.dtype}")
    if segments.ndim == 2:
        segments = segments.expand(batch, height, width)
    if segments.ndim != 3 or tuple(segments.shape) != (batch, height, width):
        raise ValueError(
            f"{name} must have shape [B, H, W] = [{batch}, {height}, {width}] or [H, W], "
            f"got {tuple(segments.shape)}"
        )
    if (segments < 0).any():
        raise ValueError(
            f"{name} has negative labels: every pixel must belong to a segment (labels >= 0)"
        )
    return relabel(segments.to(device=x.device, dtype=torch.long))


def relabel(segments: Tensor) -> Tensor:
    """Map the labels of each image to ``0..K_b-1`` in increasing order (batched).

    By sorting each image's labels, so that the work and memory depend on H·W alone, not
    on how large the labels are (a file may number its segments up to 2^63)."""
    batch = segments.shape[0]
    flat = segments.reshape(batch, -1)  # [B, H·W]
    ordered, order = flat.sort(1)  # [B, H·W]
    starts = torch.zeros_like(ordered)
    starts[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).long()  # 1 where a new label begins
    ranks = starts.cumsum(1)  # [B, H·W]: new label of each sorted pixel
    return torch.empty_like(flat).scatter_(1, order, ranks).view_as(segments)


def num_segments(segments: Tensor) -> Tensor:
    """``K_b`` for each image of a relabelled map ``[B, H, W]`` -> ``[B]``."""
    return segments.flatten(1).max(1).values + 1


def segment_sums(values: Tensor, segments: Tensor) -> Tensor:
    """``[B, K_max]``: ``values [B, H, W]`` summed over each segment of a relabelled map
    ``[B, H, W]`` (0 in the slots past ``K_b``, as :func:`segment_slots` pads them)."""
    flat = segments.flatten(1)  # [B, H·W]
    sums = torch.zeros(len(flat), int(num_segments(segments).max()), dtype=values.dtype,
                       device=values.device)
    return sums.scatter_add_(1, flat, values.flatten(1))


def segment_means(values: Tensor, segments: Tensor) -> Tensor:
    """``[B, K_max]``: the mean of ``values [B, H, W]`` over each segment of a relabelled map
    ``[B, H, W]`` (0 in the slots past ``K_b``)."""
    sizes = segment_sums(torch.ones_like(values), segments).clamp_min(1)  # [B, K]
    return segment_sums(values, segments) / sizes


def segment_slots(segments: Tensor) -> tuple[Tensor, Tensor]:
    """``(K_b [B], valid [B, K_max])`` of a relabelled map: per-segment tensors are padded
    to ``K_max = max_b K_b`` slots, and ``valid`` marks the slots image b really has."""
    counts = num_segments(segments)  # [B]
    slots = torch.arange(int(counts.max()), device=segments.device)
    return counts, slots[None, :] < counts[:, None]


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """``[B, H, W]`` bool: True inside each image's box ``(top, left, height, width)``."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    top, left, box_h, box_w = boxes.unbind(1)  # each [B]
    return (((rows >= top[:, None]) & (rows < (top + box_h)[:, None]))[:, :, None]
            & ((cols >= left[:, None]) & (cols < (left + box_w)[:, None]))[:, None, :])


def with_boxes(segments: Tensor, boxes: Tensor) -> Tensor:
    """``segments [B, H, W]`` with each image's box ``(top, left, height, width)`` made a
    segment of its own (label ``K_b``), relabelled to ``0..K'_b-1``.

    The *oracle* of the detection benchmark: a segmentation that isolates the true
    problematic patch, which no real segmenter knows. It bounds from above what a method
    over segments can find, and is never a method itself."""
    if segments.ndim != 3 or boxes.shape != (segments.shape[0], 4):
        raise ValueError(f"boxes must have shape [B, 4] = [{segments.shape[0]}, 4] for "
                         f"segments {tuple(segments.shape)}, got {tuple(boxes.shape)}")
    inside = box_mask(boxes.to(segments.device), *segments.shape[1:])  # [B, H, W]
    new_label = segments.flatten(1).max(1).values + 1  # [B]
    return relabel(torch.where(inside, new_label[:, None, None], segments))


def pixels(x: Tensor) -> Tensor:
    """One segment per pixel: label ``i·W + j`` at pixel (i, j)."""
    batch, _, height, width = x.shape
    labels = torch.arange(height * width, device=x.device).view(height, width)
    return labels.expand(batch, height, width).clone()


def grid(x: Tensor, cell: int = 4) -> Tensor:
    """Square cells of ``cell × cell`` pixels (the last row/column may be smaller)."""
    check_positive_ints(cell=cell)
    batch, _, height, width = x.shape
    rows = torch.arange(height, device=x.device) // cell
    cols = torch.arange(width, device=x.device) // cell
    labels = rows[:, None] * ((width + cell - 1) // cell) + cols[None, :]
    return labels.expand(batch, height, width).clone()


# Below this side no segmenter's neighbourhood (a 3×3 window and its centre's
# neighbours) fits the image.
MIN_SIDE = 4


def _check_count(n_segments: int, x: Tensor | None = None, name: str = "n_segments") -> None:
    """``n_segments`` must be an integer in [1, H·W] (``x``'s pixels; any size when ``x``
    is ``None``): no partition has more segments than pixels."""
    pixels = x.shape[-2] * x.shape[-1] if x is not None else float("inf")
    if isinstance(n_segments, bool) or not isinstance(n_segments, int | np.integer) \
            or not 1 <= n_segments <= pixels:
        raise ValueError(f"{name} must be an integer in [1, H·W = {pixels}], "
                         f"got {n_segments!r}")


def _per_image(x: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Run a scikit-image segmenter on each ``[H, W, C]`` image and relabel."""
    check_images(x, unit_range=False)
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"x must be at least {MIN_SIDE}×{MIN_SIDE} pixels for this "
                         f"segmenter, got {tuple(x.shape[-2:])}")
    images = x.detach().cpu().permute(0, 2, 3, 1).double().numpy()  # [B, H, W, C]
    labels = np.stack([fn(image) for image in images])  # [B, H, W]
    return relabel(torch.from_numpy(labels.astype(np.int64))).to(x.device)


def slic(x: Tensor, n_segments: int = 60, compactness: float = 0.3, sigma: float = 0.5) -> Tensor:
    """SLIC superpixels (scikit-image). ``compactness`` is on the [0, 1] intensity scale.

    Colour images are clustered in CIELAB divided by 100, so that lightness is on the same
    [0, 1] scale as a grey image's intensity and one ``compactness`` means the same on
    both (scikit-image's own conversion leaves L* in [0, 100], where 0.3 is no compactness
    at all: a bright square on a dark background became 2 segments). Compactness is
    relative to the grid step, and ``sigma`` (the pre-smoothing, in pixels) is fixed, so
    the defaults hold at every size.

    The count is within [n/2, 3n/2] of ``n_segments`` on greyscale and colour images of
    16-224 px, for any value range within [0, 1], as long as a segment can hold 4
    pixels (``n_segments <= H·W/4``; tested on crops of :data:`uattr.zoo.photo_mnist.PHOTOS`).
    The defaults give about 46 segments on a 28×28 MNIST digit, and were chosen for the
    optimization-based method on MNIST's validation split; on photo-mnist's (colour
    photographs under digits), compactness 0.1 was chosen instead (docs/hyperparameters.md).
    """
    from skimage.color import rgb2lab
    from skimage.segmentation import slic as _slic

    check_images(x, unit_range=False)
    _check_count(n_segments, x)
    check_real("compactness", compactness, above=0)
    check_real("sigma", sigma, at_least=0)

    def one(image: np.ndarray) -> np.ndarray:
        if image.shape[-1] == 1:
            return _slic(image[..., 0], n_segments=n_segments, compactness=compactness,
                         sigma=sigma, start_label=0, channel_axis=None)
        if image.shape[-1] == 3:
            image = rgb2lab(image) / 100.0  # [H, W, 3]: L* in [0, 1], a*, b* within ±1.3
        return _slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma,
                     start_label=0, channel_axis=-1, convert2lab=False)

    return _per_image(x, one)


# The side at which the size-dependent settings below are given: MNIST's.
REFERENCE_SIDE = 28


def _scale(x: Tensor) -> float:
    """How much larger than the reference 28 px the images' shorter side is (1 on smaller
    images: the 28 px settings already fit them)."""
    return max(1.0, min(x.shape[-2:]) / REFERENCE_SIDE)


def quickshift(
    x: Tensor, kernel_size: float = 1, max_dist: float = 5, ratio: float = 0.2
) -> Tensor:
    """Quickshift (scikit-image), the segmenter LIME uses. Grey images are repeated to RGB.

    ``kernel_size`` and ``max_dist`` are in pixels of a 28 px image and scale with the
    image's shorter side, so that a segment covers the same share of the image at every
    size: the defaults give 3-28 segments on crops of colour photographs, their grey
    versions and dimmed copies at 28-224 px (unscaled, 600-800 at 224 px). The defaults
    (1, 5, 0.2) are those of the uncertainty-attribution implementation whose LIME
    papers/001 A.2 runs on its small images; they give about 14 segments on an MNIST
    digit (9-23 on the validation split's detection images,
    tuning/lime_segments.py). The ``lime`` package's ImageNet defaults (4,
    200, 0.2) merge a 28×28 digit into one or two segments."""
    from skimage.segmentation import quickshift as _quickshift

    check_real("kernel_size", kernel_size, above=0)
    check_real("max_dist", max_dist, above=0)
    check_real("ratio", ratio, at_least=0, at_most=1)
    scale = _scale(x)

    def one(image: np.ndarray) -> np.ndarray:
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        return _quickshift(rgb, kernel_size=kernel_size * scale, max_dist=max_dist * scale,
                           ratio=ratio, convert2lab=True, rng=0)

    return _per_image(x, one)


def felzenszwalb(x: Tensor, scale: float = 1.0, sigma: float = 0.5, min_size: int = 5) -> Tensor:
    """Felzenszwalb's graph segmentation (scikit-image).

    ``min_size`` is in pixels of a 28×28 image and scales with the image's area, so that
    the smallest segment is the same share of the image at every size; ``scale`` and
    ``sigma`` act on neighbouring pixels' differences and are fixed. The defaults give
    19-75 segments on crops of colour photographs, their grey versions and dimmed copies
    at 28-224 px (with ``min_size`` fixed: 2 000-4 000 at 224 px)."""
    from skimage.segmentation import felzenszwalb as _felzenszwalb

    check_real("scale", scale, above=0)
    check_real("sigma", sigma, at_least=0)
    check_positive_ints(min_size=min_size)
    smallest = max(1, round(min_size * _scale(x) ** 2))

    def one(image: np.ndarray) -> np.ndarray:
        gray = image.shape[-1] == 1
        return _felzenszwalb(image[..., 0] if gray else image, scale=scale, sigma=sigma,
                             min_size=smallest, channel_axis=None if gray else -1)

    return _per_image(x, one)


def texture(x: Tensor, n_segments: int = 12, sigma: float = 1.5,
            compactness: float = 0.05) -> Tensor:
    """SLIC on local statistics instead of intensities: segments whose *texture* differs.

    Each pixel is described by its neighbourhood's mean and standard deviation (Gaussian
    window of width ``sigma`` px at 28 px, scaled with the image's shorter side, per
    channel), each scaled to [0, 1] per image, and slic groups pixels that are close in
    that space. A region pasted from elsewhere keeps its statistics up to its edges, so
    its border becomes a segment border even where the mean intensity is the same on both
    sides (plain slic cuts a flat patch in a noisy background of the same mean into the
    background's speckles). The defaults give a 10×10 flat or smooth square in 28×28
    uniform noise a segment of IoU about 0.7 with it (slic's best: 0.2). The statistics are
    scaled per image, so the value range does not matter; the count is within
    [n/4, 3n/2] of ``n_segments`` (its low compactness lets segments follow texture, and
    slic merges the fragments that leaves)."""
    check_images(x, unit_range=False)
    _check_count(n_segments, x)
    check_real("sigma", sigma, above=0)  # 0: no neighbourhood, so no texture to compare
    check_real("compactness", compactness, above=0)
    from skimage.segmentation import slic as _slic

    from .perturb import gaussian_blur

    width = sigma * _scale(x)
    mean = gaussian_blur(x, width)  # [B, C, H, W]
    spread = (gaussian_blur(x * x, width) - mean * mean).clamp_min(0).sqrt()
    features = torch.cat([mean, spread], 1)  # [B, 2C, H, W]
    low = features.amin((2, 3), keepdim=True)
    high = features.amax((2, 3), keepdim=True)
    features = (features - low) / (high - low).clamp_min(1e-8)

    def one(image: np.ndarray) -> np.ndarray:
        return _slic(image, n_segments=n_segments, compactness=compactness, sigma=0,
                     start_label=0, channel_axis=-1)

    return _per_image(features, one)


def top_region(scores: Tensor, relative: float = 0.3) -> Tensor:
    """``[B, H, W]`` bool: in each score map ``[B, H, W]``, the connected region (4-
    neighbours) of pixels above ``relative · max`` that holds the largest total score.

    An image whose maximum is <= 0 gets an empty region."""
    if not 0 < relative < 1:
        raise ValueError(f"relative must be in (0, 1), got {relative}")
    from scipy import ndimage

    peak = scores.flatten(1).amax(1)  # [B]
    above = (scores > relative * peak[:, None, None]) & (peak > 0)[:, None, None]
    # One labelling of the whole batch: the structure links pixels within an image only.
    within_image = np.zeros((3, 3, 3), dtype=bool)
    within_image[1] = ndimage.generate_binary_structure(2, 1)
    labels, count = ndimage.label(above.cpu().numpy(), structure=within_image)
    if count == 0:
        return above
    labels = torch.from_numpy(labels).to(scores.device)  # [B, H, W], 0 = below
    index = torch.arange(1, count + 1)
    totals = torch.from_numpy(ndimage.sum_labels(scores.detach().cpu().double().numpy(),
                                                 labels.cpu().numpy(), index)).to(scores.device)
    image_of = torch.from_numpy(ndimage.maximum(
        np.broadcast_to(np.arange(len(scores))[:, None, None], scores.shape),
        labels.cpu().numpy(), index)).long().to(scores.device)  # [count]
    best = torch.full((len(scores),), -float("inf"), dtype=totals.dtype, device=scores.device)
    best = best.scatter_reduce(0, image_of, totals, "amax")
    chosen = torch.cat([torch.zeros(1, dtype=torch.bool, device=scores.device),
                        totals == best[image_of]])  # [count + 1], label 0 never
    return chosen[labels]


def with_region(segments: Tensor, region: Tensor) -> Tensor:
    """``segments [B, H, W]`` with each image's ``region [B, H, W]`` (bool) made a segment of
    its own, on top of the segments it cuts; relabelled to ``0..K'_b-1``."""
    new_label = segments.flatten(1).max(1).values + 1  # [B]
    return relabel(torch.where(region, new_label[:, None, None], segments))


class CorruptionSegmenter:
    """Segments that isolate the region where an image looks tampered with.

    A :class:`~uattr.zoo.corruption.CorruptionNet` scores every pixel (the probability
    that it lies in a pasted or erased region, one pass of a small network, no posterior
    pass); the connected region above ``relative`` times the image's highest score with
    the most total score becomes one segment, laid on top of coarse slic superpixels
    (``n_segments``, ``compactness``) that cover the rest. The uncertainty attribution
    then decides whether that region is what makes the model unsure.

    The defaults were chosen on MNIST's validation split (N = 100) for the
    optimization-based method: the region above 0.3 · max on 20 slic segments beat it on
    the 60 segments of :func:`slic`, and thresholds 0.4-0.6 isolated the patch less well.
    Colour images take a network trained on colour (its input channels are the data
    set's). The network's receptive field (35 px) and the shapes it is trained on (2.5-9
    px across) are fixed in pixels, made for the 10 px patches of 28-64 px images; on
    larger images the slic superpixels scale, the detector does not.
    """

    def __init__(self, net: torch.nn.Module, n_segments: int = 20, compactness: float = 0.3,
                 relative: float = 0.3) -> None:
        _check_count(n_segments)
        check_real("compactness", compactness, above=0)
        check_real("relative", relative, above=0, below=1)
        self.net = net.eval()
        self.n_segments = n_segments
        self.compactness = compactness
        self.relative = relative

    def scores(self, x: Tensor) -> Tensor:
        """``[B, H, W]``: the probability that each pixel was tampered with."""
        check_images(x, unit_range=False)
        parameter = next(self.net.parameters(), None)  # a net without weights runs on x's
        device = parameter.device if parameter is not None else x.device
        try:
            with torch.no_grad():
                return torch.sigmoid(self.net(x.detach().to(device)))[:, 0].to(x.device)
        except RuntimeError as error:  # torch's message names weights, not the argument
            raise ValueError(f"x: the corruption detector cannot take images of shape "
                             f"[C, H, W] = {list(x.shape[1:])}: it was trained on images of "
                             "its data set's channel count (a colour detector for colour "
                             f"images). The network said: {str(error).splitlines()[0]}"
                             ) from error

    def __call__(self, x: Tensor) -> Tensor:
        base = slic(x, n_segments=self.n_segments, compactness=self.compactness)
        return with_region(base, top_region(self.scores(x), self.relative))

    def config(self) -> dict:
        """What the segments depend on besides the network's weights."""
        return {"n_segments": self.n_segments, "compactness": self.compactness,
                "relative": self.relative}


SEGMENTERS: dict[str, Callable[..., Tensor]] = {
    "pixels": pixels,
    "grid": grid,
    "slic": slic,
    "quickshift": quickshift,
    "felzenszwalb": felzenszwalb,
    "texture": texture,
}


def get_segmenter(name: str) -> Callable[..., Tensor]:
    """The segmenter called ``name`` (one of :data:`SEGMENTERS`)."""
    if name not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {tuple(SEGMENTERS)}, got {name!r}")
    return SEGMENTERS[name]
