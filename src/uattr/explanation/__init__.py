"""How uncertain is an explanation? Distributions of explanations over posterior samples
(papers/004): of images (:mod:`.distributions`) and of tabular rows (:mod:`.tabular`)."""

from .distributions import (
    EXPLAINERS,
    ExplanationDistribution,
    ExplanationUncertainty,
    explanation_statistics,
    mean_cv,
)

__all__ = ["EXPLAINERS", "ExplanationDistribution", "ExplanationUncertainty",
           "explanation_statistics", "mean_cv"]
