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
