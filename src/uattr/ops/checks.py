"""Argument checks shared by every configurable object: a bad value raises a
``ValueError`` that names the argument and what was expected."""

from __future__ import annotations

__all__ = ["check_positive", "check_positive_ints"]


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
