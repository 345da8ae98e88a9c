"""How many images go through the posterior at once.

The methods' chunk sizes (``internal_batch_size``, ``perturbations_per_eval``, ...) were
set for 28×28 images, where a thousand images at once cost a few hundred MB of
activations. A convolutional network's activations grow with the image's area, so the
same count at 224 px would need 64 times that memory (tens of GB with gradients kept).
Each chunk is therefore given in images *of 28×28* and holds the same number of pixels at
every size: ``count · 28² / (H·W)`` images, at least one. Chunking changes neither a
result nor the work done, only how much of it is held in memory at once.

Pixels are not memory, though: a ResNet-18 whose first stage keeps the full resolution
saves ~0.5 GB of activations per member for one 224 px image, where the small CNN saves
a few MB. Where gradients are taken, :func:`saved_bytes` measures what autograd keeps
for backward on the first chunk (one image), and :func:`within_memory` caps the later
chunks so that they hold at most :data:`MEMORY_SHARE` of the memory the machine has free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["MEMORY_SHARE", "REFERENCE_PIXELS", "available_memory", "images_per_pass",
           "saved_bytes", "within_memory"]

REFERENCE_PIXELS = 28 * 28
MEMORY_SHARE = 0.25  # of the free memory, for one chunk's saved activations
_UNKNOWN_FREE = 8 * 2**30  # assumed free where the system does not say


def images_per_pass(at_28px: int, height: int, width: int) -> int:
    """``at_28px`` images of 28×28 in pixels, as a number of ``height × width`` images
    (never more than ``at_28px``: smaller images keep the count they were given)."""
    return max(1, min(at_28px, at_28px * REFERENCE_PIXELS // (height * width)))


@contextlib.contextmanager
def saved_bytes() -> Iterator[list[int]]:
    """Count the bytes autograd saves for backward inside the block (``[total]``)."""
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


def available_memory() -> int | None:
    """Bytes this machine can still give (``MemAvailable``), ``None`` where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = available_memory()
    return _UNKNOWN_FREE if free is None else free


def within_memory(step: int, bytes_per_image: int, device: torch.device) -> int:
    """``step`` images per pass, fewer where that many images' saved activations
    (``bytes_per_image`` each) would exceed :data:`MEMORY_SHARE` of the free memory."""
    if bytes_per_image <= 0:
        return step
    affordable = int(MEMORY_SHARE * _free_memory(device)) // bytes_per_image
    return max(1, min(step, affordable))
