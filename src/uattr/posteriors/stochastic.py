"""Stochastic layers behind the sampled posteriors of :mod:`uattr.uq`: DropConnect masks
and Flipout (mean-field Gaussian) layers.

Flipout (Wen et al. 2018) is written here rather than taken from a library: the one
maintained PyTorch implementation, bayesian-torch, requires torchvision (which would
replace the CPU torch of these machines), and it draws its sign flips per image from the
global RNG inside ``forward``, so a sample could not be frozen independently of the batch.

Each layer keeps its *mean* weight as ``weight`` (so that code that looks for
``nn.Conv2d`` / ``nn.Linear`` layers, like FullGrad's bias terms, still finds them), and
takes its noise from ``weight_noise`` when a posterior sets it: then it is one posterior
sample ``W = μ + σ ⊙ ε``, the same for every image of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DropConnect",
    "FlipoutConv2d",
    "FlipoutLinear",
    "dropconnect_weights",
    "flipout_kl",
    "flipout_layers",
    "to_flipout",
]


def dropconnect_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weights DropConnect drops: those of every ``nn.Linear`` and ``nn.Conv2d``
    (biases are kept), by their names in ``model.named_parameters()``."""
    weights = {f"{name}.weight" if name else "weight": module.weight
               for name, module in model.named_modules()
               if isinstance(module, nn.Linear | nn.Conv2d)}
    if not weights:
        raise ValueError("model: DropConnect needs at least one nn.Linear or nn.Conv2d layer")
    return weights


class DropConnect(nn.Module):
    """Trains ``model`` with DropConnect: in training mode every call drops each weight of
    its ``nn.Linear`` / ``nn.Conv2d`` layers with probability ``p`` (one mask per call,
    kept weights scaled by ``1 / (1 - p)``); in eval mode it is ``model`` itself. At
    inference :class:`uattr.MCDropConnect` draws the masks instead."""

    def __init__(self, model: nn.Module, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.model, self.p = model, p
        self.weight_names = list(dropconnect_weights(model))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return self.model(x)
        params = dict(self.model.named_parameters())
        masked = {name: F.dropout(params[name], self.p, training=True)
                  for name in self.weight_names}
        return torch.func.functional_call(self.model, masked, (x,))


class _Flipout:
    """What the two Flipout layers share: ``σ = softplus(ρ)``, the KL term, the noise."""

    weight: nn.Parameter
    weight_rho: nn.Parameter
    weight_noise: Tensor | None
    prior_sigma: float

    def _init_flipout(self, rho_init: float, prior_sigma: float) -> None:
        if prior_sigma <= 0:
            raise ValueError(f"prior_sigma must be > 0, got {prior_sigma}")
        self.weight_rho = nn.Parameter(torch.full_like(self.weight, rho_init))
        self.weight_noise = None
        self.prior_sigma = prior_sigma

    @property
    def weight_sigma(self) -> Tensor:
        return F.softplus(self.weight_rho)

    def kl(self) -> Tensor:
        """``KL(N(μ, σ²) || N(0, prior_sigma²))`` summed over the weights."""
        sigma, prior = self.weight_sigma, self.prior_sigma
        return (torch.log(prior / sigma) + (sigma**2 + self.weight**2) / (2 * prior**2)
                - 0.5).sum()

    def _flipout(self, x: Tensor, apply) -> Tensor:
        """``apply(x, W)``: a sample if ``weight_noise`` is set, the Flipout estimator in
        training (per-image sign flips ``s_in``, ``s_out`` decorrelate one shared draw
        ``ΔW``), the mean network otherwise."""
        if self.weight_noise is not None:
            return apply(x, self.weight + self.weight_sigma * self.weight_noise, True)
        mean = apply(x, self.weight, True)
        if not self.training:
            return mean
        delta = self.weight_sigma * torch.randn_like(self.weight)
        sign_in = torch.randint(0, 2, x.shape[:2], device=x.device).to(x.dtype) * 2 - 1
        sign_out = torch.randint(0, 2, mean.shape[:2], device=x.device).to(x.dtype) * 2 - 1
        expand = (...,) + (None,) * (x.ndim - 2)  # [B, C] -> [B, C, 1, 1] for convolutions
        return mean + apply(x * sign_in[expand], delta, False) * sign_out[expand]


class FlipoutLinear(nn.Linear, _Flipout):
    """``nn.Linear`` with a mean-field Gaussian weight; deterministic bias (as TFP's
    ``DenseFlipout``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rho_init: float = -5.0, prior_sigma: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias)
        self._init_flipout(rho_init, prior_sigma)

    def forward(self, x: Tensor) -> Tensor:
        return self._flipout(x, lambda z, w, bias: F.linear(z, w, self.bias if bias else None))


class FlipoutConv2d(nn.Conv2d, _Flipout):
    """``nn.Conv2d`` with a mean-field Gaussian weight; deterministic bias (as TFP's
    ``Convolution2DFlipout``)."""

    def __init__(self, *args, rho_init: float = -5.0, prior_sigma: float = 1.0,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_flipout(rho_init, prior_sigma)

    def forward(self, x: Tensor) -> Tensor:
        return self._flipout(
            x, lambda z, w, bias: self._conv_forward(z, w, self.bias if bias else None))


def to_flipout(model: nn.Module, *, rho_init: float = -5.0,
               prior_sigma: float = 1.0) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` (in place) by its Flipout
    layer, starting from the same mean weights; returns ``model``.

    ``rho_init = -5`` starts every σ at softplus(-5) ≈ 0.007, so that training begins
    close to the deterministic network."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d) and not isinstance(child, FlipoutConv2d):
            layer = FlipoutConv2d(child.in_channels, child.out_channels, child.kernel_size,
                                  stride=child.stride, padding=child.padding,
                                  dilation=child.dilation, groups=child.groups,
                                  bias=child.bias is not None, rho_init=rho_init,
                                  prior_sigma=prior_sigma)
        elif isinstance(child, nn.Linear) and not isinstance(child, FlipoutLinear):
            layer = FlipoutLinear(child.in_features, child.out_features,
                                  child.bias is not None, rho_init=rho_init,
                                  prior_sigma=prior_sigma)
        else:
            to_flipout(child, rho_init=rho_init, prior_sigma=prior_sigma)
            continue
        with torch.no_grad():
            layer.weight.copy_(child.weight)
            if child.bias is not None:
                layer.bias.copy_(child.bias)
        setattr(model, name, layer.to(child.weight.device))
    return model


def flipout_layers(model: nn.Module) -> list[FlipoutLinear | FlipoutConv2d]:
    """The Flipout layers of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, FlipoutLinear | FlipoutConv2d)]


def flipout_kl(model: nn.Module) -> Tensor:
    """The KL term of the ELBO: the sum of every Flipout layer's ``kl()``."""
    layers = flipout_layers(model)
    if not layers:
        raise ValueError("model has no Flipout layers; convert it with to_flipout")
    return torch.stack([layer.kl() for layer in layers]).sum()

