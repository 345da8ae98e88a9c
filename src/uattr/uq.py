"""Posteriors and the entropy decomposition of predictive uncertainty.

The posteriors that sample one stochastic network (MC-Dropout, MC-DropConnect,
Flipout) live in :mod:`uattr.posteriors.sampled`.

The one shape convention of uattr lives here. A *posterior* maps images
``x [B, C, H, W]`` to class probabilities ``P [B, S, C]``: batch first, then the
S posterior samples (ensemble members, MC draws), then the classes. Every other
module receives probabilities in this layout and never transposes them.

From ``P`` with ``p̄ = mean_s P[:, s]`` (all in nats)::

    total      U_t = H(p̄)            = -Σ_c p̄_c log p̄_c
    aleatoric  U_a = mean_s H(P_s)    = -mean_s Σ_c P_sc log P_sc
    epistemic  U_e = U_t - U_a        (mutual information, clamped at 0)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "UNCERTAINTY_KINDS",
    "Ensemble",
    "Posterior",
    "PosteriorLike",
    "SingleSample",
    "as_posterior",
    "check_images",
    "check_probs",
    "class_decomposition",
    "decompose",
    "predict_probs",
    "uncertainty",
    "uncertainty_fn",
]

UNCERTAINTY_KINDS = ("total", "aleatoric", "epistemic")
OutputKind = Literal["logits", "probs"]
UncertaintySpec = str | Callable[[Tensor], Tensor]

_SUM_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------- checks
def check_images(x: Tensor, name: str = "x", *, unit_range: bool = True) -> Tensor:
    """Check that ``x`` is a finite float batch ``[B, C, H, W]`` (in [0, 1] if asked)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got an empty batch")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if unit_range and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def check_probs(probs: Tensor, name: str = "probs") -> Tensor:
    """Check that ``probs`` is ``[B, S, C]``, finite, non-negative, and sums to 1 over C."""
    if not isinstance(probs, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, S, C], got {type(probs).__name__}")
    if probs.ndim != 3:
        raise ValueError(
            f"{name} must have shape [B, S, C] (batch, posterior samples, classes), "
            f"got shape {tuple(probs.shape)}"
        )
    if probs.shape[1] < 1 or probs.shape[2] < 2:
        raise ValueError(
            f"{name} needs S >= 1 samples and C >= 2 classes, got shape {tuple(probs.shape)}"
        )
    detached = probs.detach()
    if not torch.isfinite(detached).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if (detached < 0).any():
        raise ValueError(
            f"{name} must be non-negative probabilities, got a negative entry; "
            "if these are logits, say output='logits'"
        )
    sums = detached.sum(-1)
    if ((sums - 1).abs() > _SUM_TOLERANCE).any():
        worst = sums[(sums - 1).abs().argmax() // sums.shape[1], 0].item()
        raise ValueError(
            f"{name} must sum to 1 over the class axis (last), got sums like {worst:.4g}; "
            "if these are logits, say output='logits'"
        )
    return probs


# ------------------------------------------------------------------------- uncertainty
def _neg_xlogx(p: Tensor) -> Tensor:
    """``-p log p`` elementwise, with 0 · log 0 = 0 (never NaN).

    Like ``-xlogy(p, p)``, but the log is clamped at the smallest normal float: a softmax
    that underflows to exactly 0 then gets a finite gradient (xlogy's is 0/0 = NaN).
    """
    return -p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def class_decomposition(probs: Tensor) -> dict[str, Tensor]:
    """Each class's share of the three uncertainties, ``[B, C]`` each, in float64.

    ``total_c = -p̄_c log p̄_c``, ``aleatoric_c = mean_s -P_sc log P_sc`` and
    ``epistemic_c = total_c - aleatoric_c`` (≥ 0: ``-p log p`` is concave). Summed over
    C they give :func:`decompose`.

    Why float64: the epistemic part is the difference of two close numbers. In float32
    (about 7 digits) an image whose members nearly agree keeps only 2-3 digits of it, and
    which ones depends on the CPU's kernels (the same model gave relative errors of 4e-5
    on one x86 CPU and under 1e-5 on another). float64 keeps 16 digits, so the result
    is exact to float32's precision on any machine. ``probs`` is [B, S, C] with small S
    and C: the cost is nothing next to the network that made it.
    """
    wide = probs.double()
    total = _neg_xlogx(wide.mean(1))  # [B, C]
    aleatoric = _neg_xlogx(wide).mean(1)  # [B, S, C] -> [B, C]
    return {"total": total, "aleatoric": aleatoric, "epistemic": total - aleatoric}


def decompose(probs: Tensor) -> dict[str, Tensor]:
    """Total, aleatoric and epistemic uncertainty of ``probs [B, S, C]``, each ``[B]``.

    Computed in float64 (see :func:`class_decomposition`) and returned in the dtype of
    ``probs``; differentiable. Epistemic uncertainty is the mutual information
    ``U_t - U_a``; float error below 0 is clamped at 0. With S = 1 it is 0 by
    definition; asking to *explain* it is an error raised by :func:`uncertainty`.
    """
    check_probs(probs)
    parts = {kind: part.sum(-1) for kind, part in class_decomposition(probs).items()}
    parts["epistemic"] = parts["epistemic"].clamp_min(0.0)
    return {kind: part.to(probs.dtype) for kind, part in parts.items()}


def uncertainty(probs: Tensor, kind: UncertaintySpec = "total") -> Tensor:
    """One uncertainty ``[B]`` of ``probs [B, S, C]``: ``total | aleatoric | epistemic``.

    ``kind`` may also be any callable ``P [B, S, C] -> [B]``.
    """
    if callable(kind):
        check_probs(probs)
        value = kind(probs)
        if not isinstance(value, Tensor) or value.shape != probs.shape[:1]:
            raise ValueError(
                f"kind: a callable uncertainty must return a tensor [B] = [{probs.shape[0]}], "
                f"got {getattr(value, 'shape', type(value).__name__)}"
            )
        return value
    if kind not in UNCERTAINTY_KINDS:
        raise ValueError(f"kind must be one of {UNCERTAINTY_KINDS} or a callable, got {kind!r}")
    if kind == "epistemic" and probs.ndim == 3 and probs.shape[1] < 2:
        raise ValueError(
            "kind='epistemic' needs a posterior with S >= 2 samples, got S = 1: "
            "a single model has no epistemic uncertainty to explain"
        )
    return decompose(probs)[kind]


# -------------------------------------------------------------------------- posteriors
class Posterior(nn.Module):
    """Base class: ``forward(x [B, C, H, W]) -> probabilities [B, S, C]``.

    A posterior whose samples can run alone (an ensemble's members, a sampled posterior's
    frozen networks) also has ``sample_probs(x, s) -> [B, C]``, what ``forward`` gives as
    ``P[:, s]`` for the cost of one sample: :class:`SingleSample` uses it."""

    num_samples: int

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class SingleSample(Posterior):
    """Sample ``s`` of ``posterior`` as a posterior of its own: ``x -> P[:, s:s+1]``
    ``[B, 1, C]``, so that any attribution method explains one sample's output. Runs
    that sample alone where the posterior can (``sample_probs``), else slices the full
    forward."""

    def __init__(self, posterior: Callable[[Tensor], Tensor], s: int) -> None:
        super().__init__()
        self.posterior, self.s, self.num_samples = posterior, s, 1

    def forward(self, x: Tensor) -> Tensor:
        alone = getattr(self.posterior, "sample_probs", None)
        if alone is not None:
            return alone(x, self.s)[:, None]
        return self.posterior(x)[:, self.s : self.s + 1]


#: What every attribution method takes as its posterior: a :class:`Posterior`, a list of
#: member modules returning logits (a deep ensemble, made one by :func:`as_posterior`), or
#: any callable ``x [B, C, H, W] -> probabilities [B, S, C]``.
PosteriorLike = Posterior | Sequence[nn.Module] | Callable[[Tensor], Tensor]


class ProbabilityLikeLogitsWarning(UserWarning):
    """A model said to return logits returns values that already sum to 1."""


def _to_probs(out: Tensor, output: OutputKind, source: str) -> Tensor:
    """Turn a model's output into probabilities along the last axis (never guessing)."""
    if output == "logits":
        detached = out.detach()
        looks_like_probs = (
            bool((detached >= 0).all())
            and bool((detached <= 1).all())
            and bool(((detached.sum(-1) - 1).abs() < 1e-4).all())
        )
        if looks_like_probs:
            warnings.warn(
                f"{source} returns values that already sum to 1 like probabilities, but "
                "output='logits' applies a softmax to them; pass output='probs' if they are "
                "probabilities",
                ProbabilityLikeLogitsWarning,
                stacklevel=3,
            )
        return out.softmax(-1)
    return out


class Ensemble(Posterior):
    """A deep ensemble: ``S`` independent members, each ``x -> [B, C]``.

    ``output`` says what the members return: ``"logits"`` (softmax applied here) or
    ``"probs"``. Members are run in eval mode by :func:`predict_probs`; the
    ensemble itself does not change the members' mode.
    """

    def __init__(self, members: Sequence[nn.Module], output: OutputKind = "logits") -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("members must hold at least one model, got an empty sequence")
        if output not in ("logits", "probs"):
            raise ValueError(f"output must be 'logits' or 'probs', got {output!r}")
        self.members = nn.ModuleList(members)
        self.output: OutputKind = output
        self.num_samples = len(members)

    def _outputs(self, x: Tensor) -> Tensor:
        outs = [member(x) for member in self.members]  # S x [B, C]
        for s, out in enumerate(outs):
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(
                    f"members[{s}] must return [B, C] = [{x.shape[0]}, C], got {tuple(out.shape)}"
                )
        return torch.stack(outs, dim=1)  # [B, S, C]

    def forward(self, x: Tensor) -> Tensor:
        return _to_probs(self._outputs(x), self.output, "the ensemble's members")

    def sample_probs(self, x: Tensor, s: int) -> Tensor:
        """Member ``s``'s probabilities ``[B, C]``, running that member alone."""
        out = self.members[s](x)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"members[{s}] must return [B, C] = [{x.shape[0]}, C], got {tuple(out.shape)}"
            )
        return _to_probs(out, self.output, f"members[{s}]")

    def logits(self, x: Tensor) -> Tensor:
        """The members' logits ``[B, S, C]`` (for methods that explain logits)."""
        if self.output != "logits":
            raise ValueError("the members return probabilities (output='probs'): "
                             "their logits are not available")
        return self._outputs(x)


class _WrappedPosterior(Posterior):
    """A module or callable whose output is reshaped to ``[B, S, C]``."""

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        output: OutputKind,
        num_samples: int | None,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.output: OutputKind = output
        self.num_samples = num_samples if num_samples is not None else -1

    def forward(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        if not isinstance(out, Tensor):
            raise ValueError(f"the posterior must return a tensor, got {type(out).__name__}")
        batch = x.shape[0]
        if out.ndim == 3:
            if out.shape[0] != batch:
                raise ValueError(
                    f"the posterior returned a 3-d output {tuple(out.shape)}; expected "
                    f"[B, S, C] with B = {batch} (batch first)"
                )
            probs = out  # [B, S, C]
        elif out.ndim == 2 and self.num_samples > 0:
            if out.shape[0] != self.num_samples * batch:
                raise ValueError(
                    f"the posterior returned {tuple(out.shape)}; with num_samples="
                    f"{self.num_samples} expected [(S·B), C] = [{self.num_samples * batch}, C]"
                )
            # TorchUncertainty stacks members first: rows [s·B, (s+1)·B) belong to member s.
            probs = out.view(self.num_samples, batch, -1).transpose(0, 1)  # [B, S, C]
        else:
            raise ValueError(
                f"the posterior returned shape {tuple(out.shape)}: a single model's [B, C] has no "
                "posterior samples; pass a list of members, a module returning [B, S, C], "
                "or num_samples=S for a module returning members stacked as [(S·B), C]"
            )
        return _to_probs(probs, self.output, "the posterior")


def as_posterior(
    model: nn.Module | Sequence[nn.Module] | Callable[[Tensor], Tensor],
    *,
    output: OutputKind = "logits",
    num_samples: int | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
) -> Posterior:
    """Wrap a model into a :class:`Posterior` returning probabilities ``[B, S, C]``.

    Accepted:

    * a list or tuple of modules, each ``x -> [B, C]`` (a deep ensemble);
    * a module or callable returning ``[B, S, C]``;
    * a module or callable returning members stacked as ``[(S·B), C]``, member-major
      (TorchUncertainty's layout), with ``num_samples=S``;
    * a :class:`Posterior` (returned unchanged; it cannot take ``normalize`` or
      ``preprocess``).

    ``output`` says whether the model returns ``"logits"`` (default; a softmax is
    applied, with a warning if they already look like probabilities) or ``"probs"``.

    Images stay in [0, 1] image space; what the model was trained on is put in front of
    it: ``normalize=(mean, std)`` per channel (as torchvision's ``Normalize``, here a
    frozen 1×1 convolution whose bias FullGrad and UA-Backprop account for), or any
    ``preprocess`` callable ``x -> x'``
    (:mod:`uattr.posteriors.preprocess`).
    """
    from .posteriors.preprocess import Preprocessed, preprocessing

    if output not in ("logits", "probs"):
        raise ValueError(f"output must be 'logits' or 'probs', got {output!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    transform = preprocessing(normalize, preprocess)
    if isinstance(model, Posterior):
        if transform is not None:
            raise ValueError("model is a Posterior already: give normalize / preprocess "
                             "where its networks are wrapped (as_posterior of the networks)")
        return model
    if isinstance(model, list | tuple | nn.ModuleList):
        if not all(isinstance(m, nn.Module) or callable(m) for m in model):
            raise ValueError("model: every member of the list must be an nn.Module or callable")
        if not all(isinstance(m, nn.Module) for m in model):
            model = [_CallableModule(m) for m in model]
        if transform is not None:  # one transform, shared: the members see the same input
            model = [Preprocessed(m, transform) for m in model]
        return Ensemble(model, output=output)
    if not callable(model):
        raise ValueError(
            f"model must be a list of modules, a module or a callable, got {type(model).__name__}"
        )
    if transform is not None:
        model = Preprocessed(model, transform)
    return _WrappedPosterior(model, output, num_samples)


class _CallableModule(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def uncertainty_fn(
    posterior: Callable[[Tensor], Tensor], kind: UncertaintySpec = "total"
) -> Callable[[Tensor], Tensor]:
    """The map ``x [B, C, H, W] -> U(x) [B]`` that attribution methods explain: one scalar
    per image, differentiable in ``x``. It is the bridge to any attribution library that
    explains a forward function, e.g. Captum: ``Saliency(uncertainty_fn(posterior,
    "epistemic")).attribute(x)`` is the gradient of the epistemic uncertainty (``[B, C,
    H, W]``; no ``target``, as there is one output per image)."""
    if not callable(kind) and kind not in UNCERTAINTY_KINDS:
        raise ValueError(
            f"uncertainty must be one of {UNCERTAINTY_KINDS} or a callable, got {kind!r}"
        )

    def fn(x: Tensor) -> Tensor:
        return uncertainty(posterior(x), kind)

    return fn


@torch.no_grad()
def predict_probs(
    posterior: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Tensor:
    """Probabilities ``[N, S, C]`` of a large ``x [N, C, H, W]``, computed in chunks.

    Runs on ``device`` (default: the device of ``x``) and returns on the CPU.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_images(x, unit_range=False)
    device = torch.device(device) if device is not None else x.device
    chunks = range(0, x.shape[0], batch_size)
    outs = [
        posterior(x[i : i + batch_size].to(device)).cpu()
        for i in tqdm(chunks, desc="predict", disable=not progress, leave=False)
    ]
    return torch.cat(outs)  # [N, S, C]

