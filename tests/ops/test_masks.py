"""SAM's overlapping masks as a partition, and the SAM segmenter with stand-in objects."""

import sys
import types

import numpy as np
import pytest
import torch

from uattr import segment


def _mask(rows, cols, shape=(4, 5)):
    seg = np.zeros(shape, dtype=bool)
    seg[rows, cols] = True
    return {"segmentation": seg, "area": int(seg.sum())}


def test_from_masks_paints_large_first_and_gives_uncovered_pixels_one_segment():
    big = _mask(slice(0, 3), slice(0, 4))       # 12 px
    small = _mask(slice(1, 2), slice(1, 3))     # 2 px, inside big
    side = _mask(slice(2, 4), slice(3, 5))      # 4 px, overlaps big at (2, 3)
    labels = segment.from_masks([small, big, side], 4, 5)
    # worked out by hand: big under everything, side over big at (2, 3), small over big;
    # (0, 4), (1, 4), (3, 0..2) are in no mask; labels by first pixel in row-major order
    expected = torch.tensor([[0, 0, 0, 0, 1],
                             [0, 2, 2, 0, 1],
                             [0, 0, 0, 3, 3],
                             [1, 1, 1, 3, 3]])
    assert torch.equal(labels, expected)
    assert labels.dtype == torch.int64


def test_a_mask_painted_over_entirely_leaves_no_label_and_area_defaults_to_pixels():
    inner = {"segmentation": _mask(slice(0, 2), slice(0, 2))["segmentation"]}  # no area
    same = _mask(slice(0, 2), slice(0, 2))
    whole = _mask(slice(0, 4), slice(0, 5))
    labels = segment.from_masks([same, inner, whole], 4, 5)
    # same and inner tie at 4 px: the list's order paints same, then inner over it
    assert labels.unique().tolist() == [0, 1]
    assert (labels[:2, :2] == 0).all() and labels.sum() == 20 - 4


def test_from_masks_rejects_masks_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"masks\[0\]\['segmentation'\] must have shape"):
        segment.from_masks([_mask(slice(0, 1), slice(0, 1), shape=(3, 3))], 4, 5)


class _Generator:
    """SAM's interface: generate(uint8 [H, W, 3]) -> list of mask dicts."""

    def __init__(self):
        self.seen = []

    def generate(self, picture):
        self.seen.append(picture)
        bright = picture[..., 0] > 127
        return [{"segmentation": bright, "area": int(bright.sum())}]


def test_the_mask_segmenter_feeds_each_image_as_rgb_bytes_and_returns_partitions():
    x = torch.zeros(2, 1, 4, 5)
    x[0, 0, :2] = 1.0
    x[1, 0, :, 4] = 1.0
    generator = _Generator()
    labels = segment.MaskSegmenter(generator)(x)
    assert [p.shape for p in generator.seen] == [(4, 5, 3)] * 2
    assert generator.seen[0].dtype == np.uint8 and generator.seen[0][0, 0].tolist() == [255] * 3
    assert torch.equal(labels[0], (x[0, 0] < 0.5).long())  # bright rows first: label 0
    assert torch.equal(labels[1], (x[1, 0] > 0.5).long())  # dark pixel first: label 0


def test_sam_names_the_extra_when_segment_anything_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'uattr\[sam\]'"):
        segment.sam("sam_vit_h.pth")


def test_sam_builds_the_generator_from_the_checkpoint(monkeypatch, tmp_path):
    built = {}

    def registry_entry(checkpoint):
        built["checkpoint"] = checkpoint
        return torch.nn.Linear(1, 1)

    class Automatic(_Generator):
        def __init__(self, model, **settings):
            super().__init__()
            built["settings"] = settings

    fake = types.SimpleNamespace(sam_model_registry={"vit_b": registry_entry},
                                 SamAutomaticMaskGenerator=Automatic)
    monkeypatch.setitem(sys.modules, "segment_anything", fake)
    weights = tmp_path / "sam_vit_b.pth"
    weights.write_bytes(b"")
    segmenter = segment.sam(weights, "vit_b", points_per_side=8)
    assert built == {"checkpoint": str(weights), "settings": {"points_per_side": 8}}
    assert segmenter(torch.ones(1, 3, 4, 5)).unique().tolist() == [0]
    with pytest.raises(ValueError, match="model_type must be one of"):
        segment.sam(weights, "vit_h")
    with pytest.raises(FileNotFoundError, match=r"checkpoint .* does not exist"):
        segment.sam(tmp_path / "missing.pth", "vit_b")
