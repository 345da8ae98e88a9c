"""Perturbation-based attributions of the uncertainty (papers/001 A.2, DESIGN §3.3).

A perturbation replaces part of the image by the same part of the Gaussian-blurred image
(5×5 kernel, σ = 2), and a part's attribution is ``U(x) - U(x with that part blurred)``:
positive where blurring lowers the uncertainty. Perturbations are batched along dim 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor

from ..ops.checks import check_positive, check_positive_ints
from ..ops.chunks import images_per_pass
from ..ops.perturb import blurred_reference
from ..ops.rng import GeneratorArg, draw_uniform, make_generators
from ..ops.segment import check_segments, pixels, quickshift, segment_slots
from ..ops.surrogate import lime_fit, lime_masks
from ..uq import PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution

__all__ = ["LIME", "FixedMaskKernelSHAP", "Occlusion", "blurred_versions", "feature_slots",
           "minimum_norm_fit"]


class Occlusion(UncertaintyAttribution):
    """Slide a window over the image, blur what it covers, record ``U(x) - U(x')`` on its
    pixels, and average where windows overlap (Captum's ``Occlusion`` with the blurred
    image as baseline).

    ``window``/``stride`` default to 5/2 on images up to 64 px and 10/10 on larger ones
    (papers/001 A.2). ``perturbations_per_eval`` windows of every image go through the
    posterior together.
    """

    name = "occlusion"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 window: int | None = None, stride: int | None = None,
                 perturbations_per_eval: int = 32) -> None:
        super().__init__(posterior, uncertainty)
        check_positive_ints(**{name: value for name, value in
                               (("window", window), ("stride", stride)) if value is not None})
        self.window, self.stride = window, stride
        self.perturbations_per_eval = perturbations_per_eval

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """``[B, H, W]``; ``segments`` is ignored."""
        x = self._check(x).detach()
        channels, height, width = x.shape[1:]
        large = min(height, width) > 64
        window = self.window or (10 if large else 5)
        stride = self.stride or (10 if large else 2)
        if window > min(height, width):
            raise ValueError(f"window must fit in the image ({height}×{width}), got {window}")
        occlusion = CaptumOcclusion(self.uncertainty_of)
        maps = occlusion.attribute(
            x, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
            baselines=blurred_reference(x), perturbations_per_eval=self.perturbations_per_eval)
        return maps.mean(1)  # every channel of a pixel gets the same value


class FixedMaskKernelSHAP(UncertaintyAttribution):
    """The "KernelSHAP" of papers/001 A.2: a linear regression of the uncertainty drop on
    random blur masks of a fixed size. It is not Kernel SHAP (no Shapley kernel, no
    intercept, no efficiency constraint; :class:`~uattr.attribution.KernelSHAP` is) and its
    rows are labelled ``kernelshap-fixed`` in uattr's tables, so that they compare with
    the papers' "KernelSHAP" rows without being taken for Shapley values.

    Each of ``n_perturbations`` masks blurs some features (pixels, or the segments given to
    ``attribute``); a least-squares fit ``U(x) - U(x') ≈ Σ_k w_k m_k`` over the masks gives
    the weights ``w_k``, painted onto their features: positive where blurring lowers the
    uncertainty. The fit has no intercept: the drop is 0 when nothing is blurred, and with
    a fixed number of blurred features per mask an intercept would be collinear with the
    mask columns (the weights would be determined only up to a constant). Defaults are
    the paper's: pixel level, 2000 masks blurring 10% of the pixels each; with segments,
    1000 masks blurring 2 segments each.

    Written here rather than with Captum's ``KernelShap``, which samples coalitions from
    the Shapley kernel (not the papers' fixed-size masks) and fits one image at a time:
    here masks, forward passes and the least-squares fits are batched over images.
    """

    name = "kernelshap-fixed"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_perturbations: int | None = None, pixel_fraction: float = 0.1,
                 segments_per_mask: int = 2, seed: int = 0,
                 perturbations_per_eval: int = 2000) -> None:
        super().__init__(posterior, uncertainty)
        if n_perturbations is not None and n_perturbations < 2:
            raise ValueError(f"n_perturbations must be >= 2, got {n_perturbations}")
        if not 0 < pixel_fraction < 1:
            raise ValueError(f"pixel_fraction must be in (0, 1), got {pixel_fraction}")
        check_positive_ints(segments_per_mask=segments_per_mask)
        self.n_perturbations, self.pixel_fraction = n_perturbations, pixel_fraction
        self.segments_per_mask, self.seed = segments_per_mask, seed
        self.perturbations_per_eval = perturbations_per_eval

    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """``[B, H, W]``; ``segments=None`` works per pixel."""
        x = self._check(x).detach()
        batch, _, height, width = x.shape
        pixel_level = segments is None
        segments, counts, valid = feature_slots(x, segments)  # [B, H, W], [B], [B, K]
        k_max = valid.shape[1]
        n = self.n_perturbations or (2000 if pixel_level else 1000)
        generators = make_generators(generator, self.seed, batch, x.device)
        # Random keys, -1 past K_b: the blurred features are the top-m keys of each row.
        keys = draw_uniform(generators, (batch, n, k_max), x.device, lengths=counts)  # [B,n,K]
        keys = keys.masked_fill(~valid[:, None, :], -1.0)
        per_mask = (torch.clamp((self.pixel_fraction * counts).round(), min=1) if pixel_level
                    else torch.clamp(torch.full_like(counts, self.segments_per_mask), max=counts))
        ranks = keys.argsort(-1, descending=True).argsort(-1)  # [B, n, K]: rank of each key
        masks = (ranks < per_mask[:, None, None]).to(x.dtype)  # [B, n, K], 1 = blurred
        drops = self._uncertainty_drops(x, segments, masks)  # [B, n]
        weights = minimum_norm_fit(masks, drops).to(device=x.device, dtype=x.dtype)  # [B, K]
        return weights.gather(1, segments.flatten(1)).view(batch, height, width)

    def _uncertainty_drops(self, x: Tensor, segments: Tensor, masks: Tensor) -> Tensor:
        """``U(x) - U(x')`` ``[B, n]`` for every mask (1 = blurred)."""
        with torch.no_grad():
            base = self.uncertainty_of(x)  # [B]
            return base[:, None] - blurred_versions(
                self.uncertainty_of, x, segments, masks, self.perturbations_per_eval)


def feature_slots(x: Tensor, segments: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """The features a perturbation method blurs: ``segments`` checked against ``x`` (one
    per pixel when ``None``), their counts ``K_b [B]`` and valid slots ``[B, K_max]``."""
    segments = check_segments(pixels(x) if segments is None else segments, x)
    return (segments, *segment_slots(segments))


def minimum_norm_fit(design: Tensor, target: Tensor) -> Tensor:
    """The minimum-norm least-squares weights ``A⁺b`` ``[B, K]`` of ``design [B, n, K]`` and
    ``target [B, n]``, in float64 on the CPU (gelsd: CUDA's only driver needs full rank).

    Unused feature slots (past K_b) are all-zero columns, which the minimum-norm solution
    gives weight 0. With fewer rows than columns (per pixel on an image of more than
    ``n`` pixels) it is ``Aᵀ(AAᵀ)⁺b``: a pseudo-inverse of the n×n Gram matrix instead of an
    SVD of the whole n×K design, the same solution at a fraction of the work."""
    a, b = design.double().cpu(), target.double().cpu()[..., None]  # [B, n, K], [B, n, 1]
    if a.shape[1] < a.shape[2]:
        gram = a @ a.transpose(1, 2)  # [B, n, n]
        return (a.transpose(1, 2) @ torch.linalg.lstsq(gram, b, driver="gelsd").solution)[..., 0]
    return torch.linalg.lstsq(a, b, driver="gelsd").solution[..., 0]


@torch.no_grad()
def blurred_versions(
    uncertainty_of: Callable[[Tensor], Tensor],
    x: Tensor,
    segments: Tensor,
    masks: Tensor,
    images_per_eval: int = 2000,
) -> Tensor:
    """``U(x')`` ``[B, n, ...]`` (whatever ``uncertainty_of`` returns per image) where
    ``x'`` blurs the segments that ``masks [B, n, K]`` mark 1, in chunks of about
    ``images_per_eval`` images of 28×28 (as many pixels: :mod:`uattr.ops.chunks`)."""
    batch, n, _ = masks.shape
    blurred = blurred_reference(x)
    flat_segments = segments.flatten(1)  # [B, H·W]
    step = max(1, images_per_pass(images_per_eval, *x.shape[-2:]) // batch)
    values = []
    for i in range(0, n, step):
        chunk = masks[:, i : i + step]  # [B, m, K]
        painted = chunk.gather(2, flat_segments[:, None, :].expand(-1, chunk.shape[1], -1))
        painted = painted.view(batch, chunk.shape[1], 1, *x.shape[-2:])  # [B, m, 1, H, W]
        perturbed = torch.where(painted > 0, blurred[:, None], x[:, None])
        outputs = uncertainty_of(perturbed.flatten(0, 1))  # [B·m, ...]
        values.append(outputs.view(batch, chunk.shape[1], *outputs.shape[1:]))
    return torch.cat(values, 1)  # [B, n, ...]


class LIME(UncertaintyAttribution):
    """LIME on the uncertainty, with the settings of the ``lime`` package that papers/001
    uses: quickshift segments (or any segments given, e.g. ``segment.pixels(x)`` for the
    pixel-level variant), ``n_samples`` binomial masks (each segment kept with probability
    1/2, the first mask keeping everything), a blurred segment where a mask drops it, an
    exponential kernel of width 0.25 on the cosine distance to the all-kept mask, and a
    weighted ridge regression (α = 1, with intercept) of ``U(x')`` on the kept-indicators.
    A segment's weight is positive where blurring it lowers the uncertainty.

    Written here because Captum's ``Lime`` fits one image at a time; masks, forward
    passes and the weighted ridge solves are batched over images.
    """

    name = "lime"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 n_samples: int = 1000, kernel_width: float = 0.25, ridge: float = 1.0,
                 seed: int = 0, perturbations_per_eval: int = 2000) -> None:
        super().__init__(posterior, uncertainty)
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        check_positive(kernel_width=kernel_width, ridge=ridge)
        self.n_samples, self.kernel_width, self.ridge = n_samples, kernel_width, ridge
        self.seed, self.perturbations_per_eval = seed, perturbations_per_eval

    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """``[B, H, W]``; ``segments=None`` segments each image with quickshift."""
        x = self._check(x).detach()
        batch, _, height, width = x.shape
        segments = check_segments(quickshift(x) if segments is None else segments, x)
        kept, valid, values = self.perturbed_outputs(x, segments, self.uncertainty_of,
                                                     generator)  # values [B, n]
        coefficients = self.fit(kept, valid, values[..., None])[:, 0]  # [B, K]
        return coefficients.gather(1, segments.flatten(1)).view(batch, height, width)

    def perturbed_outputs(self, x: Tensor, segments: Tensor, outputs_of: Callable[[Tensor], Tensor],
                          generator: GeneratorArg = None) -> tuple[Tensor, Tensor, Tensor]:
        """LIME's masks ``kept [B, n, K]``, ``valid [B, K]`` and ``outputs_of(x')``
        ``[B, n, ...]`` of every perturbed image (dropped segments blurred): the
        uncertainty for :meth:`attribute`, any output for a caller that explains
        several at once (each posterior sample's class score, papers/004)."""
        generators = make_generators(generator, self.seed, x.shape[0], x.device)
        kept, valid = lime_masks(segments, self.n_samples, generators, x.dtype)
        values = blurred_versions(outputs_of, x, segments, valid[:, None, :] - kept,
                                  self.perturbations_per_eval)
        return kept, valid, values

    def fit(self, kept: Tensor, valid: Tensor, values: Tensor) -> Tensor:
        """The weighted ridge of each of ``values [B, n, R]`` on the masks: ``[B, R, K]``
        (one fit per image and output, with this method's kernel width and ridge)."""
        return lime_fit(kept, valid, values, self.kernel_width, self.ridge)
