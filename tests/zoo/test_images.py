"""A user's images: PNG/JPEG files and folders, .npy arrays, one mapping to [0, 1] for all."""

import numpy as np
import pytest
import torch
from PIL import Image

from uattr.zoo.images import load_images, parse_size


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_a_folder_of_8_bit_pngs_is_read_in_name_order_and_divided_by_255(tmp_path):
    rng = np.random.default_rng(0)
    grey = [rng.integers(0, 256, (6, 7), dtype=np.uint8) for _ in range(3)]
    for i, array in enumerate(grey):
        _png(tmp_path / f"img{2 - i}.png", array)  # written out of order
    (tmp_path / "notes.txt").write_text("ignored: not an image")
    loaded = load_images(tmp_path)
    assert loaded.names == ["img0.png", "img1.png", "img2.png"]
    assert loaded.images.shape == (3, 1, 6, 7) and loaded.mapping.startswith("x / 255")
    np.testing.assert_array_equal(loaded.images[0, 0].numpy() * 255, grey[2].astype(np.float32))


def test_colour_and_grey_files_together_become_colour(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    a = _png(tmp_path / "a.png", rgb)
    b = _png(tmp_path / "b.png", np.full((4, 4), 51, dtype=np.uint8))
    loaded = load_images([a, b])
    assert loaded.images.shape == (2, 3, 4, 4)
    assert loaded.images[0, :, 0, 0].tolist() == pytest.approx([0, 200 / 255, 0])
    assert loaded.images[1, :, 0, 0].tolist() == pytest.approx([0.2] * 3)
    assert "grey files repeated to colour" in loaded.mapping


def test_16_bit_pngs_are_divided_by_65535(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    loaded = load_images(_png(tmp_path / "deep.png", array))
    assert loaded.images[0, 0].flatten().tolist() == pytest.approx(
        [0, 1, 32768 / 65535, 1000 / 65535], abs=1e-7)


def test_images_of_different_sizes_need_size_and_are_resized_to_it(tmp_path):
    _png(tmp_path / "small.png", np.full((4, 4), 255, dtype=np.uint8))
    _png(tmp_path / "large.png", np.full((8, 6), 255, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"different sizes .* pass --size"):
        load_images(tmp_path)
    loaded = load_images(tmp_path, size=(5, 5))
    assert loaded.images.shape == (2, 1, 5, 5)
    torch.testing.assert_close(loaded.images, torch.ones(2, 1, 5, 5))  # white stays white


def test_npy_arrays_map_by_the_whole_arrays_range(tmp_path):
    values = np.array([[[0.0, 2.0], [4.0, 8.0]], [[1.0, 1.0], [1.0, 1.0]]])  # [N, H, W]
    np.save(tmp_path / "x.npy", values)
    loaded = load_images(tmp_path / "x.npy")
    assert loaded.images.shape == (2, 1, 2, 2)
    assert loaded.images[0, 0].flatten().tolist() == [0, 0.25, 0.5, 1]
    assert loaded.images[1].unique().tolist() == [0.125]  # one map for all, not per image
    assert loaded.mapping.startswith("(x - 0) / 8") and loaded.names[1] == "x.npy[1]"
    np.save(tmp_path / "u8.npy", np.full((1, 3, 2, 2), 255, dtype=np.uint8))
    assert load_images(tmp_path / "u8.npy").images.unique().tolist() == [1.0]


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: (p / "fake.png").write_bytes(b"not a png"), "is not an image PIL can read"),
    (lambda p: np.save(p / "bad.npy", np.zeros((2, 2))), r"must hold an array \[N, H, W\]"),
    (lambda p: np.save(p / "nan.npy", np.full((1, 2, 2), np.nan)), "NaN or inf"),
])
def test_bad_files_are_named(tmp_path, write, message):
    write(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(ValueError, match=message):
        load_images(path)


def test_parse_size():
    assert parse_size("32") == (32, 32) and parse_size("24x32") == (24, 32)
    with pytest.raises(ValueError, match="--size must be N or HxW"):
        parse_size("0x4")
