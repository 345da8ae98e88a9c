"""Uncertainty attribution methods: one class each, one ``attribute`` verb."""

from .base import UncertaintyAttribution
from .gradient import BlurIG, Grad, GuidedBackprop, IntegratedGradients, SmoothGrad
from .optimization import OptimizationResult, OptimizationUA

__all__ = [
    "BlurIG",
    "Grad",
    "GuidedBackprop",
    "IntegratedGradients",
    "OptimizationResult",
    "OptimizationUA",
    "SmoothGrad",
    "UncertaintyAttribution",
]
