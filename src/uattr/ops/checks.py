"""Argument checks shared by every configurable object: a bad value raises a
``ValueError`` that names the argument and what was expected."""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["check_positive", "check_positive_ints", "check_real"]


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


def check_real(name: str, value: object, *, above: float | None = None,
               at_least: float | None = None, at_most: float | None = None,
               below: float | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite real number (not a
    bool) ``> above``, ``>= at_least``, ``<= at_most`` and ``< below`` (each bound when
    given): a segmenter setting such as a compactness of 0 would otherwise end in a
    division by zero inside scikit-image, or a NaN in one segment for the whole image."""
    bounds = [f"> {above}" if above is not None else None,
              f">= {at_least}" if at_least is not None else None,
              f"<= {at_most}" if at_most is not None else None,
              f"< {below}" if below is not None else None]
    wanted = " and ".join(b for b in bounds if b) or "finite"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or (above is not None and not value > above) \
            or (at_least is not None and not value >= at_least) \
            or (at_most is not None and not value <= at_most) \
            or (below is not None and not value < below):
        raise ValueError(f"{name} must be a finite number {wanted}, got {value!r}")
