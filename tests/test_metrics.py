"""Scores of a map: the box search, IoU and ADA of detection; the URR curves, MURR and
AUC-URR of the blurring test, against brute force and hand-computed values."""

import itertools

import pytest
import torch

from uattr.metrics import ada, blur_curves, box_iou, curve_scores, find_box


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


# ----------------------------------------------------------------- the blurring test
# 4×4 images; U(x) = 1 + Σ_p w_p x_p, and "blurring" sets a pixel to 0 (blurred = zeros).
# The map ranks pixels 0, 1, 2, 3 (flat index) highest, in that order.
WEIGHTS = torch.zeros(16)
WEIGHTS[:4] = torch.tensor([0.5, -0.25, 0.25, 0.0])
MAPS = torch.linspace(1, 0, 16).view(1, 4, 4)


def u_linear(x):
    return 1 + (x.flatten(1) * WEIGHTS).sum(1)


def test_urr_curve_keeps_the_best_reduction_so_far():
    x = torch.ones(1, 1, 4, 4)
    fractions, curves = blur_curves(u_linear, x, MAPS, 0.25, blurred=torch.zeros_like(x))
    # U: 1.5 -> 1.0 (pixel 0), 1.25 (pixel 1 raises it), 1.0, 1.0; URR 1/3, 1/6 -> max 1/3
    assert fractions.tolist() == [0, 1 / 16, 2 / 16, 3 / 16, 4 / 16]
    torch.testing.assert_close(curves, torch.tensor([[0, 1 / 3, 1 / 3, 1 / 3, 1 / 3]]))
    murr, auc = curve_scores(fractions, curves)
    # remaining 1, 2/3, 2/3, 2/3, 2/3 on 0, 1/4, 1/2, 3/4, 1: 1/4·((1 + 2/3)/2 + 3·2/3)
    torch.testing.assert_close(murr, torch.tensor([1 / 3]))
    torch.testing.assert_close(auc, torch.tensor([0.25 * (5 / 6 + 2)]))


def test_blurring_in_a_different_order_gives_a_different_curve():
    x = torch.ones(2, 1, 4, 4)
    maps = torch.stack([MAPS[0], MAPS[0].flip(-1)])  # image 1 starts with pixel 3 (w = 0)
    _, curves = blur_curves(u_linear, x, maps, 0.125, blurred=torch.zeros_like(x))
    # image 1 blurs pixels 3 then 2: U 1.5 -> 1.5 -> 1.25
    torch.testing.assert_close(curves, torch.tensor([[0, 1 / 3, 1 / 3], [0, 0, 1 / 6]]))


def test_a_large_budget_is_blurred_in_100_steps():
    x = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(1))
    fractions, curves = blur_curves(lambda z: 1 + z.flatten(1).sum(1), x, maps, 0.25)
    assert curves.shape == (1, 101)
    assert fractions[-1].item() == pytest.approx(400 / 1600)
    assert (curves.diff(dim=1) >= 0).all()  # a running maximum never falls


def test_bad_arguments_are_named():
    x = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="budget"):
        blur_curves(u_linear, x, MAPS, 0.0)
    with pytest.raises(ValueError, match="maps must have shape"):
        blur_curves(u_linear, x, MAPS[0], 0.1)
    with pytest.raises(ValueError, match=r"U\(x\) > 0"):
        blur_curves(lambda z: torch.zeros(z.shape[0]), x, MAPS, 0.1)


def test_every_curve_of_the_figure_can_be_told_apart():
    from uattr.viz import urr_curves

    fractions = torch.linspace(0, 0.05, 6)
    curves = {f"method {i}": (fractions, fractions * i) for i in range(11)}
    fig = urr_curves(curves)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(curves)
    looks = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(looks) == 11  # 11 methods, more than the 10 colours of the cycle
    fig.clf()
