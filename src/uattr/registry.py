"""Every method of the benchmarks, configured by a job's method settings.

One place names the rows of the papers' tables, so that ``uattr run`` and every
``uattr bench`` command build the same methods and share cells in a run folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import Tensor

from . import segment
from .attribution import (
    LIME,
    BlurIG,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
)
from .benchmarks.common import MethodSpec
from .settings import MethodSettings
from .uq import Posterior

__all__ = ["DETECTION_ROWS", "FAMILIES", "ORACLE", "PIXEL_METHODS", "detection_methods",
           "family_means", "optimization", "pixel_methods", "segmenter"]

# Rows whose segments include the true patch: upper bounds that use the answer, never
# methods (no family mean counts them).
ORACLE = "oracle: "

# The rows of the detection table, in its order.
DETECTION_ROWS = (
    "optimization (slic)", "optimization (pixels)", "grad", "smoothgrad",
    "integrated gradients", "blur ig", "fullgrad", "guided backprop", "ua-backprop",
    "occlusion", "kernelshap", "kernelshap (slic)", "lime", "lime (pixels)",
    *(f"{ORACLE}{name}" for name in ("optimization (slic + true patch)",
                                     "kernelshap (slic + true patch)")),
)

# The rows of the faithfulness and blurring tests: every method at the pixel level
# (papers/001 A.3: the optimization-based method and LIME in their pixel versions).
PIXEL_METHODS = (
    "optimization (pixels)", "grad", "smoothgrad", "integrated gradients", "blur ig",
    "fullgrad", "guided backprop", "ua-backprop", "occlusion", "kernelshap", "lime (pixels)",
)


# The papers' grouping (papers/000 §4.1): UA-Backprop propagates gradients, so it counts
# with the gradient-based methods.
FAMILIES = {
    "optimization": ("optimization (slic)", "optimization (pixels)"),
    "gradient": ("grad", "smoothgrad", "integrated gradients", "blur ig", "fullgrad",
                 "guided backprop", "ua-backprop"),
    "perturbation": ("occlusion", "kernelshap", "kernelshap (slic)", "lime", "lime (pixels)"),
}


def family_means(rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
    """Mean of ``columns`` over the rows of each family present in ``rows``."""
    out = []
    for family, names in FAMILIES.items():
        present = [row for row in rows if row["method"] in names]
        if present:
            out.append({"family": family, "methods": len(present),
                        **{c: sum(row[c] for row in present) / len(present) for c in columns}})
    return out


def segmenter(name: str, settings: MethodSettings) -> Callable[[Tensor], Tensor] | None:
    """The segmenter ``name`` (slic with the settings' segments and compactness), or
    ``None`` for pixel mode."""
    if name == "pixels":
        return None
    if name == "slic":
        return lambda x: segment.slic(x, n_segments=settings.n_segments,
                                      compactness=settings.compactness)
    return segment.get_segmenter(name)


def optimization(posterior: Posterior, settings: MethodSettings,
                 **overrides) -> OptimizationUA:
    """The optimization-based method with the settings' λ, τ, σ0, seed and uncertainty."""
    chosen = {"uncertainty": settings.uncertainty, "lam": settings.lam, "tau": settings.tau,
              "sigma_init": settings.sigma_init, "seed": settings.seed, "progress": True,
              **overrides}
    return OptimizationUA(posterior, **chosen)


def _defaults(function: Callable) -> dict:
    """A function's keyword defaults, so that a cell's key changes when they do."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def detection_methods(posterior: Posterior,
                      settings: MethodSettings) -> dict[str, MethodSpec]:
    """Every method of the detection table, configured by ``settings``."""
    slic = segmenter("slic", settings)
    slic_config = {"n_segments": settings.n_segments, "compactness": settings.compactness}
    kind, seed = settings.uncertainty, settings.seed
    specs = [
        MethodSpec("optimization (slic)", optimization(posterior, settings), slic, slic_config),
        MethodSpec("optimization (pixels)", optimization(posterior, settings)),
        MethodSpec("grad", Grad(posterior, kind)),
        MethodSpec("smoothgrad", SmoothGrad(posterior, kind, seed=seed)),
        MethodSpec("integrated gradients", IntegratedGradients(posterior, kind)),
        MethodSpec("blur ig", BlurIG(posterior, kind)),
        MethodSpec("fullgrad", FullGrad(posterior, kind)),
        MethodSpec("guided backprop", GuidedBackprop(posterior, kind)),
        MethodSpec("ua-backprop", UABackprop(posterior, kind)),
        MethodSpec("occlusion", Occlusion(posterior, kind)),
        MethodSpec("kernelshap", KernelSHAP(posterior, kind, seed=seed)),
        MethodSpec("kernelshap (slic)", KernelSHAP(posterior, kind, seed=seed), slic,
                   slic_config),
        MethodSpec("lime", LIME(posterior, kind, seed=seed), segment.quickshift,
                   {"quickshift": _defaults(segment.quickshift)}),
        MethodSpec("lime (pixels)", LIME(posterior, kind, seed=seed), segment.pixels),
        MethodSpec(f"{ORACLE}optimization (slic + true patch)", optimization(posterior, settings),
                   slic, slic_config, oracle=True),
        MethodSpec(f"{ORACLE}kernelshap (slic + true patch)",
                   KernelSHAP(posterior, kind, seed=seed), slic, slic_config, oracle=True),
    ]
    return {spec.name: spec for spec in specs}


def pixel_methods(posterior: Posterior, settings: MethodSettings) -> dict[str, MethodSpec]:
    """The pixel-level rows of the faithfulness and blurring tests."""
    every = detection_methods(posterior, settings)
    return {name: every[name] for name in PIXEL_METHODS}
