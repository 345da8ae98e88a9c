import itertools

import pytest
import torch

from uattr.metrics import ada, box_iou, find_box


def test_find_box_matches_brute_force_on_random_maps():
    torch.manual_seed(0)
    maps = torch.rand(6, 12, 11)
    size = 4
    found = find_box(maps, size)
    for b in range(6):
        best = max(
            itertools.product(range(12 - size + 1), range(11 - size + 1)),
            key=lambda p: maps[b, p[0] : p[0] + size, p[1] : p[1] + size].double().mean(),
        )
        assert found[b].tolist() == [best[0], best[1], size, size]


def test_iou_by_hand():
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0, 5, 10, 10], [0, 0, 10, 10], [20, 20, 10, 10]])
    assert box_iou(a, b).tolist() == pytest.approx([50 / 150, 1.0, 0.0])


def test_ada_counts_iou_above_half():
    assert ada(torch.tensor([0.6, 0.5, 0.2, 0.9])) == 0.5


def test_find_box_rejects_nan_and_oversized_boxes():
    with pytest.raises(ValueError, match="NaN"):
        find_box(torch.full((1, 5, 5), float("nan")), 2)
    with pytest.raises(ValueError, match="size must fit"):
        find_box(torch.zeros(1, 5, 5), 6)
