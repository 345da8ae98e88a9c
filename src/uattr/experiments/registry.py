"""Every method of the benchmarks, configured by a job's method settings.

One place names the rows of the papers' tables, so that ``uattr run`` and every
``uattr bench`` command build the same methods and share cells in a run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ..attribution import (
    CLUE,
    LIME,
    AmortizedUA,
    BlurIG,
    CovGI,
    CovLRP,
    DeltaCLUE,
    FixedMaskKernelSHAP,
    FullGrad,
    Grad,
    GuidedBackprop,
    IntegratedGradients,
    Occlusion,
    OptimizationUA,
    SmoothGrad,
    UABackprop,
    UncertaintyAttribution,
)
from ..attribution.base import keyword_defaults
from ..attribution.optimization import INITS
from ..ops import segment
from ..uq import Posterior
from .common import MethodSpec
from .settings import MethodSettings

__all__ = [
    "AMORTIZED",
    "DETECTION_ROWS",
    "FAMILIES",
    "GENERATIVE",
    "METHOD_INITS",
    "ORACLE",
    "PARTIAL",
    "PIXEL_METHODS",
    "ROWS",
    "STARTED",
    "Row",
    "detection_methods",
    "family_means",
    "needs_amortized",
    "needs_vae",
    "optimization",
    "pixel_methods",
    "registry_row",
    "segmenter",
    "segments_config",
]

# Rows whose segments include the true patch: upper bounds that use the answer, never
# methods (no family mean counts them).
ORACLE = "oracle: "


@dataclass(frozen=True)
class Row:
    """One row of the tables: the method ``build(posterior, settings)`` on ``segments``
    (``None``: the method's own unit, pixels or windows; ``"slic"`` with the settings'
    segments and compactness; any other name of :data:`uattr.segment.SEGMENTERS`).

    ``family`` groups it as papers/000 §4.1 does (an oracle row counts in no family);
    ``pixel_level``: it is also a row of the faithfulness and blurring tests, which need
    pixel-level maps (papers/001 A.3). A row named ``oracle: …`` is an oracle row: the
    true patch is one more segment. What the method can do, read by the commands instead
    of its name: a ``generative`` row searches the latent space of the data set's VAE
    (``build(posterior, settings, vae)``); ``over_segments``: its method attributes any
    segments it is given (``uattr explain --segmenter/--segments``); ``hooks``: it hooks
    the network's layers, which a TorchScript model compiles away; ``accepts``: which
    posteriors it can explain (``None``: every one), the others leave the row out; an
    ``amortized`` row is a network trained for the posterior
    (``build(posterior, settings, network)``, see :mod:`.amortized`): it is made only
    when named (``--methods``), never by default, since making it costs minutes.
    ``n_segments``: slic's segment count for this row in place of the settings' default (a
    count the settings set to anything else, ``--n-segments``, is kept)."""

    name: str
    family: str
    build: Callable[..., UncertaintyAttribution]
    segments: str | None = None
    pixel_level: bool = False
    generative: bool = False
    over_segments: bool = False
    hooks: bool = False
    accepts: Callable[[Posterior], bool] | None = None
    amortized: bool = False
    n_segments: int | None = None

    @property
    def oracle(self) -> bool:
        return self.name.startswith(ORACLE)


#: the starts a job's settings can give the optimization-based rows: the method's own
#: (:data:`~uattr.attribution.optimization.INITS`) and ``amortized``, the map of the
#: posterior's amortised explainer (:mod:`.amortized`), which the job then loads
METHOD_INITS = (*INITS, "amortized")


def optimization(posterior: Posterior, settings: MethodSettings,
                 network: nn.Module | None = None, **overrides) -> OptimizationUA:
    """The optimization-based method with the settings' λ, τ, σ0, most steps, stopping
    rule, start, seed and uncertainty; a start ``amortized`` is the amortised explainer
    with the trained mask ``network`` (:func:`_amortized`)."""
    chosen = {"uncertainty": settings.uncertainty, "lam": settings.lam, "tau": settings.tau,
              "sigma_init": settings.sigma_init, "max_steps": settings.max_steps,
              "stop": settings.stop, "init": settings.init,
              "seed": settings.seed, "progress": True,
              **overrides}
    if chosen["init"] == "amortized":
        if network is None:
            raise ValueError("init 'amortized' starts the optimization-based method from the "
                             "map of the posterior's amortised explainer: its network must "
                             "be given (the uattr commands load it; uattr train --amortized "
                             "makes one)")
        chosen["init"] = _amortized(posterior, settings, network)
    return OptimizationUA(posterior, **chosen)


# The mask rule per pixel: of 784 segments a few keep flipping long after the map has
# settled, so the rule must allow a share of flips; the share and patience keep the most
# IoU among the rules of `python tuning/stopping.py --segments pixels` that stop MNIST's
# validation images within 150 steps on average (docs/hyperparameters.md).
PIXEL_MASK_RULE = {"mask_tol": 0.02, "mask_patience": 3}


def per_pixel_optimization(posterior: Posterior, settings: MethodSettings,
                           network: nn.Module | None = None, **overrides) -> OptimizationUA:
    """:func:`optimization` for one segment per pixel: with ``stop="mask"``, the mask rule
    of :data:`PIXEL_MASK_RULE` (the segments' defaults would hardly ever stop)."""
    rule = PIXEL_MASK_RULE if overrides.get("stop", settings.stop) == "mask" else {}
    return optimization(posterior, settings, network, **{**rule, **overrides})


def _plain(method: type[UncertaintyAttribution]) -> Callable:
    """A method with the settings' uncertainty and its own defaults."""
    return lambda posterior, settings: method(posterior, settings.uncertainty)


def _seeded(method: type[UncertaintyAttribution]) -> Callable:
    """A random method with the settings' uncertainty and seed."""
    return lambda posterior, settings: method(posterior, settings.uncertainty,
                                              seed=settings.seed)


def _counterfactual(method: type[CLUE]) -> Callable:
    """CLUE or δ-CLUE with the settings' uncertainty and seed, in the VAE's latent space."""
    return lambda posterior, settings, vae: method(posterior, vae, settings.uncertainty,
                                                   seed=settings.seed)


def _amortized(posterior: Posterior, settings: MethodSettings, network: nn.Module, *,
               first_order: bool = False) -> AmortizedUA:
    """The amortised explainer with the trained ``network`` (its objective's settings are
    the job's, as the per-image method it imitates)."""
    return AmortizedUA(posterior, settings.uncertainty, network=network, lam=settings.lam,
                       tau=settings.tau, sigma_init=settings.sigma_init, seed=settings.seed,
                       first_order=first_order)


def _amortized_first_order(posterior: Posterior, settings: MethodSettings,
                           network: nn.Module) -> AmortizedUA:
    """The amortised explainer's map averaged with the first-order blur effect."""
    return _amortized(posterior, settings, network, first_order=True)


_DEFAULT_SEGMENTS = MethodSettings().n_segments

# Every method of the tables, in the detection table's order. Adding a method to every
# benchmark is adding its row here.
ROWS = (
    Row("optimization (slic)", "optimization", optimization, "slic", over_segments=True),
    Row("optimization (pixels)", "optimization", per_pixel_optimization, pixel_level=True,
        over_segments=True),
    # one forward pass of a network distilled from the per-pixel row's maps (made only
    # when named: it is trained for the posterior), per pixel and over slic segments
    Row("amortized", "amortized", _amortized, pixel_level=True, amortized=True),
    # the same map averaged over the slic segments of the method's slic row (chosen on the
    # validation split: on colour the segments lift its IoU, on MNIST they leave it)
    Row("amortized (slic)", "amortized", _amortized, "slic", over_segments=True,
        amortized=True),
    # its map averaged with the first-order blur effect (one pass of the posterior more)
    # over 25 slic segments, both chosen on the validation split (docs/hyperparameters.md)
    Row("amortized + first-order (slic)", "amortized", _amortized_first_order, "slic",
        over_segments=True, amortized=True, n_segments=25),
    Row("grad", "gradient", _plain(Grad), pixel_level=True),
    Row("smoothgrad", "gradient", _seeded(SmoothGrad), pixel_level=True),
    Row("integrated gradients", "gradient", _plain(IntegratedGradients), pixel_level=True),
    Row("blur ig", "gradient", _plain(BlurIG), pixel_level=True),
    Row("fullgrad", "gradient", _plain(FullGrad), pixel_level=True, hooks=True),
    Row("guided backprop", "gradient", _plain(GuidedBackprop), pixel_level=True, hooks=True),
    # UA-Backprop propagates gradients, so it counts with the gradient-based methods
    Row("ua-backprop", "gradient", _plain(UABackprop), pixel_level=True, hooks=True),
    # the second-order explanations of Bley et al. (2025): the variance of the samples
    # explained as the covariance of their Gradient×Input or LRP explanations
    Row("covgi", "second-order", _plain(CovGI), pixel_level=True),
    Row("covlrp", "second-order", _plain(CovLRP), pixel_level=True, hooks=True,
        accepts=CovLRP.accepts),
    Row("occlusion", "perturbation", _plain(Occlusion), pixel_level=True),
    Row("kernelshap-fixed", "perturbation", _seeded(FixedMaskKernelSHAP), pixel_level=True,
        over_segments=True),
    Row("kernelshap-fixed (slic)", "perturbation", _seeded(FixedMaskKernelSHAP), "slic",
        over_segments=True),
    Row("lime", "perturbation", _seeded(LIME), "quickshift", over_segments=True),
    Row("lime (pixels)", "perturbation", _seeded(LIME), "pixels", pixel_level=True,
        over_segments=True),
    # papers/002's generative baselines: a counterfactual from the data set's VAE
    Row("clue", "generative", _counterfactual(CLUE), pixel_level=True, generative=True),
    Row("delta-clue", "generative", _counterfactual(DeltaCLUE), pixel_level=True,
        generative=True),
    Row(f"{ORACLE}optimization (slic + true patch)", "optimization", optimization, "slic",
        over_segments=True),
    Row(f"{ORACLE}kernelshap-fixed (slic + true patch)", "perturbation",
        _seeded(FixedMaskKernelSHAP), "slic", over_segments=True),
)

# The rows of the detection table, in its order.
DETECTION_ROWS = tuple(row.name for row in ROWS)

# The rows of the faithfulness and blurring tests: every method at the pixel level
# (papers/001 A.3: the optimization-based method and LIME in their pixel versions).
PIXEL_METHODS = tuple(row.name for row in ROWS if row.pixel_level)

# The rows that some posteriors cannot run (left out of their tables).
PARTIAL = tuple(row.name for row in ROWS if row.accepts is not None)

# The rows that need the data set's VAE.
GENERATIVE = tuple(row.name for row in ROWS if row.generative)

# The rows trained for the posterior: made only when named.
AMORTIZED = tuple(row.name for row in ROWS if row.amortized)

# The rows of the optimization-based method, which a job's settings can start from the
# amortised explainer's map (METHOD_INITS).
STARTED = tuple(row.name for row in ROWS if row.family == "optimization")

# The papers' grouping of the methods (papers/000 §4.1; papers/002's CLUE and δ-CLUE as
# a fourth family, Bley et al.'s CovGI and CovLRP as a fifth).
FAMILIES = {family: tuple(row.name for row in ROWS if row.family == family and not row.oracle)
            for family in dict.fromkeys(row.family for row in ROWS)}


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


def _row_settings(row: Row, settings: MethodSettings) -> MethodSettings:
    """The settings of a row's segmenter: the row's own slic segment count, if it has one
    and the settings hold the default count (a count chosen for the job wins)."""
    if row.n_segments is None or settings.n_segments != _DEFAULT_SEGMENTS:
        return settings
    return dataclasses.replace(settings, n_segments=row.n_segments)


def _row_segmenter(row: Row, settings: MethodSettings) -> Callable[[Tensor], Tensor] | None:
    """A row's segmenter: none for the method's own unit, one segment per pixel for
    ``"pixels"`` (a method that would segment by itself, LIME, at the pixel level)."""
    if row.segments == "pixels":
        return segment.pixels
    return segmenter(row.segments, _row_settings(row, settings)) if row.segments else None


def segments_config(name: str | None, settings: MethodSettings) -> dict | None:
    """The settings of a row's segmenter, part of its cells' key."""
    if name == "slic":
        return {"n_segments": settings.n_segments, "compactness": settings.compactness}
    if name is None or name == "pixels":
        return None
    return {name: keyword_defaults(segment.get_segmenter(name))}  # key changes with them


def needs_vae(names: list[str] | None) -> bool:
    """Whether the rows ``names`` (``None``: all) include a generative one."""
    return names is None or any(name in GENERATIVE for name in names)


def needs_amortized(names: list[str] | None, settings: MethodSettings | None = None) -> bool:
    """Whether the rows ``names`` (``None``: every row but those made only when named) need
    the posterior's amortised explainer: they name it, or ``settings`` start the
    optimization-based rows from its map (``init="amortized"``) and ``names`` include one."""
    if names is not None and any(name in AMORTIZED for name in names):
        return True
    if settings is None or settings.init != "amortized":
        return False
    return names is None or any(name in STARTED for name in names)


def _build(row: Row, posterior: Posterior, settings: MethodSettings,
           vae: nn.Module | None, amortized: nn.Module | None) -> UncertaintyAttribution:
    if row.generative:
        return row.build(posterior, settings, vae)
    if row.amortized or row.name in STARTED:  # the explainer, or the method's start
        return row.build(posterior, settings, amortized)
    return row.build(posterior, settings)


def registry_row(name: str) -> Row:
    """The row of method ``name`` (not an oracle row); a ``ValueError`` that lists the
    methods when there is none."""
    row = next((r for r in ROWS if r.name == name and not r.oracle), None)
    if row is None:
        raise ValueError(f"method must be one of {[r.name for r in ROWS if not r.oracle]}, "
                         f"got {name!r}")
    return row


def detection_methods(posterior: Posterior, settings: MethodSettings,
                      vae: nn.Module | None = None,
                      amortized: nn.Module | None = None) -> dict[str, MethodSpec]:
    """Every method of the detection table, configured by ``settings``; the generative
    rows (CLUE, δ-CLUE) only with the data set's ``vae``, the amortised explainer only
    with its trained mask network ``amortized`` (as are the optimization-based rows when
    the settings start them from its map), and a row that cannot explain ``posterior``
    (CovLRP on one network's samples) not at all."""
    specs = [MethodSpec(row.name, _build(row, posterior, settings, vae, amortized),
                        _row_segmenter(row, settings),
                        segments_config(row.segments, _row_settings(row, settings)),
                        oracle=row.oracle)
             for row in ROWS if (vae is not None or not row.generative)
             and (amortized is not None or not needs_amortized([row.name], settings))
             and (row.accepts is None or row.accepts(posterior))]
    return {spec.name: spec for spec in specs}


def pixel_methods(posterior: Posterior, settings: MethodSettings,
                  vae: nn.Module | None = None,
                  amortized: nn.Module | None = None) -> dict[str, MethodSpec]:
    """The pixel-level rows of the faithfulness and blurring tests (the generative ones
    only with the data set's ``vae``, the amortised one with its network)."""
    every = detection_methods(posterior, settings, vae, amortized)
    return {name: every[name] for name in PIXEL_METHODS if name in every}
