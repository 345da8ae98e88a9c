"""CIFAR-10/100 and SVHN read from tiny files written in exactly their standard formats."""

import pickle

import numpy as np
import pytest
import torch
from scipy.io import savemat

from uattr import data
from uattr.zoo.files32 import read_arrays


def _cifar_batch(path, images, labels, label_key):
    """A python-version batch: rows of 3072 bytes, red plane, green, blue, row-major."""
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", label_key: list(labels),
                     b"data": images.reshape(len(images), -1)}, f)


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


@pytest.fixture
def cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"  # the tarball's own folder, under --data-dir
    folder.mkdir()
    parts = [_images(4, i) for i in range(6)]
    for i in range(5):
        _cifar_batch(folder / f"data_batch_{i + 1}", parts[i], [i, 9 - i, 1, 2], b"labels")
    _cifar_batch(folder / "test_batch", parts[5], [3, 3, 4, 5], b"labels")
    return tmp_path, parts


def test_cifar10_reads_the_batches_in_order_with_the_last_tenth_as_validation(cifar10):
    root, parts = cifar10
    train, valid, test = (data.load("cifar10", s, root=root) for s in data.SPLITS)
    official = np.concatenate(parts[:5])  # 20 training images: 18 train, 2 valid
    assert (len(train), len(valid), len(test)) == (18, 2, 4)
    assert train.images.shape == (18, 3, 32, 32) and train.images.dtype == torch.float32
    # a pixel by hand: image 5 is batch 2's second row; channel 1 (green), row 7, col 30
    assert train.images[5, 1, 7, 30].item() == pytest.approx(parts[1][1, 1, 7, 30] / 255)
    np.testing.assert_array_equal((valid.images.numpy() * 255).round(), official[18:])
    assert train.labels[:8].tolist() == [0, 9, 1, 2, 1, 8, 1, 2]
    assert test.labels.tolist() == [3, 3, 4, 5]
    assert data.split_size("cifar10", "valid", root=root) == 2


def test_cifar100_reads_the_fine_labels(tmp_path):
    images = _images(10, 7)
    _cifar_batch(tmp_path / "train", images, list(range(90, 100)), b"fine_labels")
    _cifar_batch(tmp_path / "test", images[:3], [5, 6, 7], b"fine_labels")
    train = data.load("cifar100", "train", root=tmp_path)
    assert train.labels.tolist() == list(range(90, 99))  # the last tenth (1) is validation
    assert data.load("cifar100", "test", root=tmp_path).labels.tolist() == [5, 6, 7]


def test_svhn_reads_the_mat_files_and_maps_label_10_to_digit_0(tmp_path):
    x = _images(5, 3)  # [N, 3, H, W]
    savemat(tmp_path / "train_32x32.mat", {"X": x.transpose(2, 3, 1, 0),  # [H, W, 3, N]
                                           "y": np.array([[10], [1], [2], [10], [9]])})
    savemat(tmp_path / "test_32x32.mat", {"X": x[:2].transpose(2, 3, 1, 0),
                                          "y": np.array([[3], [10]])})
    train = data.load("svhn", "train", root=tmp_path)
    np.testing.assert_array_equal((train.images.numpy() * 255).round(), x[:4])
    assert train.labels.tolist() == [0, 1, 2, 0]
    assert data.load("svhn", "valid", root=tmp_path).labels.tolist() == [9]
    assert data.load("svhn", "test", root=tmp_path).labels.tolist() == [3, 0]


def test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pass --data-dir .*www.cs.toronto.edu"):
        read_arrays("cifar10", "train", None)
    with pytest.raises(FileNotFoundError, match=r"train_32x32.mat not found .*//ufldl"):
        data.load("svhn", "train", root=tmp_path)


def test_a_file_that_is_not_a_cifar_batch_is_named(tmp_path):
    for name in ("train", "test"):
        (tmp_path / name).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a CIFAR python-version batch"):
        data.load("cifar100", "test", root=tmp_path)
