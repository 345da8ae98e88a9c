"""FullGrad of the uncertainty, and the bias-gradients it shares with UA-Backprop.

FullGrad (Srinivas & Fleuret 2019) splits a network's output into input-gradient and
bias-gradient terms. Applied to ``U`` (papers/001 A.2):

    S(x) = ψ(|∇_x U ⊙ x|) + Σ_l Σ_c up(ψ(|∇_{f_l} U ⊙ b_l|))_c

where ``f_l`` is the output of layer l with a bias ``b_l`` added at every position: a
biased ``nn.Conv2d``, or a ``nn.BatchNorm2d`` in eval mode, whose implicit bias is
``b = β - γ·μ / sqrt(σ² + ε)`` (it computes ``γ·(f - μ)/sqrt(σ² + ε) + β`` with its
running statistics; FullGrad counts it, and a ResNet's convolutions have no bias of their
own). ``∇_{f_l} U ⊙ b_l`` is the bias-gradient at each position, ``ψ`` takes absolute
values and rescales each image's tensor to [0, 1] (min-max, as the FullGrad code does),
``up`` is a bilinear upsampling to the input size, and channels are summed. For a
piecewise-linear network the terms are complete: ``s(x) = Σ ∇_x s ⊙ x + Σ_l Σ ∇_{f_l} s ⊙
b_l``. Captum has no FullGrad, hence this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import UncertaintyAttribution, require_layers

__all__ = ["ConvOutputs", "FullGrad", "conv_bias_gradients", "has_bias", "implicit_bias"]


def implicit_bias(layer: nn.Module) -> Tensor:
    """``[C]``: the bias a layer adds at every position: a conv's own, or an eval-mode
    BatchNorm's ``β - γ·μ / sqrt(σ² + ε)`` (``γ = 1, β = 0`` when it is not affine)."""
    if isinstance(layer, nn.Conv2d):
        return layer.bias.detach()
    scale = (layer.running_var + layer.eps).rsqrt()
    if layer.affine:
        return (layer.bias - layer.weight * layer.running_mean * scale).detach()
    return -(layer.running_mean * scale)


def has_bias(module: nn.Module) -> bool:
    """A biased ``nn.Conv2d``, or a ``nn.BatchNorm2d`` that uses its running statistics (in
    training mode its bias would depend on the batch: not a bias of the network)."""
    if isinstance(module, nn.Conv2d):
        return module.bias is not None
    return (isinstance(module, nn.BatchNorm2d) and not module.training
            and module.running_mean is not None)


class ConvOutputs:
    """Context manager recording ``(layer, output)`` of every layer of a model, called
    inside it, that adds a bias at every position (:func:`has_bias`: biased convolutions,
    eval-mode BatchNorms); each call of a layer is one record."""

    def __init__(self, model: object) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError("the posterior must be an nn.Module for the bias-gradient (FullGrad) "
                             "terms, whose conv layers are hooked; wrap the members with "
                             "uattr.as_posterior")
        self.model = model

    def __enter__(self) -> ConvOutputs:
        # which layers count is read when the model runs (eval or training mode then)
        self.outputs: list[tuple[nn.Module, Tensor]] = []
        self.hooks = [layer.register_forward_hook(self._record)
                      for layer in self.model.modules()
                      if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d))]
        return self

    def _record(self, layer: nn.Module, _inputs: object, output: Tensor) -> None:
        if has_bias(layer):
            self.outputs.append((layer, output))

    def __exit__(self, *exc: object) -> None:
        for hook in self.hooks:
            hook.remove()

    @property
    def tensors(self) -> list[Tensor]:
        return [out for _, out in self.outputs]


def conv_bias_gradients(
    model: nn.Module, scalar: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """``∇_x s`` and the bias-gradients ``∇_{f_l} s ⊙ b_l`` of every biased layer
    (:class:`ConvOutputs`).

    ``scalar(x) -> [B]`` must run ``model``'s layers. Returns the input gradient
    ``[B, C, H, W]`` and one ``[B, C_l, H_l, W_l]`` tensor per biased layer call.
    """
    x = x.detach().requires_grad_()
    with ConvOutputs(model) as hooked:
        value = scalar(x).sum()
    grads = torch.autograd.grad(value, [x, *hooked.tensors], allow_unused=True)
    bias_grads = [
        (torch.zeros_like(out) if g is None else g) * implicit_bias(layer).view(1, -1, 1, 1)
        for (layer, out), g in zip(hooked.outputs, grads[1:], strict=True)
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
    """FullGrad of U: input-gradient term plus the bias-gradient terms of the biased
    convolutions and of the eval-mode BatchNorms (their implicit biases).

    The posterior must be an ``nn.Module`` (its layers are hooked).
    """

    name = "fullgrad"

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach()
        require_layers(self.posterior, "FullGrad", "biased nn.Conv2d and BatchNorm layers",
                       nn.Conv2d)
        input_grad, bias_grads = conv_bias_gradients(self.posterior, self.uncertainty_of, x)
        saliency = _min_max(input_grad * x).sum(1)  # [B, H, W]
        for bias_grad in bias_grads:
            up = F.interpolate(_min_max(bias_grad), size=x.shape[-2:], mode="bilinear",
                               align_corners=True)
            saliency = saliency + up.sum(1)
        return saliency
