"""Layer-wise relevance propagation with the rules of CovLRP (Bley, Lapuschkin, Samek and
Montavon, Pattern Recognition 2025), on Captum's ``LRP``.

The authors' experiments explain each member with LRP-γ: the γ-rule on the hidden layers
(γ = 0.2 on an MLP's linear layers; on a CNN's, γ = 0.1 on its linear layers and 2γ on its
convolutions), LRP-0 on the output layer, activations and dropout passed. The γ-rule
propagates a layer's relevance ``R_j`` to its inputs ``a_i`` as

    R_i = Σ_j a_i w⁺γ_ij R_j / (Σ_i' a_i' w⁺γ_i'j + b_j),      w⁺γ = w + γ · max(w, 0)

which favours the evidence for the output; with γ = 0 it is LRP-0, which on ReLU
networks (with max-pools, biases or not) is Gradient×Input.

Captum keeps the rules it is given on the layers and changes weights while it runs, so
the rules go on a copy of the network; and it cannot pass relevance through a reshaping
layer (``nn.Flatten``), so in the copy each flatten is a reshape inside a module that
Captum looks through.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from .checks import check_real

__all__ = ["lrp_relevance"]


class _LookedThrough(nn.Module):
    """A flatten Captum's LRP can pass: it recurses into a module with children and finds
    only a dropout of rate 0 (a layer it passes relevance through); the reshape itself is
    plain autograd, which carries the relevance back to the input's shape."""

    def __init__(self, flatten: nn.Flatten) -> None:
        super().__init__()
        self.start, self.end = flatten.start_dim, flatten.end_dim
        self.passed = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.passed(x.flatten(self.start, self.end))


def _with_rules(net: nn.Module, gamma: float, conv_gamma: float) -> nn.Module:
    """A copy of ``net`` in eval mode with CovLRP's rules on its layers."""
    from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule

    explained = copy.deepcopy(net).eval()
    for name, module in list(explained.named_modules()):
        if isinstance(module, nn.Flatten):
            parent, _, child = name.rpartition(".")
            setattr(explained.get_submodule(parent), child, _LookedThrough(module))
    linears = [m for m in explained.modules() if isinstance(m, nn.Linear)]
    for layer in linears[:-1]:
        layer.rule = GammaRule(gamma=gamma)
    if linears:
        linears[-1].rule = EpsilonRule()  # ε = 1e-9: LRP-0, kept off zero
    for layer in explained.modules():
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            layer.rule = GammaRule(gamma=conv_gamma)
        elif isinstance(layer, nn.AdaptiveMaxPool1d | nn.AdaptiveMaxPool2d):
            layer.rule = EpsilonRule()  # as Captum's rule of a fixed max-pool
    return explained


def lrp_relevance(net: nn.Module, x: Tensor, target: Tensor, *, gamma: float,
                  conv_gamma: float) -> Tensor:
    """LRP relevance ``[B, *x.shape[1:]]`` of ``net``'s output ``target [B]`` (its
    pre-softmax output: a class's logit, a regression head's mean) at inputs ``x``, with
    the γ-rule (``gamma`` on hidden linear layers, ``conv_gamma`` on convolutions) and
    LRP-0 on the last linear layer (module docstring). Sums to the output less what the
    biases absorb. A ``ValueError`` for a network with a layer Captum's LRP has no rule for.
    """
    from captum.attr import LRP

    check_real("gamma", gamma, at_least=0)
    check_real("conv_gamma", conv_gamma, at_least=0)
    explained = _with_rules(net, gamma, conv_gamma)
    try:
        relevance = LRP(explained).attribute(x.detach().clone().requires_grad_(True),
                                             target=target)
    except TypeError as error:  # Captum's word for a layer without a rule
        raise ValueError(f"CovLRP explains networks built of layers Captum's LRP has rules "
                         f"for (linear, convolution, pooling, batch norm, ReLU, Tanh, "
                         f"dropout, flatten); {type(net).__name__}: {error}") from error
    return relevance.detach()
