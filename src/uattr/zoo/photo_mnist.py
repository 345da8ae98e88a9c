"""``photo-mnist``: MNIST digits blended with crops of colour photographs, 32×32 RGB.

The construction of MNIST-M (Ganin et al., 2016, §5): each digit is blended with a random
crop of a colour photograph as ``|digit − crop|`` per channel, so a stroke inverts the
colours of the photograph under it. MNIST-M takes its crops from BSDS500, which cannot be
had here; photo-mnist takes them from the eleven colour photographs that ship inside
scikit-image and scikit-learn (:data:`PHOTOS`), so it is built on any machine with
nothing downloaded, and it is named for its own backgrounds.

* Each 28×28 digit is padded with 2 black pixels on every side to 32×32 (the digit is
  not resampled), then ``image[c, i, j] = |digit[i, j] − crop[c, i, j]|``, with the crop
  a 32×32 window of one photograph (uint8 / 255) at a random place.
* Photograph and place are drawn per image (:func:`placements`) from
  ``numpy.random.default_rng((seed, split))``: the same seed gives the same images, and
  the three splits draw independently. The labels and the train / valid / test split
  are MNIST's. Pixels are rounded to 8 bits, as MNIST-M's PNG files are.
* The 50 000 training images build in a few seconds; the three last splits built are
  kept in memory as uint8 (3 KB an image).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["PHOTOS", "SIDE", "blend", "crops", "photographs", "placements", "random_crops",
           "read_arrays"]

SIDE = 32
_PAD = (SIDE - 28) // 2

# The colour photographs bundled with scikit-image (``skimage.data``) and scikit-learn
# (``load_sample_images``), by name. Synthetic pictures (colorwheel, chessboard) are left
# out: a background of flat colour fields is not what a photograph is.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right",
          "china", "flower")


@lru_cache(maxsize=1)
def photographs() -> tuple[np.ndarray, ...]:
    """The photographs of :data:`PHOTOS`, each ``uint8 [H, W, 3]``, in that order."""
    from skimage import data as sk
    from sklearn.datasets import load_sample_images

    left, right, _ = sk.stereo_motorcycle()
    sample = dict(zip(("china", "flower"), load_sample_images().images, strict=True))
    found = {"motorcycle_left": left, "motorcycle_right": right, **sample}
    return tuple(np.ascontiguousarray(found[name] if name in found else getattr(sk, name)())
                 for name in PHOTOS)


def blend(digits: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """``|digit − crop|`` per channel (MNIST-M's blend): ``digits`` ``[N, H, W]`` and
    ``crops`` ``[N, H, W, 3]``, both in [0, 1] -> ``[N, 3, H, W]`` in [0, 1]."""
    return np.abs(digits[:, None] - crops.transpose(0, 3, 1, 2))  # [N, 3, H, W]


def placements(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of ``n`` backgrounds is cut: ``(photograph index, top, left)``, each
    ``int [n]``; the photograph uniformly among :data:`PHOTOS`, then the place uniformly
    among the 32×32 windows that fit in it."""
    shapes = np.array([photo.shape[:2] for photo in photographs()])  # [P, 2]
    which = rng.integers(len(shapes), size=n)
    room = shapes[which] - SIDE + 1  # [n, 2]: the windows that fit, per axis
    corner = np.floor(rng.random((n, 2)) * room).astype(np.int64)  # [n, 2]
    return which, corner[:, 0], corner[:, 1]


def crops(which: np.ndarray, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The 32×32 windows at ``(which, top, left)`` (:func:`placements`), ``uint8 [n, 32, 32,
    3]``."""
    out = np.empty((len(which), SIDE, SIDE, 3), dtype=np.uint8)
    window = np.arange(SIDE)
    for k, photo in enumerate(photographs()):  # one gather per photograph, not per image
        chosen = np.flatnonzero(which == k)
        rows = (top[chosen, None] + window)[:, :, None]  # [n_k, 32, 1]
        cols = (left[chosen, None] + window)[:, None, :]  # [n_k, 1, 32]
        out[chosen] = photo[rows, cols]
    return out


@lru_cache(maxsize=3)
def read_arrays(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 3, 32, 32], int64 [N])``: photo-mnist's ``split`` (train | valid | test),
    built from MNIST's split of the same name."""
    from .data import SPLITS, load_mnist

    mnist = load_mnist(split)
    digits = np.pad(mnist.images[:, 0].numpy(), ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
    rng = np.random.default_rng((seed, SPLITS.index(split)))
    backgrounds = crops(*placements(len(digits), rng)).astype(np.float32) / 255.0
    # stored as 8-bit colour, as MNIST-M's own PNG files are
    images = np.rint(blend(digits, backgrounds) * 255.0).astype(np.uint8)  # [N, 3, 32, 32]
    return images, mnist.labels.numpy()


def random_crops(size: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random ``size``-px colour crops of the photographs, ``float32 [n, 3, size, size]``
    in [0, 1] (seeded): real colour images at any size up to 300 px, for tests and
    benchmarks that need them."""
    rng = np.random.default_rng((seed, size))
    photos = [photo for photo in photographs() if min(photo.shape[:2]) >= size]
    if not photos:
        raise ValueError(f"size must be at most {max(min(p.shape[:2]) for p in photographs())} "
                         f"px (the smallest side of the largest photograph), got {size}")
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - size + 1)
        left = rng.integers(photo.shape[1] - size + 1)
        out[i] = photo[top:top + size, left:left + size].transpose(2, 0, 1) / 255.0
    return out
