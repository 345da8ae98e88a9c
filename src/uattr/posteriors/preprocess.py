"""What a model saw in training, kept out of the images that uattr explains.

Images and maps stay in [0, 1] image space (the blur, the segments, the figures and the
benchmarks' corruptions all live there); the network sees what it was trained on. A
torchvision-style pipeline normalises with a per-channel mean and standard deviation:
:class:`Normalize` does the same as a frozen 1×1 convolution, so that the methods that
account for every bias of a network (FullGrad, UA-Backprop's FullGrad path) account for
the normalisation's offset too. Any other transform goes in as a callable
(:class:`Preprocessed`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Normalize", "Preprocessed", "preprocessing"]


class Normalize(nn.Conv2d):
    """``(x − mean) / std`` per channel, ``[B, C, H, W] -> [B, C, H, W]``: a 1×1
    convolution with weight ``diag(1 / std)`` and bias ``−mean / std``, frozen."""

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.numel() == 0 or mean.shape != std.shape:
            raise ValueError("normalize must be (mean, std) with one value per channel in "
                             f"each, got {mean.numel()} means and {std.numel()} stds")
        if not bool(torch.isfinite(mean).all()) or not bool((std > 0).all()):
            raise ValueError(f"normalize: std must be > 0 and every value finite, got mean "
                             f"{mean.tolist()}, std {std.tolist()}")
        channels = mean.numel()
        super().__init__(channels, channels, 1)
        with torch.no_grad():
            self.weight.copy_(torch.diag(1 / std)[:, :, None, None])
            self.bias.copy_(-mean / std)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"normalize has {self.in_channels} channels (mean and std), but "
                             f"the images are {tuple(x.shape)}: expected [B, "
                             f"{self.in_channels}, H, W]")
        return super().forward(x)


class Preprocessed(nn.Module):
    """``model(preprocess(x))``: a network with what it expects of its input put in front,
    as one module (its layers stay reachable for the methods that hook them)."""

    def __init__(self, model: Callable[[Tensor], Tensor],
                 preprocess: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.preprocess(x))


def preprocessing(normalize: tuple[Sequence[float], Sequence[float]] | None,
                  preprocess: Callable[[Tensor], Tensor] | None
                  ) -> Callable[[Tensor], Tensor] | None:
    """The transform ``as_posterior`` puts in front of the model: :class:`Normalize` of
    ``normalize = (mean, std)``, or ``preprocess``, or ``None``; never both."""
    if normalize is not None and preprocess is not None:
        raise ValueError("normalize and preprocess both transform the input; give one "
                         "(a preprocess can normalise itself)")
    if preprocess is not None and not callable(preprocess):
        raise ValueError(f"preprocess must be a callable x -> x, got "
                         f"{type(preprocess).__name__}")
    if normalize is None:
        return preprocess
    if not isinstance(normalize, tuple | list) or len(normalize) != 2:
        raise ValueError("normalize must be (mean, std), for example ((0.485, 0.456, 0.406), "
                         f"(0.229, 0.224, 0.225)), got {normalize!r}")
    return Normalize(*normalize)
