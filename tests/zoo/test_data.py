import gzip

import numpy as np
import pytest
import torch

from uattr import data


def test_mnist_splits_are_the_classic_ones():
    train, valid, test = (data.load("mnist", s) for s in data.SPLITS)
    assert (len(train), len(valid), len(test)) == (50_000, 10_000, 10_000)
    assert train.images.shape[1:] == (1, 28, 28)
    assert 0.0 <= float(test.images.min()) and float(test.images.max()) <= 1.0
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def test_fashion_mnist_reads_idx_files_from_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (12, 28, 28))
    train_y = rng.integers(0, 10, 12)
    test_x = rng.integers(0, 256, (3, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 3))
    train = data.load("fashion-mnist", "train", root=tmp_path)
    valid = data.load("fashion-mnist", "valid", root=tmp_path)
    test = data.load("fashion-mnist", "test", root=tmp_path)
    assert (len(train), len(valid), len(test)) == (10, 2, 3)
    np.testing.assert_allclose(train.images[3, 0].numpy(), train_x[3] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(valid.images[1, 0].numpy(), train_x[11] / 255.0, rtol=1e-6)
    assert valid.labels.tolist() == train_y[10:].tolist()
    # the command line's size check reads the headers alone, and agrees with load
    sizes = [data.split_size("fashion-mnist", s, root=tmp_path) for s in data.SPLITS]
    assert sizes == [10, 2, 3]


def test_split_sizes_agree_with_the_loaded_splits():
    for dataset in ("mnist", "digits"):
        for split in data.SPLITS:
            assert data.split_size(dataset, split) == len(data.load(dataset, split))


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", "test", root=tmp_path)


def test_bad_idx_file_is_rejected(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")


def test_digits_split_is_fixed_and_scaled():
    a, b = data.load("digits", "test"), data.load("digits", "test")
    assert torch.equal(a.images, b.images)
    assert a.images.shape[1:] == (1, 8, 8) and float(a.images.max()) == 1.0
    total = sum(len(data.load("digits", s)) for s in data.SPLITS)
    assert total == 1797


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load("cifar11")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("mnist", "dev")


def test_patch_swap_changes_only_the_box_and_copies_the_donor():
    torch.manual_seed(0)
    images, donors = torch.rand(6, 1, 20, 20), torch.rand(9, 1, 20, 20)
    corrupted, boxes, donor = data.patch_swap(images, donors, patch_size=5, seed=3)
    for i in range(6):
        top, left, h, w = boxes[i].tolist()
        assert (h, w) == (5, 5) and 0 <= top <= 15 and 0 <= left <= 15
        inside = torch.zeros(20, 20, dtype=torch.bool)
        inside[top : top + h, left : left + w] = True
        assert torch.equal(corrupted[i, 0][inside], donors[donor[i], 0][inside])
        assert torch.equal(corrupted[i, 0][~inside], images[i, 0][~inside])


def test_patch_swap_is_seeded():
    images, donors = torch.rand(4, 1, 12, 12), torch.rand(4, 1, 12, 12)
    a = data.patch_swap(images, donors, seed=1)
    b = data.patch_swap(images, donors, seed=1)
    c = data.patch_swap(images, donors, seed=2)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_default_patch_is_ten_pixels_on_mnist_and_cifar():
    assert data.default_patch_size(28, 28) == 10
    assert data.default_patch_size(32, 32) == 10
    assert data.default_patch_size(450, 500) == 100
    assert data.default_patch_size(8, 8) == 2


def test_photo_mnist_pixels_are_the_digit_blended_with_its_photograph():
    from uattr.zoo import photo_mnist

    test, mnist = data.load("photo-mnist", "test"), data.load("mnist", "test")
    assert test.images.shape == (10_000, 3, 32, 32)
    assert torch.equal(test.labels, mnist.labels)  # MNIST's labels, in MNIST's order
    assert [data.split_size("photo-mnist", s) for s in data.SPLITS] == [50_000, 10_000, 10_000]
    # image 7's background, drawn as the data set draws it
    rng = np.random.default_rng((0, data.SPLITS.index("test")))
    which, top, left = (v[7] for v in photo_mnist.placements(10_000, rng))
    photo = photo_mnist.photographs()[which]
    # a stroke pixel of the digit (2 px of padding on every side), worked out by hand
    row, col = (int(v) for v in (mnist.images[7, 0] > 0.5).nonzero()[0])
    digit = float(mnist.images[7, 0, row, col])
    for channel in range(3):
        crop = photo[top + row + 2, left + col + 2, channel] / 255.0
        expected = round(abs(digit - crop) * 255) / 255
        assert float(test.images[7, channel, row + 2, col + 2]) == pytest.approx(expected,
                                                                                 abs=1e-6)
    # the padding is the photograph itself: |0 - crop|
    corner = torch.from_numpy(photo[top, left] / 255.0).float()
    assert torch.allclose(test.images[7, :, 0, 0], corner, atol=1e-6)


def test_photo_mnist_is_the_same_for_the_same_seed_and_differs_otherwise():
    from uattr.zoo import photo_mnist

    photo_mnist.read_arrays.cache_clear()
    first = photo_mnist.read_arrays("valid", seed=0)[0]
    photo_mnist.read_arrays.cache_clear()  # built again, not the cached arrays
    assert np.array_equal(photo_mnist.read_arrays("valid", seed=0)[0], first)
    other = photo_mnist.read_arrays("valid", seed=1)[0]
    assert (other != first).mean() > 0.5  # other backgrounds under the same digits
