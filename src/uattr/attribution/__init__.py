"""Uncertainty attribution methods: one class each, one ``attribute`` verb."""

from .amortized import AmortizedUA
from .base import UncertaintyAttribution
from .clue import CLUE, CLUEResult, DeltaCLUE
from .fullgrad import FullGrad
from .gradient import BlurIG, Grad, GuidedBackprop, IntegratedGradients, SmoothGrad
from .optimization import OptimizationResult, OptimizationUA, UninformativeMapWarning
from .perturbation import LIME, FixedMaskKernelSHAP, Occlusion
from .second_order import CovGI, CovLRP
from .shapley import KernelSHAP
from .ua_backprop import UABackprop

__all__ = [
    "CLUE",
    "LIME",
    "AmortizedUA",
    "BlurIG",
    "CLUEResult",
    "CovGI",
    "CovLRP",
    "DeltaCLUE",
    "FixedMaskKernelSHAP",
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
    "UninformativeMapWarning",
]
