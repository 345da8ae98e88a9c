"""Uncertainty attribution methods: one class each, one ``attribute`` verb."""

from .base import UncertaintyAttribution
from .explanation_uncertainty import (
    ExplanationDistribution,
    ExplanationUncertainty,
    explanation_statistics,
    mean_cv,
)
from .fullgrad import FullGrad
from .gradient import BlurIG, Grad, GuidedBackprop, IntegratedGradients, SmoothGrad
from .optimization import OptimizationResult, OptimizationUA
from .perturbation import LIME, KernelSHAP, Occlusion
from .ua_backprop import UABackprop

__all__ = [
    "LIME",
    "BlurIG",
    "ExplanationDistribution",
    "ExplanationUncertainty",
    "FullGrad",
    "Grad",
    "GuidedBackprop",
    "IntegratedGradients",
    "KernelSHAP",
    "Occlusion",
    "OptimizationResult",
    "OptimizationUA",
    "SmoothGrad",
    "UABackprop",
    "UncertaintyAttribution",
    "explanation_statistics",
    "mean_cv",
]
