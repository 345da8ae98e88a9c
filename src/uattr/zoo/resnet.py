"""ResNet-18 for 32×32 images (papers/001 A.1: the CIFAR-10 model), in plain PyTorch.

The CIFAR variant of He et al.'s network: a 3×3 stem with no max-pool (a 7×7 stride-2
stem and a pool would shrink a 32×32 image to 8×8 before the first block), four stages
of two basic blocks with 64, 128, 256 and 512 channels, global average pooling and one
fully connected layer, as the paper's "ResNet18 for feature extraction, a single fully
connected layer for classification". About 11 M parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a shortcut (a 1×1 conv-BN where the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """``[B, C, H, W] -> logits [B, num_classes]``; ``image_size`` is accepted for the same
    signature as :class:`~uattr.zoo.models.SmallCNN` (the pooling makes any size work)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10,
                 image_size: int = 32) -> None:
        super().__init__()
        del image_size  # global average pooling: no layer depends on it
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        stages, width = [], 64
        for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(width, channels, stride), BasicBlock(channels, channels, 1)]
            width = channels
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(self.stem(x))  # [B, 512, H/8, W/8]
        return self.classifier(self.pool(h).flatten(1))  # [B, num_classes]
