"""uattr's uncertainty and maps in the conventions of Captum and Quantus.

- Captum explains a forward function: :func:`uattr.uncertainty_fn` is ``x -> U(x) [B]``,
  so ``captum.attr.Saliency(uncertainty_fn(posterior)).attribute(x)`` is the gradient of
  the uncertainty. Captum returns maps in the input's shape ``[B, C, H, W]``;
  :func:`per_channel` puts a uattr map ``[B, H, W]`` in that shape.
- Quantus scores a map by perturbing the input and watching a model's output at a target
  class. :class:`UncertaintyModel` is the posterior's uncertainty as a model with one
  output (target 0), and :func:`quantus_explain` is an ``explain_func`` that makes
  uattr's maps for Quantus's metrics::

      metric = quantus.FaithfulnessCorrelation(nr_runs=50, subset_size=16)
      model = uattr.interop.UncertaintyModel(posterior, "total")
      scores = metric(model=model, x_batch=x, y_batch=np.zeros(len(x), int),
                      explain_func=uattr.interop.quantus_explain,
                      explain_func_kwargs={"method": uattr.Grad})

  A higher score then means the map ranks pixels by how much perturbing them moves the
  uncertainty (not a class score).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .attribution.base import UncertaintyAttribution
from .uq import PosteriorLike, UncertaintySpec, as_posterior, uncertainty_fn

__all__ = ["UncertaintyModel", "per_channel", "quantus_explain"]


def per_channel(maps: Tensor, x: Tensor) -> Tensor:
    """A map ``[B, H, W]`` in the input's shape ``[B, C, H, W]`` (Captum's convention):
    every channel of a pixel gets ``1/C`` of the pixel's value, so that summing over the
    channels gives the map back (and a map that sums to U(x), UA-Backprop's, still does)."""
    if maps.ndim != 3 or x.ndim != 4 or maps.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"maps must have shape [B, H, W] = {[x.shape[0], *x.shape[2:]]} "
                         f"for x of shape {list(x.shape)}, got {list(maps.shape)}")
    return (maps[:, None] / x.shape[1]).expand_as(x)


class UncertaintyModel(nn.Module):
    """The uncertainty of ``posterior`` as a model with one output: ``x -> U(x) [B, 1]``.

    For libraries that evaluate a model's output at a target class: with target 0 they
    see U(x). ``posterior`` and ``uncertainty`` are kept, so that an ``explain_func`` can
    build its method for whatever model it is given (:func:`quantus_explain`)."""

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total") -> None:
        super().__init__()
        if isinstance(posterior, list | tuple | nn.ModuleList):
            posterior = as_posterior(posterior)
        self.posterior = posterior
        self.uncertainty = uncertainty
        self._u = uncertainty_fn(posterior, uncertainty)
        # in evaluation mode, as Quantus demands, without .eval() recursing into the
        # posterior: a posterior that needs its dropout layers in training mode keeps them
        self.training = False

    def forward(self, x: Tensor) -> Tensor:
        return self._u(x)[:, None]  # [B, 1]


MethodFactory = Callable[..., UncertaintyAttribution]


def quantus_explain(model: nn.Module, inputs: np.ndarray | Tensor, targets: Any = None, *,
                    method: MethodFactory | UncertaintyAttribution,
                    segmenter: Callable[[Tensor], Tensor] | None = None,
                    channels: bool = False, device: str | torch.device | None = None,
                    **method_kwargs: Any) -> np.ndarray:
    """Quantus's ``explain_func``: uattr's maps of ``inputs [B, C, H, W]`` as a NumPy array
    ``[B, 1, H, W]`` (``channels=True``: ``[B, C, H, W]``, :func:`per_channel`).

    ``model`` is an :class:`UncertaintyModel`; ``method`` a method class or factory
    ``(posterior, uncertainty, **method_kwargs) -> method``, built on the model it is
    given (so that Quantus's randomisation metrics, which pass a perturbed model, see
    their model's maps), or a method already built (then ``model`` is not read).
    ``segmenter`` (e.g. :func:`uattr.segment.slic`) gives the segments of a method over
    segments. ``targets`` are ignored: the uncertainty has one output. ``device`` (which
    Quantus passes) is where the inputs go; the posterior must already be there."""
    if isinstance(method, UncertaintyAttribution):
        explainer = method
    else:
        if not isinstance(model, UncertaintyModel):
            raise ValueError("model must be a uattr.interop.UncertaintyModel when method is a "
                             f"class or factory, got {type(model).__name__}")
        explainer = method(model.posterior, model.uncertainty, **method_kwargs)
    x = torch.as_tensor(inputs, dtype=torch.float32, device=device)  # NumPy or torch
    segments = segmenter(x) if segmenter is not None else None
    maps = explainer.attribute(x, segments=segments).detach()  # [B, H, W]
    shaped = per_channel(maps, x) if channels else maps[:, None]
    return shaped.cpu().numpy()
