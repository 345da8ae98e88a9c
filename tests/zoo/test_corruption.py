"""The corruption detectors' training data (pastes, retouches, the rotated patch neither
saw), and their training on a few thousand MNIST digits."""

import re

import pytest
import torch
from torch.nn import functional as F

from uattr.zoo import data
from uattr.zoo.corruption import (
    CorruptionConfig,
    CorruptionNet,
    _validation_set,
    choose_relative,
    load_or_train_corruption_net,
    train_corruption_net,
)
from uattr.zoo.tampering import CHANGED, paste, random_shapes, retouch, tamper


def test_random_shapes_are_seeded_and_never_the_benchmarks_squares():
    first = random_shapes(64, 28, 28, torch.Generator().manual_seed(3))
    again = random_shapes(64, 28, 28, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    for mask in first[:, 0]:
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        if len(rows) == 0:
            continue
        # a mask that filled its bounding box would be an axis-aligned rectangle
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert mask.sum() < box or box < 9


def test_paste_changes_the_image_inside_the_mask_only():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(200, 1, 12, 12, generator=g)
    donors = torch.rand(50, 1, 12, 12, generator=g) + 2.0  # values no image has
    tampered, mask = paste(images, donors, torch.Generator().manual_seed(1))
    outside = mask == 0
    assert torch.equal(tampered[outside], images[outside])
    inside = tampered[mask == 1]
    assert ((inside == 0) | (inside >= 2.0)).all()  # erased, or a donor's pixels
    assert (inside == 0).any() and (inside >= 2.0).any()
    empty = mask.flatten(1).sum(1) == 0  # the untouched share (0.2), up to sampling
    assert 0.1 < float(empty.float().mean()) < 0.35


def test_training_makes_the_detector_find_held_out_corruptions(tmp_path):
    mnist = data.load("mnist", "train")
    train = data.Split(mnist.images[:2000], mnist.labels[:2000])
    held_out = data.load("mnist", "valid").images[:500]
    tampered, mask = paste(held_out, held_out, torch.Generator().manual_seed(7))
    untrained = CorruptionNet()
    config = CorruptionConfig(epochs=3, width=8)
    logs = []
    net, info = load_or_train_corruption_net("mnist", train, config=config, cache=tmp_path,
                                             log=logs.append)
    with torch.no_grad():
        before = F.binary_cross_entropy_with_logits(untrained(tampered), mask)
        after = F.binary_cross_entropy_with_logits(net(tampered), mask)
    # untrained logits are near 0 (loss near ln 2); three short epochs learn at least how
    # rare tampered pixels are (the full training of 6 epochs on 50 000 images goes on
    # to beat the best constant guess: loss 0.14 against 0.21)
    assert after < 0.5 * before
    # cached: the second call loads the same weights without training
    logs.clear()
    again, again_info = load_or_train_corruption_net("mnist", train, config=config,
                                                     cache=tmp_path, log=logs.append)
    assert not any("training" in line for line in logs)
    assert not info["shipped"] and again_info["weights"] == info["weights"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 again.state_dict().values(), strict=True))


def test_training_is_seeded():
    mnist = data.load("mnist", "train")
    few = data.Split(mnist.images[:256], mnist.labels[:256])
    config = CorruptionConfig(epochs=1, width=4)
    first = train_corruption_net(few, config, log=lambda _: None)
    second = train_corruption_net(few, config, log=lambda _: None)
    other = train_corruption_net(few, CorruptionConfig(epochs=1, width=4, seed=1),
                                 log=lambda _: None)
    weights = lambda net: torch.cat([p.flatten() for p in net.parameters()])  # noqa: E731
    assert torch.equal(weights(first), weights(second))
    assert not torch.equal(weights(first), weights(other))


@pytest.mark.parametrize("channels", [1, 3])
def test_retouch_changes_the_images_own_pixels_and_its_mask_is_where_they_changed(channels):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(400, channels, 20, 24, generator=g)
    tampered, mask = retouch(images, torch.Generator().manual_seed(1))
    assert tampered.shape == images.shape and mask.shape == (400, 1, 20, 24)
    assert tampered.min() >= 0 and tampered.max() <= 1
    change = (tampered - images).abs().amax(1, keepdim=True)
    assert torch.equal(mask, (change > CHANGED).float())
    assert float(change[mask == 0].max()) <= CHANGED
    # every image changed somewhere but the untouched share (0.2, up to sampling)
    empty = mask.flatten(1).sum(1) == 0
    assert 0.1 < float(empty.float().mean()) < 0.4
    again = retouch(images, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], tampered)
    with pytest.raises(ValueError, match="family must be one of"):
        tamper("swap", images, images, g)


def test_the_rotated_patch_turns_the_images_own_square_where_patch_swap_puts_its_own():
    images = torch.rand(6, 3, 16, 20, generator=torch.Generator().manual_seed(2))
    turned, boxes = data.patch_rotate(images, patch_size=5, seed=4)
    _, swap_boxes, _ = data.patch_swap(images, images, patch_size=5, seed=4)
    assert torch.equal(boxes, swap_boxes)
    for b, (top, left, h, w) in enumerate(boxes.tolist()):
        patch = images[b, :, top:top + h, left:left + w]
        assert torch.equal(turned[b, :, top:top + h, left:left + w],
                           torch.rot90(patch, 1, dims=(1, 2)))
        outside = torch.ones(16, 20, dtype=torch.bool)
        outside[top:top + h, left:left + w] = False
        assert torch.equal(turned[b][:, outside], images[b][:, outside])
    with pytest.raises(ValueError, match="patch_size must be in"):
        data.patch_rotate(images, patch_size=17)


def test_the_retouch_detector_keeps_its_epoch_of_lowest_validation_loss():
    mnist = data.load("mnist", "train")
    few = data.Split(mnist.images[:512], mnist.labels[:512])
    valid = data.load("mnist", "valid")
    config = CorruptionConfig(epochs=3, width=4, family="retouch", keep_best=True)
    logs: list[str] = []
    net = train_corruption_net(few, config, logs.append, valid=valid)
    losses = [float(m) for line in logs for m in re.findall(r"validation loss ([0-9.]+)", line)]
    assert len(losses) == 3
    tampered, mask = _validation_set(valid, config)
    with torch.no_grad():
        kept = float(F.binary_cross_entropy_with_logits(net(tampered), mask))
    assert kept == pytest.approx(min(losses), abs=6e-5)  # the log prints 4 decimals
    relative = choose_relative(net, valid, config)
    assert relative in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    with pytest.raises(ValueError, match="valid: keep_best"):
        train_corruption_net(few, config, logs.append)
    with pytest.raises(ValueError, match="family must be one of"):
        CorruptionConfig(family="swap")
