"""A user's own images, from PNG/JPEG files, folders of them, or a ``.npy`` array.

Every image becomes a float tensor ``[C, H, W]`` in [0, 1], mapped the same way for
every file (the mapping is returned, and the command line prints it): 8-bit files and
``uint8`` arrays are divided by 255, 16-bit ones by 65 535; a float array already in
[0, 1] is kept, any other is rescaled by the whole array's minimum and maximum (one
affine map for all its images, never one per image, so that brightness still compares).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..ops.chunks import available_memory

__all__ = ["IMAGE_SUFFIXES", "UserImages", "load_images", "parse_size"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The largest side --size takes: 4096 px is a 16-megapixel photograph; every method then
# needs gigabytes per image (2000 KernelSHAP copies of a 4096² colour image: 400 GB).
MAX_SIDE = 4096
# The images, their float64 reading and a resized copy are in memory at once
_COPIES = 3


def check_memory(count: int, channels: int, height: int, width: int, what: str) -> None:
    """Refuse, before allocating, ``count`` float images that would not fit in memory."""
    need = count * channels * height * width * 4 * _COPIES
    free = available_memory()
    if free is not None and need > free:
        raise ValueError(f"{what}: {count} images of {channels}×{height}×{width} need "
                         f"{need / 2**30:.1f} GiB to load, but this machine has "
                         f"{free / 2**30:.1f} GiB free; pass a smaller --size or fewer images")


@dataclass(frozen=True)
class UserImages:
    """``images [N, C, H, W]`` in [0, 1], a ``name`` per image (its file, or
    ``array[i]``), and the ``mapping`` that took the stored values to [0, 1]."""

    images: Tensor
    names: list[str]
    mapping: str


def parse_size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"24x32"`` -> (24, 32) (height × width)."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--size must be N or HxW with positive integers, got {text!r}")
    if max(size) > MAX_SIDE:
        raise ValueError(f"--size must be at most {MAX_SIDE} px per side, got {text!r}")
    return size  # type: ignore[return-value]


def _files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise ValueError(f"--images: folder {path} holds no PNG or JPEG file")
            files += inside
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"--images: {path} does not exist")
    return files


def _read_picture(path: Path) -> tuple[np.ndarray, int]:
    """``(array [H, W, C], largest value of its bit depth)`` of one image file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            mode = picture.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(picture, dtype=np.float64)[:, :, None], 65_535
            if mode in ("L", "LA"):
                picture = picture.convert("L")
            elif mode != "RGB":
                picture = picture.convert("RGB")  # palette, RGBA, CMYK: colour, no alpha
            array = np.asarray(picture, dtype=np.float64)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"--images: {path} is not an image PIL can read ({error})") from None
    return (array[:, :, None] if array.ndim == 2 else array), 255


def _resize(images: Tensor, size: tuple[int, int] | None) -> Tensor:
    if size is None or tuple(images.shape[-2:]) == size:
        return images
    # antialias: shrinking a photo to a network's 32×32 should average, not alias
    resized = torch.nn.functional.interpolate(images, size=size, mode="bilinear",
                                              antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def _from_array(path: Path, size: tuple[int, int] | None) -> UserImages:
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header only
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"--images: {path} is not a .npy array of numbers "
                         f"({type(error).__name__})") from None
    if header.ndim in (3, 4) and header.shape[0] > 0:
        channels = header.shape[1] if header.ndim == 4 else 1
        check_memory(header.shape[0], channels, *(size or header.shape[-2:]), "--images")
    array = np.load(path, allow_pickle=False)
    if array.ndim == 3:
        array = array[:, None]  # [N, 1, H, W]
    if array.ndim != 4 or array.shape[0] == 0:
        raise ValueError(f"--images: {path} must hold an array [N, H, W] or [N, C, H, W], got "
                         f"shape {array.shape}")
    if array.dtype == np.uint8:
        values, mapping = array.astype(np.float32) / 255, "x / 255 (uint8 array)"
    elif array.dtype == np.uint16:
        values, mapping = array.astype(np.float32) / 65_535, "x / 65535 (uint16 array)"
    elif np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"--images: {path} holds NaN or inf values")
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 1:
            mapping = "x (already in [0, 1])"
        elif high > low:
            values = (values - low) / (high - low)
            mapping = f"(x - {low:g}) / {high - low:g} (the array's range, one map for all)"
        else:
            raise ValueError(f"--images: {path} is constant ({low:g}); nothing to explain")
        values = values.astype(np.float32)
    else:
        raise ValueError(f"--images: {path} must hold numbers, got dtype {array.dtype}")
    images = _resize(torch.from_numpy(np.ascontiguousarray(values)), size)
    return UserImages(images, [f"{path.name}[{i}]" for i in range(len(images))], mapping)


def load_images(paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                size: tuple[int, int] | None = None) -> UserImages:
    """Read ``paths`` (image files, folders of them, or one ``.npy`` array) into
    :class:`UserImages`. Images of different sizes need ``size`` (height, width), to
    which every image is resized; grey and colour files mixed are all made colour."""
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if len(paths) == 1 and Path(paths[0]).suffix.lower() == ".npy":
        if not Path(paths[0]).is_file():
            raise FileNotFoundError(f"--images: {paths[0]} does not exist")
        return _from_array(Path(paths[0]), size)
    files = _files(paths)
    if not files:
        raise ValueError("--images needs at least one image file, folder or .npy array")
    if size is not None:
        check_memory(len(files), 3, *size, "--images")
    read = [_read_picture(path) for path in files]
    depths = {depth for _, depth in read}
    if len(depths) > 1:
        raise ValueError("--images mixes 8-bit and 16-bit files, which map to [0, 1] "
                         "differently; convert them to one depth")
    depth = depths.pop()
    channels = max(array.shape[2] for array, _ in read)
    tensors = []
    for array, _ in read:
        image = torch.from_numpy(array.astype(np.float32) / depth).permute(2, 0, 1)  # [C, H, W]
        tensors.append(image.expand(channels, -1, -1) if image.shape[0] == 1 else image)
    shapes = {tuple(t.shape[-2:]) for t in tensors}
    if size is None and len(shapes) > 1:
        raise ValueError(f"--images have different sizes {sorted(shapes)}; pass --size HxW to "
                         "resize them all to one")
    images = torch.cat([_resize(t[None], size) for t in tensors])  # [N, C, H, W]
    mapping = f"x / {depth} ({'8' if depth == 255 else '16'}-bit files)"
    if len({array.shape[2] for array, _ in read}) > 1:
        mapping += "; grey files repeated to colour"
    return UserImages(images.contiguous(), [path.name for path in files], mapping)
