"""The one interface every attribution method shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..uq import UNCERTAINTY_KINDS, Posterior, UncertaintySpec, as_posterior, check_images
from ..uq import uncertainty as _uncertainty

__all__ = ["UncertaintyAttribution", "check_positive", "check_positive_ints", "make_generators"]


class UncertaintyAttribution:
    """Base class: configure in ``__init__``, explain with ``attribute``.

    ``posterior`` is a :class:`~uattr.uq.Posterior`, a list of member modules returning
    logits (a deep ensemble), or any callable ``x -> probabilities [B, S, C]`` (checked
    to sum to 1: logits must go through :func:`~uattr.as_posterior`).
    ``uncertainty`` is ``"total" | "aleatoric" | "epistemic"`` or a callable
    ``P [B, S, C] -> [B]``.

    ``attribute(x [B, C, H, W], *, segments=None) -> [B, H, W]``: higher means the
    region contributes more to the uncertainty (perturbing it lowers the uncertainty).
    """

    #: short name used in tables
    name: str = "attribution"

    def __init__(
        self,
        posterior: Posterior | Sequence[nn.Module] | Callable[[Tensor], Tensor],
        uncertainty: UncertaintySpec = "total",
    ) -> None:
        if isinstance(posterior, list | tuple | nn.ModuleList):
            posterior = as_posterior(posterior)
        if not callable(posterior):
            raise ValueError(
                "posterior must be a Posterior, a list of modules or a callable x -> [B, S, C], "
                f"got {type(posterior).__name__}"
            )
        if not callable(uncertainty) and uncertainty not in UNCERTAINTY_KINDS:
            raise ValueError(
                f"uncertainty must be one of {UNCERTAINTY_KINDS} or a callable, got {uncertainty!r}"
            )
        self.posterior = posterior
        self.uncertainty = uncertainty

    def uncertainty_of(self, x: Tensor) -> Tensor:
        """``U(x) [B]``, differentiable in ``x``."""
        return _uncertainty(self.posterior(x), self.uncertainty)

    def _check(self, x: Tensor) -> Tensor:
        return check_images(x, "x")

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uncertainty={self.uncertainty!r})"


def check_positive_ints(**values: object) -> None:
    """Raise ``ValueError`` naming the first argument that is not an int >= 1."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_positive(*, allow_zero: bool = False, **values: float) -> None:
    """Raise ``ValueError`` naming the first argument that is not > 0 (or >= 0)."""
    for name, value in values.items():
        if not (value >= 0 if allow_zero else value > 0):
            raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def make_generators(
    generator: torch.Generator | Sequence[torch.Generator] | None,
    seed: int,
    batch: int,
    device: torch.device,
) -> torch.Generator | list[torch.Generator]:
    """Normalise the ``generator`` argument of a random method.

    ``None`` -> one generator seeded with ``seed`` for the whole batch (fast; an image's
    draws depend on its position in the batch). A sequence of ``B`` generators -> one per
    image, so that an image gets the same draws whatever batch it is in.
    """
    if generator is None:
        return torch.Generator(device=device).manual_seed(seed)
    if isinstance(generator, torch.Generator):
        return generator
    generators = list(generator)
    if len(generators) != batch or not all(isinstance(g, torch.Generator) for g in generators):
        raise ValueError(
            f"generator must be a torch.Generator or a sequence of B = {batch} generators "
            f"(one per image), got {len(generators)} items"
        )
    return generators


def _draw(
    sampler: Callable[..., Tensor],
    generators: torch.Generator | list[torch.Generator],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    lengths: Tensor | None,
) -> Tensor:
    if isinstance(generators, torch.Generator):
        return sampler(shape, generator=generators, device=device, dtype=dtype)
    # Per-image generators are what makes the draws batch-invariant; the loop is over RNG
    # calls only (microseconds), never over the model. With ``lengths``, image b draws only
    # its own ``lengths[b]`` entries of the last axis (zeros pad the rest), so its stream
    # does not depend on how many features the other images of the batch have.
    if lengths is None:
        return torch.stack(
            [sampler(shape[1:], generator=g, device=device, dtype=dtype) for g in generators]
        )
    out = torch.zeros(shape, device=device, dtype=dtype)
    for b, g in enumerate(generators):
        length = int(lengths[b])
        out[b, ..., :length] = sampler((*shape[1:-1], length), generator=g, device=device,
                                       dtype=dtype)
    return out


def draw_uniform(
    generators: torch.Generator | list[torch.Generator],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    lengths: Tensor | None = None,
) -> Tensor:
    """U(0, 1) draws ``[B, *shape[1:]]``; with a list of generators, row b uses generator b
    (and, with ``lengths``, draws only the first ``lengths[b]`` entries of the last axis)."""
    return _draw(torch.rand, generators, shape, device, dtype, lengths)


def draw_normal(
    generators: torch.Generator | list[torch.Generator],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, 1) draws ``[B, *shape[1:]]``; with a list of generators, row b uses generator b."""
    return _draw(torch.randn, generators, shape, device, dtype, None)
