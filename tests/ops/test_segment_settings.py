"""A segmenter setting that cannot work is a ValueError naming it, never scikit-image's
division by zero, an overflow, or one segment for the whole image."""

import math

import pytest
import torch

from uattr import segment
from uattr.ops.segment import CorruptionSegmenter

_X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

_BAD = [
    ("grid", {"cell": 0}, "cell"),
    ("grid", {"cell": 2.5}, "cell"),
    ("slic", {"n_segments": 0}, "n_segments"),
    ("slic", {"n_segments": 10 ** 6}, "n_segments"),
    ("slic", {"compactness": 0}, "compactness"),  # was ZeroDivisionError
    ("slic", {"compactness": -1.0}, "compactness"),
    ("slic", {"compactness": math.nan}, "compactness"),  # was one segment per image
    ("slic", {"sigma": -1.0}, "sigma"),
    ("slic", {"sigma": math.inf}, "sigma"),  # was OverflowError
    ("quickshift", {"kernel_size": 0}, "kernel_size"),
    ("quickshift", {"max_dist": 0}, "max_dist"),
    ("quickshift", {"ratio": 2.0}, "ratio"),
    ("quickshift", {"ratio": -0.5}, "ratio"),
    ("felzenszwalb", {"scale": 0}, "scale"),
    ("felzenszwalb", {"scale": math.nan}, "scale"),
    ("felzenszwalb", {"sigma": -1.0}, "sigma"),
    ("felzenszwalb", {"min_size": 0}, "min_size"),
    ("texture", {"n_segments": 0}, "n_segments"),
    ("texture", {"sigma": 0}, "sigma"),  # was one segment per image
    ("texture", {"compactness": 0}, "compactness"),
]


@pytest.mark.parametrize(("name", "settings", "argument"), _BAD,
                         ids=[f"{n}-{next(iter(s))}={next(iter(s.values()))}"
                              for n, s, _ in _BAD])
def test_a_setting_that_cannot_work_is_named(name, settings, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        segment.get_segmenter(name)(_X, **settings)


# (segmenter, a setting at its bound, whether the noise image gets several segments): a
# cell larger than the image is one segment, and uniform noise has one texture
@pytest.mark.parametrize(("name", "settings", "several"), [
    ("grid", {"cell": 100}, False), ("slic", {"compactness": 1e-3}, True),
    ("quickshift", {"ratio": 0.0}, True), ("quickshift", {"ratio": 1.0}, True),
    ("felzenszwalb", {"sigma": 0.0}, True), ("texture", {"sigma": 0.1}, False),
])
def test_the_bounds_themselves_still_segment(name, settings, several):
    labels = segment.get_segmenter(name)(_X, **settings)
    assert labels.shape == (2, 16, 16)
    counts = segment.num_segments(labels)  # [2]
    assert bool((counts > 1).all()) if several else counts.tolist() == [1, 1]


@pytest.mark.parametrize(("settings", "argument"), [
    ({"relative": 0.0}, "relative"), ({"relative": 1.0}, "relative"),
    ({"compactness": 0.0}, "compactness"), ({"n_segments": 0}, "n_segments")])
def test_the_corruption_segmenter_names_a_setting_that_cannot_work(settings, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        CorruptionSegmenter(torch.nn.Conv2d(3, 1, 3, padding=1), **settings)


def test_the_corruption_segmenter_names_images_of_the_wrong_channel_count():
    grey_detector = CorruptionSegmenter(torch.nn.Conv2d(1, 1, 3, padding=1))
    with pytest.raises(ValueError, match=r"^x: the corruption detector cannot take images "
                                         r"of shape \[C, H, W\] = \[3, 16, 16\]"):
        grey_detector(_X)
