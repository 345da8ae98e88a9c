"""How many images go through the posterior at once.

The methods' chunk sizes (``internal_batch_size``, ``perturbations_per_eval``, ...) were
set for 28×28 images, where a thousand images at once cost a few hundred MB of
activations. A convolutional network's activations grow with the image's area, so the
same count at 224 px would need 64 times that memory (tens of GB with gradients kept).
Each chunk is therefore given in images *of 28×28* and holds the same number of pixels at
every size: ``count · 28² / (H·W)`` images, at least one. Chunking changes neither a
result nor the work done, only how much of it is held in memory at once.
"""

from __future__ import annotations

__all__ = ["REFERENCE_PIXELS", "images_per_pass"]

REFERENCE_PIXELS = 28 * 28


def images_per_pass(at_28px: int, height: int, width: int) -> int:
    """``at_28px`` images of 28×28 in pixels, as a number of ``height × width`` images
    (never more than ``at_28px``: smaller images keep the count they were given)."""
    return max(1, min(at_28px, at_28px * REFERENCE_PIXELS // (height * width)))
