"""How many forward and backward passes an attribution method spends (papers/000 Table 5).

A **forward pass** is one image through the whole posterior (all S samples); a
**backward pass** is one vector-Jacobian product of the posterior's output for one image,
back to whatever the method differentiates (the input, a mask, a blur width). A backward
call over a batch of B images is B backward passes; a call with K batched cotangents
(``torch.autograd.grad(..., is_grads_batched=True)``) is K·B, which the method declares
with :func:`batched_cotangents` because autograd hooks see one call either way.

The counts come from hooks on the posterior's networks, so they cover what Captum does
inside its classes as well as this project's own loops; a method that runs copies of the
networks, which no hook sees (CovLRP's LRP), declares those passes with
:func:`declare_passes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .sampled import SampledPosterior

__all__ = ["PassCounter", "batched_cotangents", "declare_passes", "uncounted"]

_COTANGENTS: list[int] = [1]  # a stack: the innermost batched_cotangents wins
_UNCOUNTED: list[bool] = [False]
_OPEN: list[PassCounter] = []  # the counters open now, which declared passes reach


@contextmanager
def uncounted() -> Iterator[None]:
    """Passes made inside are not the method's work (a check of the posterior itself)
    and no counter counts them."""
    _UNCOUNTED.append(True)
    try:
        yield
    finally:
        _UNCOUNTED.pop()


@contextmanager
def batched_cotangents(k: int) -> Iterator[None]:
    """Declare that the backward calls inside push ``k`` cotangents at once."""
    _COTANGENTS.append(k)
    try:
        yield
    finally:
        _COTANGENTS.pop()


def declare_passes(forward: float, backward: float) -> None:
    """Add ``forward`` and ``backward`` passes (images through the whole posterior) to
    every open counter: the work a method does on copies of the posterior's networks,
    which the counters' hooks cannot see."""
    if _UNCOUNTED[-1]:
        return
    for counter in _OPEN:
        if counter.available:
            counter.forward += forward
            counter.backward += backward


def _networks(posterior: object) -> tuple[list[nn.Module], int]:
    """The modules one posterior call runs, and how many times one image goes through
    them in all: an ensemble's members (once each), a sampled posterior's network (once
    per sample, whether the call is ``forward`` or ``logits``), a wrapped module, or the
    posterior itself when it is a module; ``([], 0)`` for a bare callable."""
    members = getattr(posterior, "members", None)
    if isinstance(members, nn.ModuleList) and len(members) > 0:
        return list(members), len(members)
    if isinstance(posterior, SampledPosterior):
        return [posterior.model], posterior.num_samples  # S runs of one network
    fn = getattr(posterior, "fn", None)
    if isinstance(fn, nn.Module):
        return [fn], 1
    if isinstance(posterior, nn.Module):
        return [posterior], 1
    return [], 0


class PassCounter:
    """Context manager counting the passes made through ``posterior`` while it is open.

    >>> with PassCounter(posterior) as count:
    ...     maps = method.attribute(x)
    >>> count.forward / len(x), count.backward / len(x)   # passes per image

    ``available`` is False for a posterior that is a bare callable or runs TorchScript
    modules (nothing to hook: TorchScript takes no forward hooks); its counts then stay 0.
    ``also``: networks a method runs with the posterior at every step (CLUE's decoder);
    one pass then goes through them and the posterior together, so an image through the
    decoder and the posterior counts as one forward pass.
    """

    def __init__(self, posterior: object, also: tuple[nn.Module, ...] = ()) -> None:
        own, runs = _networks(posterior)
        if any(isinstance(net, torch.jit.ScriptModule) for net in own):
            own = []
        self.networks = [*own, *also] if own else []
        self.available = bool(self.networks)
        # module calls that take one image through the posterior (and ``also``) once
        self.calls_per_pass = runs + len(also)
        self.forward = 0.0
        self.backward = 0.0
        self._handles: list = []

    def _hook(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if _UNCOUNTED[-1]:
            return
        share = 1.0 / self.calls_per_pass  # one pass: every call of the pass saw the image
        images = inputs[0].shape[0] if inputs and isinstance(inputs[0], Tensor) else 0
        self.forward += images * share
        if isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(self._backward_hook(images * share))

    def _backward_hook(self, images: float) -> Callable[[Tensor], None]:
        def count(_grad: Tensor) -> None:
            self.backward += images * _COTANGENTS[-1]
        return count

    def __enter__(self) -> PassCounter:
        self._handles = [net.register_forward_hook(self._hook) for net in self.networks]
        _OPEN.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        _OPEN.remove(self)
