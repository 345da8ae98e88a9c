"""Uncertainty attribution methods: one class each, one ``attribute`` verb."""

from .base import UncertaintyAttribution
from .gradient import Grad, IntegratedGradients
from .optimization import OptimizationResult, OptimizationUA

__all__ = [
    "Grad",
    "IntegratedGradients",
    "OptimizationResult",
    "OptimizationUA",
    "UncertaintyAttribution",
]
