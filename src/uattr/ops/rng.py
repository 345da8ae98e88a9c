"""Random draws that do not depend on the batch.

A random method takes ``generator``: ``None`` (one generator seeded with the method's
``seed`` for the whole batch), one ``torch.Generator``, or one per image, so that an
image gets the same draws whatever batch it is in (DESIGN §2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["GeneratorArg", "draw_normal", "draw_uniform", "index_generators",
           "make_generators"]

#: A random method's ``generator`` argument: ``None`` (one generator seeded with the
#: method's seed), one ``torch.Generator``, or one per image of the batch.
GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def index_generators(seed: int, indices: Iterable[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by the image's index in its data set: its draws
    are the same whichever batch, shard or worker it is in."""
    return [torch.Generator().manual_seed(seed * 1_000_003 + int(i)) for i in indices]


def make_generators(
    generator: GeneratorArg,
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
    def sample(size: tuple[int, ...], g: torch.Generator) -> Tensor:
        # a generator draws on its own device (a user's CPU generators with images on a
        # GPU: the same draws as on the CPU), then the draws move to the images'
        return sampler(size, generator=g, device=g.device, dtype=dtype).to(device)

    if isinstance(generators, torch.Generator):
        return sample(shape, generators)
    # Per-image generators are what makes the draws batch-invariant; the loop is over RNG
    # calls only (microseconds), never over the model. With ``lengths``, image b draws only
    # its own ``lengths[b]`` entries of the last axis (zeros pad the rest), so its stream
    # does not depend on how many features the other images of the batch have.
    if lengths is None:
        return torch.stack([sample(shape[1:], g) for g in generators])
    out = torch.zeros(shape, device=device, dtype=dtype)
    for b, g in enumerate(generators):
        length = int(lengths[b])
        out[b, ..., :length] = sample((*shape[1:-1], length), g)
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
