"""The tampering that the corruption detectors learn to find, made on the fly.

Two families, each inside a random curved shape (never the benchmark's squares):

- ``paste``: the shape filled with the same region of another image, or erased to the
  background. This is the detection benchmark's own mechanism (:func:`uattr.zoo.data.
  patch_swap` pastes the same square of another image) in other outlines, so a detector
  trained on it has been taught the benchmark's corruption: its rows are labelled so.
- ``retouch``: the image's own content changed in place, never content of another image:
  a brightness or colour shift, added noise, a local blur, sharpening, or synthetic strokes
  drawn across the shape. Disjoint from patch swap by construction.

The rotated-patch corruption (:func:`uattr.zoo.data.patch_rotate`) is in neither family:
it tests both detectors on a corruption they never saw.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..ops.perturb import gaussian_blur

__all__ = ["FAMILIES", "RETOUCHES", "paste", "random_shapes", "retouch", "tamper"]

# Below this change a retouched pixel counts as untouched (a blur of empty background
# changes nothing there; the mask says where the image really changed).
CHANGED = 0.05

# The retouches, in the order their index is drawn.
RETOUCHES = ("shift", "noise", "blur", "sharpen", "strokes")


def random_shapes(n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """``n`` random masks ``[n, 1, H, W]`` (float 0/1): half ellipses with half-axes of
    2.5-8.5 px at a random angle, half blobs of Gaussian noise smoothed at σ = 3 px and
    thresholded, cut to a disc of radius 9 px around a random point."""
    rows = torch.arange(height, dtype=torch.float32)[None, :, None]
    cols = torch.arange(width, dtype=torch.float32)[None, None, :]
    centre_y = torch.rand(n, generator=generator)[:, None, None] * height
    centre_x = torch.rand(n, generator=generator)[:, None, None] * width
    axis_a = 2.5 + 6 * torch.rand(n, generator=generator)[:, None, None]
    axis_b = 2.5 + 6 * torch.rand(n, generator=generator)[:, None, None]
    angle = math.pi * torch.rand(n, generator=generator)[:, None, None]
    dy, dx = rows - centre_y, cols - centre_x  # [n, H, W]
    along = (dx * angle.cos() + dy * angle.sin()) / axis_a
    across = (-dx * angle.sin() + dy * angle.cos()) / axis_b
    ellipse = along**2 + across**2 <= 1
    noise = torch.randn(n, 1, height, width, generator=generator)
    smooth = gaussian_blur(noise, 3.0, radius=7)[:, 0]
    smooth = smooth / smooth.flatten(1).std(1)[:, None, None]
    level = 0.8 + 0.8 * torch.rand(n, generator=generator)[:, None, None]
    blob = (smooth > level) & ((dx / 9) ** 2 + (dy / 9) ** 2 <= 1)
    pick = torch.rand(n, generator=generator)[:, None, None] < 0.5
    return torch.where(pick, ellipse, blob).float()[:, None]


def _untouched(mask: Tensor, clean: float, generator: torch.Generator) -> Tensor:
    """``mask`` with a share ``clean`` of the images emptied (left untouched)."""
    untouched = torch.rand(len(mask), generator=generator)[:, None, None, None] < clean
    return torch.where(untouched, torch.zeros_like(mask), mask)


def paste(images: Tensor, donors: Tensor, generator: torch.Generator, *,
          erase: float = 0.3, clean: float = 0.2) -> tuple[Tensor, Tensor]:
    """``(tampered [B, C, H, W], mask [B, 1, H, W])``: a random shape of each image filled
    with a random donor's pixels at the same place, or with zeros (share ``erase``); a
    share ``clean`` of the images is left untouched with an empty mask, so that the
    network learns to find nothing where nothing was done."""
    batch, _, height, width = images.shape
    mask = random_shapes(batch, height, width, generator)
    donor = donors[torch.randint(0, len(donors), (batch,), generator=generator)]
    erased = torch.rand(batch, generator=generator)[:, None, None, None] < erase
    donor = torch.where(erased, torch.zeros_like(donor), donor)
    mask = _untouched(mask, clean, generator)
    return images * (1 - mask) + donor * mask, mask


def _chords(shape: Tensor, generator: torch.Generator, count: int = 2,
            half_width: float = 0.8) -> Tensor:
    """``[B, 1, H, W]``: ``count`` straight strokes through each shape's centroid at random
    angles, ``2 · half_width`` px wide, cut to the shape."""
    batch, _, height, width = shape.shape
    rows = torch.arange(height, dtype=shape.dtype)[None, :, None]
    cols = torch.arange(width, dtype=shape.dtype)[None, None, :]
    area = shape[:, 0].sum((1, 2)).clamp_min(1)
    centre_y = ((shape[:, 0] * rows).sum((1, 2)) / area)[:, None, None]
    centre_x = ((shape[:, 0] * cols).sum((1, 2)) / area)[:, None, None]
    strokes = torch.zeros(batch, height, width, dtype=torch.bool)
    for _ in range(count):  # two strokes: a loop of two, not over images
        angle = math.pi * torch.rand(batch, generator=generator)[:, None, None]
        offset = (rows - centre_y) * angle.cos() - (cols - centre_x) * angle.sin()
        strokes |= offset.abs() <= half_width
    return (strokes[:, None] & (shape > 0)).to(shape.dtype)


def retouch(images: Tensor, generator: torch.Generator, *,
            clean: float = 0.2) -> tuple[Tensor, Tensor]:
    """``(tampered [B, C, H, W], mask [B, 1, H, W])``: inside a random shape of each image,
    one of :data:`RETOUCHES` (drawn uniformly) applied to the image's own pixels:

    - ``shift``: + s per channel, |s| in [0.3, 0.7] with a random sign per channel;
    - ``noise``: + σ·N(0, 1), σ in [0.2, 0.5];
    - ``blur``: a Gaussian blur of σ = 2 px;
    - ``sharpen``: x + a·(x − blur_1px(x)), a in [1.5, 3];
    - ``strokes``: two straight strokes 1.6 px wide through the shape, of brightness in
      [0.6, 1] per channel;

    clipped to [0, 1]. The mask is where the image changed by more than :data:`CHANGED`
    (a blur of empty background changes nothing); a share ``clean`` is left untouched."""
    batch, channels, height, width = images.shape
    shape = _untouched(random_shapes(batch, height, width, generator), clean, generator)
    kind = torch.randint(0, len(RETOUCHES), (batch,), generator=generator)[:, None, None, None]
    sign = torch.where(torch.rand(batch, channels, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
    shift = sign * (0.3 + 0.4 * torch.rand(batch, channels, 1, 1, generator=generator))
    sigma = 0.2 + 0.3 * torch.rand(batch, 1, 1, 1, generator=generator)
    noise = torch.randn(images.shape, generator=generator) * sigma
    amount = 1.5 + 1.5 * torch.rand(batch, 1, 1, 1, generator=generator)
    stroke = _chords(shape, generator)
    brightness = 0.6 + 0.4 * torch.rand(batch, channels, 1, 1, generator=generator)
    x = images.cpu()
    candidates = torch.stack([  # [5, B, C, H, W], in the order of RETOUCHES
        x + shift,
        x + noise,
        gaussian_blur(x, 2.0),
        x + amount * (x - gaussian_blur(x, 1.0)),
        torch.where(stroke > 0, brightness.expand_as(x), x),
    ])
    changed = candidates.gather(0, kind[None].expand(1, *x.shape))[0].clamp(0, 1)
    tampered = torch.where(shape > 0, changed, x)
    mask = ((tampered - x).abs().amax(1, keepdim=True) > CHANGED).to(x.dtype)
    return tampered.to(images.device), mask.to(images.device)


FAMILIES = ("paste", "retouch")


def tamper(family: str, images: Tensor, donors: Tensor,
           generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(tampered, mask)`` of the ``family`` (one of :data:`FAMILIES`)."""
    if family == "paste":
        return paste(images, donors, generator)
    if family == "retouch":
        return retouch(images, generator)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
