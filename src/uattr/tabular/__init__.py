"""Uncertainty attribution for rows of tabular data: which features make a model unsure.

:func:`row_uncertainty` turns a fitted scikit-learn ensemble, a list of fitted models or
PyTorch networks, or any score ``X -> u [B]`` into the uncertainty the methods of
:mod:`uattr.tabular.methods` explain (:func:`attribute_rows`).
"""

from .methods import (
    METHODS,
    attribute_rows,
    coalition_values,
    covariance_gi,
    covariance_lrp,
    occlusion,
    optimized_mask,
    shapley_values,
)
from .posteriors import (
    RowUncertainty,
    check_rows,
    classifier_probs,
    regressor_moments,
    row_uncertainty,
    variance_decomposition,
)

__all__ = ["METHODS", "RowUncertainty", "attribute_rows", "check_rows", "classifier_probs",
           "coalition_values", "covariance_gi",
           "covariance_lrp", "occlusion", "optimized_mask",
           "regressor_moments", "row_uncertainty", "shapley_values", "variance_decomposition"]
