"""The papers' 32×32 colour data sets, read from the standard files a user has.

Nothing is downloaded: each loader reads ``root`` (the command line's ``--data-dir``) and,
when the files are missing, says where to get them.

* CIFAR-10 / CIFAR-100, the "python version": pickled dicts with ``data`` ``[N, 3072]``
  uint8 (the red, then green, then blue plane, each row-major) and ``labels``
  (CIFAR-10: ``data_batch_1…5``, ``test_batch``) or ``fine_labels`` (CIFAR-100:
  ``train``, ``test``);
* SVHN cropped digits: ``train_32x32.mat`` / ``test_32x32.mat`` with ``X`` ``[32, 32, 3,
  N]`` uint8 and ``y`` ``[N, 1]`` where label 10 means the digit 0.

As for MNIST, the last tenth of the official training set is the validation split (tune
there), the rest is ``train``; ``test`` is the official test set.
"""

from __future__ import annotations

import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["FILE_DATASETS", "VALID_SHARE", "read_arrays"]

VALID_SHARE = 0.1

_WHERE = {
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar.html "
                "(CIFAR-10 python version, cifar-10-python.tar.gz)"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar.html "
                 "(CIFAR-100 python version, cifar-100-python.tar.gz)"),
    "svhn": ("", "http://ufldl.stanford.edu/housenumbers/ (Format 2: cropped digits, "
             "train_32x32.mat and test_32x32.mat)"),
}
_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
    "svhn": {"train": ["train_32x32.mat"], "test": ["test_32x32.mat"]},
}
FILE_DATASETS = tuple(_FILES)


def _folder(dataset: str, root: str | os.PathLike | None, names: list[str]) -> Path:
    """The folder holding ``names``: ``root`` itself or its standard subfolder."""
    subfolder, source = _WHERE[dataset]
    if root is None:
        raise FileNotFoundError(
            f"{dataset} is read from files you have: pass --data-dir (root=...) with the "
            f"folder holding {', '.join(names)}; get them from {source}")
    root = Path(root)
    for folder in (root, root / subfolder):
        if all((folder / name).is_file() for name in names):
            return folder
    raise FileNotFoundError(
        f"{dataset}: {', '.join(names)} not found in {root}"
        f"{f' or {root / subfolder}' if subfolder else ''}; get them from {source}")


def _read_cifar(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"path {path} is not a CIFAR python-version batch ({error})") \
                from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"path {path} is not a CIFAR python-version batch: it needs the keys "
                         f"'data' and {label_key.decode()!r}")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"path {path}: 'data' must be [N, 3072], got {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch[label_key], dtype=np.int64)


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"path {path} is not an SVHN .mat file ({error})") from None
    if "X" not in mat or "y" not in mat or mat["X"].ndim != 4:
        raise ValueError(f"path {path} is not an SVHN cropped-digits file: it needs X "
                         "[32, 32, 3, N] and y [N, 1]")
    images = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)).astype(np.uint8)  # [N,3,H,W]
    labels = mat["y"].reshape(-1).astype(np.int64)
    return images, np.where(labels == 10, 0, labels)  # 10 is the digit 0


@lru_cache(maxsize=4)
def _official(dataset: str, part: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The official ``part`` (train | test) as ``(uint8 [N, 3, 32, 32], int64 [N])``."""
    names = _FILES[dataset][part]
    folder = _folder(dataset, root, names)
    if dataset == "svhn":
        return _read_svhn(folder / names[0])
    label_key = b"labels" if dataset == "cifar10" else b"fine_labels"
    read = [_read_cifar(folder / name, label_key) for name in names]
    return np.concatenate([x for x, _ in read]), np.concatenate([y for _, y in read])


def read_arrays(dataset: str, split: str,
                root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 3, 32, 32], int64 [N])`` of ``split`` (train | valid | test)."""
    if dataset not in _FILES:
        raise ValueError(f"dataset must be one of {FILE_DATASETS}, got {dataset!r}")
    root = None if root is None else str(root)
    if split == "test":
        return _official(dataset, "test", root)
    images, labels = _official(dataset, "train", root)
    n_valid = max(1, round(VALID_SHARE * len(images)))
    cut = slice(0, len(images) - n_valid) if split == "train" else slice(len(images) - n_valid,
                                                                        None)
    return images[cut], labels[cut]
