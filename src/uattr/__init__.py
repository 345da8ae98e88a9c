"""uattr: which regions of an input cause a Bayesian or ensemble classifier's uncertainty.

    import uattr
    post = uattr.as_posterior(members)                      # list of nn.Module -> [B, S, C]
    seg = uattr.segment.slic(x, n_segments=30)              # [B, H, W]
    maps = uattr.OptimizationUA(post, uncertainty="total").attribute(x, segments=seg)
"""

from . import interop, metrics, viz
from .attribution import (
    CLUE,
    LIME,
    AmortizedUA,
    BlurIG,
    CLUEResult,
    CovGI,
    CovLRP,
    DeltaCLUE,
    FixedMaskKernelSHAP,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    OptimizationResult,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
    UncertaintyAttribution,
    UninformativeMapWarning,
)
from .explanation import ExplanationDistribution, ExplanationUncertainty
from .ops import perturb, segment
from .posteriors import stochastic
from .posteriors.laplace import laplace_posterior
from .posteriors.sampled import (
    Flipout,
    MCDropConnect,
    MCDropout,
    SampledPosterior,
    StochasticPosterior,
)
from .uq import (
    Ensemble,
    Posterior,
    as_posterior,
    decompose,
    predict_probs,
    uncertainty,
    uncertainty_fn,
)
from .zoo import data

__version__ = "0.1.0"

__all__ = [
    "CLUE",
    "LIME",
    "AmortizedUA",
    "BlurIG",
    "CLUEResult",
    "CovGI",
    "CovLRP",
    "DeltaCLUE",
    "Ensemble",
    "ExplanationDistribution",
    "ExplanationUncertainty",
    "FixedMaskKernelSHAP",
    "Flipout",
    "FullGrad",
    "Grad",
    "GuidedBackprop",
    "IntegratedGradients",
    "KernelSHAP",
    "MCDropConnect",
    "MCDropout",
    "Occlusion",
    "OptimizationResult",
    "OptimizationUA",
    "Posterior",
    "SampledPosterior",
    "SmoothGrad",
    "StochasticPosterior",
    "UABackprop",
    "UncertaintyAttribution",
    "UninformativeMapWarning",
    "__version__",
    "as_posterior",
    "data",
    "decompose",
    "interop",
    "laplace_posterior",
    "metrics",
    "perturb",
    "predict_probs",
    "segment",
    "stochastic",
    "uncertainty",
    "uncertainty_fn",
    "viz",
]
