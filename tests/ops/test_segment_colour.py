"""Segmenters on colour images and at several sizes: the count they promise, and a pasted
square that they must cover with little spill."""

import numpy as np
import pytest
import torch
from skimage.segmentation import slic as skimage_slic

from uattr import segment
from uattr.zoo.photo_mnist import random_crops


def _photo_crops(size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` random ``size``-px crops of the shipped colour photographs, ``[n, 3, H, W]``."""
    return torch.from_numpy(random_crops(size, n, seed))


def _versions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The colour crops, their grey versions and a dim copy (values in [0, 0.2])."""
    return {"colour": x, "grey": x.mean(1, keepdim=True), "dim": 0.2 * x}


# (segmenter, its settings, the range its count must stay in). slic's and texture's
# ranges follow from n_segments (docstrings: [n/2, 3n/2] and [n/4, 3n/2]); quickshift and
# felzenszwalb take no count, and their size-scaled settings keep it in a fixed range.
_COUNTS = [
    ("slic", {"n_segments": 30}, (15, 45)),
    ("slic", {"n_segments": 60}, (30, 90)),
    ("texture", {"n_segments": 12}, (3, 18)),
    ("quickshift", {}, (2, 32)),
    ("felzenszwalb", {}, (12, 90)),
]


@pytest.mark.parametrize("size", [32, 96, 224])
@pytest.mark.parametrize(("name", "settings", "bounds"), _COUNTS,
                         ids=[f"{n}-{s}" for n, s, _ in _COUNTS])
def test_segment_counts_hold_on_colour_grey_and_dim_images_at_every_size(
        name, settings, bounds, size):
    x = _photo_crops(size, 2 if size == 224 else 6, seed=size)
    make = segment.get_segmenter(name)
    for version, images in _versions(x).items():
        counts = segment.num_segments(make(images, **settings)).tolist()
        assert all(bounds[0] <= k <= bounds[1] for k in counts), (version, counts)


def _pasted_squares(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour crops with one square (30% of the side) of flat colour (even images) or of
    another photograph's texture (odd ones) pasted in: ``(images, squares [B, H, W])``."""
    rng = np.random.default_rng(size)
    n = 4
    x = _photo_crops(size, n, seed=size + 1)
    donors = _photo_crops(round(0.3 * size), n, seed=size + 2)
    squares = torch.zeros(n, size, size, dtype=torch.bool)
    side = donors.shape[-1]
    for b in range(n):
        top, left = (int(v) for v in rng.integers(size - side, size=2))
        if b % 2 == 0:
            x[b, :, top:top + side, left:left + side] = torch.from_numpy(
                rng.random(3)).float()[:, None, None]
        else:
            x[b, :, top:top + side, left:left + side] = donors[b]
        squares[b, top:top + side, left:left + side] = True
    return x, squares


def _covering_iou(labels: torch.Tensor, region: torch.Tensor) -> float:
    """IoU of ``region`` with the union of the segments that lie mostly inside it: 1 when
    segments cover the region exactly, lower for every pixel spilled or missed."""
    inside = torch.zeros_like(region)
    for k in labels.unique():
        segment_k = labels == k
        if region[segment_k].float().mean() > 0.5:
            inside |= segment_k
    return float((inside & region).sum() / (inside | region).sum())


def _best_iou(labels: torch.Tensor, region: torch.Tensor) -> float:
    return max(float(((labels == k) & region).sum() / ((labels == k) | region).sum())
               for k in labels.unique())


# Covering IoU 0.8 for slic and felzenszwalb: the square's segments may spill or miss a
# fifth of its area (a one-pixel error along the border of a 10 px square is already 0.36
# of it). quickshift makes LIME's coarse 4-20 segments of a whole image, and at 224 px
# merges a textured square with a background of like colour: asked for 0.5, the detection
# benchmark's own bar for a found box. Measured means: 0.91-1.0 (slic, felzenszwalb),
# 0.64-0.88 (quickshift).
@pytest.mark.parametrize("size", [32, 96, 224])
@pytest.mark.parametrize(("name", "bar"), [("slic", 0.8), ("felzenszwalb", 0.8),
                                           ("quickshift", 0.5)])
def test_segmenters_cover_a_pasted_square_on_colour_images(name, bar, size):
    x, squares = _pasted_squares(size)
    labels = segment.get_segmenter(name)(x)
    ious = [_covering_iou(labels[b], squares[b]) for b in range(len(x))]
    assert np.mean(ious) > bar, ious


# texture makes 12 segments of a whole image from its local statistics, so it is asked
# for one segment that is the square. On photographs, whose own texture changes
# everywhere, its best segment reaches a mean IoU of 0.55 (32 px) and 0.47 (96 px):
# the bar is 0.4, far above chance (a 12th of the image against a square of 9%: ~0.3 at
# best, when they overlap entirely).
@pytest.mark.parametrize("size", [32, 96])
def test_texture_gives_a_pasted_square_a_segment_of_its_own(size):
    x, squares = _pasted_squares(size)
    labels = segment.texture(x)
    ious = [_best_iou(labels[b], squares[b]) for b in range(len(x))]
    assert np.mean(ious) > 0.4, ious


@pytest.mark.parametrize("size", [28, 96])
def test_slic_isolates_a_bright_square_on_a_dark_colour_image(size):
    # the case where scikit-image's own CIELAB scale made 1-2 segments of the whole image:
    # a dark background and a bright square, each with a little noise
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(1, 3, size, size, generator=g)
    side, top = size * 10 // 28, size * 5 // 28
    x[:, :, top:top + side, top:top + side] += 0.8
    square = torch.zeros(size, size, dtype=torch.bool)
    square[top:top + side, top:top + side] = True
    labels = segment.slic(x, n_segments=30)
    assert 15 <= segment.num_segments(labels).item() <= 45
    assert _covering_iou(labels[0], square) > 0.9
    # the same settings on scikit-image's own colour scale: the square is not separated
    # from the background by segment count (2 segments, the bug this guards against)
    plain = skimage_slic(x[0].permute(1, 2, 0).double().numpy(), n_segments=30,
                         compactness=0.3, sigma=0.5, start_label=0, channel_axis=-1)
    assert len(np.unique(plain)) <= 3


def test_segmenters_refuse_bad_counts_and_images_too_small():
    x = torch.rand(1, 3, 20, 20)
    for bad in (0, -3, 2.5, 401):
        with pytest.raises(ValueError, match="n_segments must be an integer in"):
            segment.slic(x, n_segments=bad)
        with pytest.raises(ValueError, match="n_segments must be an integer in"):
            segment.texture(x, n_segments=bad)
    with pytest.raises(ValueError, match="x must be at least 4×4 pixels"):
        segment.quickshift(torch.rand(1, 3, 3, 30))
    with pytest.raises(ValueError, match="n_segments must be an integer in"):
        segment.CorruptionSegmenter(torch.nn.Conv2d(3, 1, 1), n_segments=0)


class _BrightMean(torch.nn.Module):
    """A stand-in for the colour corruption detector: logit +40·(mean over channels − 0.5),
    so its most suspicious region is the brightest one."""

    def forward(self, x):
        return 40.0 * (x.mean(1, keepdim=True) - 0.5)


@pytest.mark.parametrize("size", [32, 96])
def test_learned_segmenter_on_colour_lays_its_region_on_colour_slic(size):
    g = torch.Generator().manual_seed(size)
    x = 0.3 * torch.rand(2, 3, size, size, generator=g)  # dim colour noise
    side, top = size // 4, size // 3
    x[:, :, top:top + side, top:top + side] += 0.6  # one bright square
    square = torch.zeros(size, size, dtype=torch.bool)
    square[top:top + side, top:top + side] = True
    labels = segment.CorruptionSegmenter(_BrightMean(), n_segments=20)(x)
    for b in range(2):
        # the region is one segment, cut out of slic's 20 (within [n/2, 3n/2]), + 1
        assert 10 <= segment.num_segments(labels[b : b + 1]).item() <= 31
        assert _best_iou(labels[b], square) > 0.9
