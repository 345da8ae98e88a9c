"""FullGrad of the uncertainty, and the bias-gradients it shares with UA-Backprop.

FullGrad (Srinivas & Fleuret 2019) splits a network's output into input-gradient and
bias-gradient terms. Applied to ``U`` (papers/001 A.2):

    S(x) = ψ(|∇_x U ⊙ x|) + Σ_l Σ_c up(ψ(|∇_{f_l} U ⊙ b_l|))_c

where ``f_l`` is the output of conv layer l (its bias ``b_l`` is added at every position,
so ``∇_{f_l} U ⊙ b_l`` is the bias-gradient at each position), ``ψ`` takes absolute values
and rescales each image's tensor to [0, 1] (min-max, as the FullGrad code does), ``up``
is a bilinear upsampling to the input size, and channels are summed. Captum has no
FullGrad, hence this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import UncertaintyAttribution, require_layers

__all__ = ["ConvOutputs", "FullGrad", "conv_bias_gradients"]


class ConvOutputs:
    """Context manager recording ``(layer, output)`` of every biased ``nn.Conv2d`` of a
    model called inside it (each call of a layer is one record)."""

    def __init__(self, model: object) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError("the posterior must be an nn.Module for the bias-gradient (FullGrad) "
                             "terms, whose conv layers are hooked; wrap the members with "
                             "uattr.as_posterior")
        self.convs = [m for m in model.modules()
                      if isinstance(m, nn.Conv2d) and m.bias is not None]
        self.outputs: list[tuple[nn.Conv2d, Tensor]] = []

    def __enter__(self) -> ConvOutputs:
        self.hooks = [conv.register_forward_hook(
            lambda m, _inp, out: self.outputs.append((m, out))) for conv in self.convs]
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self.hooks:
            hook.remove()

    @property
    def tensors(self) -> list[Tensor]:
        return [out for _, out in self.outputs]


def conv_bias_gradients(
    model: nn.Module, scalar: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """``∇_x s`` and the bias-gradients ``∇_{f_l} s ⊙ b_l`` of every biased ``nn.Conv2d``.

    ``scalar(x) -> [B]`` must run ``model``'s conv layers. Returns the input gradient
    ``[B, C, H, W]`` and one ``[B, C_l, H_l, W_l]`` tensor per conv layer call.
    """
    x = x.detach().requires_grad_()
    with ConvOutputs(model) as hooked:
        value = scalar(x).sum()
    grads = torch.autograd.grad(value, [x, *hooked.tensors], allow_unused=True)
    bias_grads = [
        (torch.zeros_like(out) if g is None else g) * conv.bias.detach().view(1, -1, 1, 1)
        for (conv, out), g in zip(hooked.outputs, grads[1:], strict=True)
    ]
    input_grad = torch.zeros_like(x) if grads[0] is None else grads[0]
    return input_grad, bias_grads


def _min_max(t: Tensor) -> Tensor:
    """|t| rescaled to [0, 1] per image over all its other axes (FullGrad's ψ)."""
    t = t.abs()
    flat = t.flatten(1)
    low = flat.min(1).values.view(-1, *[1] * (t.ndim - 1))
    high = flat.max(1).values.view(-1, *[1] * (t.ndim - 1))
    return (t - low) / (high - low).clamp_min(torch.finfo(t.dtype).tiny)


class FullGrad(UncertaintyAttribution):
    """FullGrad of U: input-gradient term plus the conv layers' bias-gradient terms.

    The posterior must be an ``nn.Module`` (its ``nn.Conv2d`` layers are hooked);
    BatchNorm's implicit biases are not included.
    """

    name = "fullgrad"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach()
        require_layers(self.posterior, "FullGrad", "biased nn.Conv2d layers", nn.Conv2d)
        input_grad, bias_grads = conv_bias_gradients(self.posterior, self.uncertainty_of, x)
        saliency = _min_max(input_grad * x).sum(1)  # [B, H, W]
        for bias_grad in bias_grads:
            up = F.interpolate(_min_max(bias_grad), size=x.shape[-2:], mode="bilinear",
                               align_corners=True)
            saliency = saliency + up.sum(1)
        return saliency
