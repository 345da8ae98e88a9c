"""The corruption detector's training data, and its training on 3000 MNIST digits."""

import torch
from torch.nn import functional as F

from uattr.zoo import data
from uattr.zoo.corruption import (
    CorruptionConfig,
    CorruptionNet,
    corrupt,
    load_or_train_corruption_net,
    random_shapes,
    train_corruption_net,
)


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


def test_corrupt_changes_the_image_inside_the_mask_only():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(200, 1, 12, 12, generator=g)
    donors = torch.rand(50, 1, 12, 12, generator=g) + 2.0  # values no image has
    tampered, mask = corrupt(images, donors, torch.Generator().manual_seed(1))
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
    tampered, mask = corrupt(held_out, held_out, torch.Generator().manual_seed(7))
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
