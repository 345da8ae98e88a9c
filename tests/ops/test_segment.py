import pytest
import torch

from uattr import segment


def test_relabel_makes_labels_contiguous_per_image():
    seg = torch.tensor([[[5, 5], [9, 2]], [[0, 7], [7, 7]]])
    out = segment.relabel(seg)
    assert out.tolist() == [[[1, 1], [2, 0]], [[0, 1], [1, 1]]]
    assert segment.num_segments(out).tolist() == [3, 2]


def test_grid_labels_cells():
    x = torch.zeros(1, 1, 4, 6)
    expected = torch.tensor([[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2)
    assert torch.equal(segment.grid(x, cell=2)[0], expected)


def test_pixels_are_one_segment_each():
    x = torch.zeros(2, 1, 3, 4)
    seg = segment.pixels(x)
    assert segment.num_segments(seg).tolist() == [12, 12]
    assert seg[1, 2, 3].item() == 11


@pytest.mark.parametrize("name", ["slic", "felzenszwalb", "quickshift"])
def test_skimage_segmenters_separate_two_flat_halves(name):
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, :, 8:] = 1.0
    seg = segment.get_segmenter(name)(x)
    left, right = seg[:, :, :8], seg[:, :, 8:]
    for b in range(2):  # no segment straddles the edge
        assert not set(left[b].unique().tolist()) & set(right[b].unique().tolist())
        labels = seg[b].unique()
        assert torch.equal(labels, torch.arange(len(labels)))


def test_check_segments_broadcasts_and_rejects_bad_maps():
    x = torch.zeros(3, 1, 4, 4)
    assert segment.check_segments(torch.zeros(4, 4, dtype=torch.long), x).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="integer"):
        segment.check_segments(torch.zeros(3, 4, 4), x)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        segment.check_segments(torch.zeros(3, 4, 5, dtype=torch.long), x)
    with pytest.raises(ValueError, match="negative"):
        segment.check_segments(torch.full((4, 4), -1), x)


def test_unknown_segmenter_is_rejected():
    with pytest.raises(ValueError, match="segmenter must be one of"):
        segment.get_segmenter("sam2")


def test_with_boxes_gives_each_box_a_segment_of_its_own():
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    cells = segment.grid(x, cell=4)  # 9 cells
    boxes = torch.tensor([[2, 3, 4, 4], [0, 0, 4, 4]])  # the second box is cell 0 itself
    oracle = segment.with_boxes(cells, boxes)
    inside = oracle[0, 2:6, 3:7]
    assert (inside == inside[0, 0]).all() and (oracle[0] == inside[0, 0]).sum() == 16
    # every label 0..K-1 is used: 9 cells cut by the box give 9 + 1 segments
    assert sorted(oracle[0].unique().tolist()) == list(range(10))
    # a box that is already a segment changes nothing but the labels' names
    assert sorted(oracle[1].unique().tolist()) == list(range(9))
    assert torch.equal(oracle[1] == oracle[1, 0, 0], cells[1] == 0)
    with pytest.raises(ValueError, match="boxes"):
        segment.with_boxes(cells, boxes[:1])


class _BrightPixels(torch.nn.Module):
    """A stand-in for the corruption detector: logit +20 where a pixel is bright (> 0.5),
    -20 elsewhere, so its scores are the bright pixels themselves."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, x):
        return self.scale * (x[:, :1] - 0.5)


def _two_squares() -> torch.Tensor:
    """Two images with a bright 5×5 and a bright 3×3 square on a dark background."""
    x = torch.zeros(2, 1, 16, 16)
    x[0, :, 2:7, 3:8] = 1.0
    x[0, :, 10:13, 10:13] = 1.0
    x[1, :, 9:14, 1:6] = 1.0
    x[1, :, 1:4, 11:14] = 1.0
    return x


def _best_iou(labels: torch.Tensor, region: torch.Tensor) -> float:
    """The IoU of the segment that best matches ``region`` (both [H, W])."""
    ious = [float(((labels == k) & region).sum() / ((labels == k) | region).sum())
            for k in range(int(labels.max()) + 1)]
    return max(ious)


@pytest.mark.parametrize("name", ["grid", "slic", "felzenszwalb", "quickshift", "texture",
                                  "learned"])
def test_every_segmenter_gives_each_image_the_labels_0_to_k_minus_1(name):
    x = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    x[1] = 0.0  # a blank image is a partition too
    make = (segment.CorruptionSegmenter(_BrightPixels(), n_segments=6) if name == "learned"
            else segment.get_segmenter(name))
    labels = make(x)
    assert labels.shape == (3, 20, 20) and labels.dtype == torch.long
    for b in range(3):
        assert labels[b].unique().tolist() == list(range(int(labels[b].max()) + 1))


def test_top_region_is_the_connected_region_with_the_largest_total_score():
    scores = torch.zeros(2, 5, 5)
    scores[0, 0, 0] = 1.0  # the peak, but alone
    scores[0, 3:5, 3:5] = 0.9  # four pixels: total 3.6
    scores[0, 2, 0] = 0.2  # below 0.3 · 1.0
    scores[1, 2, 2] = 0.5
    region = segment.top_region(scores, relative=0.3)
    expected = torch.zeros(2, 5, 5, dtype=torch.bool)
    expected[0, 3:5, 3:5] = True
    expected[1, 2, 2] = True
    assert torch.equal(region, expected)
    assert not segment.top_region(torch.zeros(1, 4, 4)).any()  # nothing above a zero peak
    with pytest.raises(ValueError, match="relative must be in"):
        segment.top_region(scores, relative=1.5)


def test_learned_segmenter_makes_the_most_suspicious_region_one_segment():
    x = _two_squares()
    # one slic segment: only the detector's region can cut the image
    segmenter = segment.CorruptionSegmenter(_BrightPixels(), n_segments=1)
    labels = segmenter(x)
    assert segment.num_segments(labels).tolist() == [2, 2]
    for b, (rows, cols) in enumerate([(slice(2, 7), slice(3, 8)), (slice(9, 14), slice(1, 6))]):
        square = torch.zeros(16, 16, dtype=torch.bool)
        square[rows, cols] = True  # the larger square holds the larger total score
        assert _best_iou(labels[b], square) == 1.0
    # an image gets the same segments alone as in a batch
    assert torch.equal(segmenter(x[1:]), labels[1:])


def test_texture_segmenter_isolates_a_square_of_different_texture():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=g) * 0.6 + 0.2  # uniform noise, mean 0.5
    x[0, :, 8:18, 10:20] = 0.5  # a flat square of the same mean intensity
    x[1, :, 5:15, 12:22] = 0.5 + 0.05 * torch.randn(1, 10, 10, generator=g)  # a smooth one
    texture, slic = segment.texture(x), segment.slic(x)
    for b, (top, left) in enumerate([(8, 10), (5, 12)]):
        square = torch.zeros(28, 28, dtype=torch.bool)
        square[top:top + 10, left:left + 10] = True
        # about 0.7 for texture statistics; intensities alone follow the speckles (0.2)
        assert _best_iou(texture[b], square) > 0.6
        assert _best_iou(slic[b], square) < 0.3


def test_segment_means_are_each_segments_mean_and_zero_past_its_segments():
    from uattr.ops.segment import segment_means

    segments = torch.tensor([[[0, 0, 1], [2, 2, 2]],
                             [[0, 1, 1], [0, 1, 1]]])  # image 1 has 2 segments, image 0 has 3
    values = torch.tensor([[[1.0, 3.0, 5.0], [0.0, 3.0, 9.0]],
                           [[2.0, 4.0, 6.0], [4.0, 0.0, 2.0]]])
    expected = torch.tensor([[2.0, 5.0, 4.0], [3.0, 3.0, 0.0]])  # by hand
    torch.testing.assert_close(segment_means(values, segments), expected, rtol=0, atol=1e-6)
