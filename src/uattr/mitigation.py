"""Uncertainty mitigation with attention (papers/002 §4, eq. 12, and §5.2.2).

An uncertainty map ``M(x)`` becomes an attention

    A(x) = (1 - M(x)) ⊙ M(x)                                          # eq. 12

that keeps what is informative but not what causes the uncertainty (A is 0 where M is
0 or 1), and a fresh classifier is trained with its last convolutional features scaled
by ``1 + α·A`` (A down-sampled to their size), or, in the paper's ablation, its input.

**Normalising M.** The paper passes M through an element-wise softmax over the pixels
"to ensure consistency in scale across methods". Taken literally, a softmax over 784
pixels gives values near 1/784, so ``A ≈ M`` and eq. 12 does nothing; and a softmax is
not scale-free (UA-Backprop's map, which sums to U(x) ≈ 0.1, would come out uniform).
uattr keeps the softmax but makes it mean what the paper says:

    m̂ = m / max_pixels |m|          (the same scale for every method)
    M = softmax_pixels(m̂ / T) / max_pixels softmax_pixels(m̂ / T)   = exp((m̂ - max m̂) / T)

so M is 1 at the pixel of highest attribution and falls off with temperature ``T``
(0.25: a pixel at half the top attribution gets M ≈ 0.14, one at zero M ≈ 0.02), and
``A`` peaks (at 1/4) where M = 1/2, just below the most attributed pixels. A map that is
0 everywhere gives M = 1 and A = 0: no information, no attention.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .zoo.models import SmallCNN

__all__ = ["ATTENTION_SPACES", "AttentionCNN", "attention", "normalise_map", "with_attention"]

ATTENTION_SPACES = ("latent", "input")


def normalise_map(maps: Tensor, temperature: float = 0.25) -> Tensor:
    """``M [B, H, W]`` in (0, 1] from any maps ``[B, H, W]``: divided by their largest
    magnitude, a softmax over the pixels at ``temperature``, rescaled to peak at 1."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be [B, H, W], got shape {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps must be finite")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scale = maps.abs().amax((1, 2), keepdim=True)
    scaled = torch.where(scale > 0, maps / scale.clamp_min(1e-30), torch.zeros_like(maps))
    soft = F.softmax(scaled.flatten(1) / temperature, dim=1)  # [B, H·W]
    return (soft / soft.amax(1, keepdim=True)).view_as(maps)


def attention(normalised: Tensor) -> Tensor:
    """``A = (1 - M) ⊙ M`` (eq. 12) of ``M [B, H, W]`` in [0, 1]."""
    if normalised.min() < 0 or normalised.max() > 1:
        raise ValueError("normalised must lie in [0, 1] (see normalise_map)")
    return (1 - normalised) * normalised


def with_attention(images: Tensor, attention_maps: Tensor) -> Tensor:
    """``[B, C + 1, H, W]``: the attention travels as one more channel of the input, so that
    the ensemble's training loop and accuracy function serve :class:`AttentionCNN`
    unchanged."""
    expected = (images.shape[0], *images.shape[2:])
    if tuple(attention_maps.shape) != expected:
        raise ValueError(f"attention_maps must be [B, H, W] = {expected}, got "
                         f"{tuple(attention_maps.shape)}")
    return torch.cat([images, attention_maps[:, None].to(images.dtype)], 1)


class AttentionCNN(nn.Module):
    """:class:`~uattr.zoo.models.SmallCNN` with an attention ``A [B, H, W]`` (the last input
    channel, :func:`with_attention`):

    - ``space="latent"`` (the paper's): the last convolution's feature maps (after its
      ReLU) ``h [B, K, h, w]`` become ``(1 + α·A↓) ⊙ h``, with ``A↓`` the attention
      averaged down to ``h × w`` (adaptive average pooling);
    - ``space="input"`` (the ablation): the image becomes ``(1 + α·A) ⊙ x``.

    With ``alpha = 0`` it computes exactly the plain network's logits.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, *,
                 alpha: float = 1.0, space: str = "latent") -> None:
        super().__init__()
        if space not in ATTENTION_SPACES:
            raise ValueError(f"space must be one of {ATTENTION_SPACES}, got {space!r}")
        self.net = SmallCNN(in_channels, num_classes, image_size)
        self.alpha, self.space = float(alpha), space

    def forward(self, x_and_attention: Tensor) -> Tensor:
        x, a = x_and_attention[:, :-1], x_and_attention[:, -1:]  # [B, C, H, W], [B, 1, H, W]
        x = x.contiguous(memory_format=torch.channels_last)
        if self.space == "input":
            x = (1 + self.alpha * a) * x
        features = self.net.features
        h = features[:4](x)  # the last convolution and its ReLU: [B, K, h, w]
        if self.space == "latent":
            h = (1 + self.alpha * F.adaptive_avg_pool2d(a, h.shape[-2:])) * h
        return self.net.classifier(features[4:](h))  # [B, num_classes]
