"""Posteriors and the entropy decomposition of predictive uncertainty.

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

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "UNCERTAINTY_KINDS",
    "Ensemble",
    "Flipout",
    "MCDropConnect",
    "MCDropout",
    "Posterior",
    "SampledPosterior",
    "as_posterior",
    "check_images",
    "check_probs",
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
def _entropy(p: Tensor) -> Tensor:
    """Entropy over the last axis, with 0 · log 0 = 0 (never NaN).

    Like ``xlogy(p, p)``, but the log is clamped at the smallest normal float: a softmax
    that underflows to exactly 0 then gets a finite gradient (xlogy's is 0/0 = NaN).
    """
    tiny = torch.finfo(p.dtype).tiny
    return -(p * torch.log(p.clamp_min(tiny))).sum(-1)


def decompose(probs: Tensor) -> dict[str, Tensor]:
    """Total, aleatoric and epistemic uncertainty of ``probs [B, S, C]``, each ``[B]``.

    Epistemic uncertainty is the mutual information ``U_t - U_a``; float error
    below 0 is clamped at 0. With S = 1 it is 0 by definition; asking to *explain*
    it is an error raised by :func:`uncertainty`.
    """
    check_probs(probs)
    total = _entropy(probs.mean(1))  # [B]
    aleatoric = _entropy(probs).mean(1)  # [B, S] -> [B]
    epistemic = (total - aleatoric).clamp_min(0.0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic}


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
    """Base class: ``forward(x [B, C, H, W]) -> probabilities [B, S, C]``."""

    num_samples: int

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


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
) -> Posterior:
    """Wrap a model into a :class:`Posterior` returning probabilities ``[B, S, C]``.

    Accepted:

    * a list or tuple of modules, each ``x -> [B, C]`` (a deep ensemble);
    * a module or callable returning ``[B, S, C]``;
    * a module or callable returning members stacked as ``[(S·B), C]``, member-major
      (TorchUncertainty's layout), with ``num_samples=S``;
    * a :class:`Posterior` (returned unchanged).

    ``output`` says whether the model returns ``"logits"`` (default; a softmax is
    applied, with a warning if they already look like probabilities) or ``"probs"``.
    """
    if output not in ("logits", "probs"):
        raise ValueError(f"output must be 'logits' or 'probs', got {output!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if isinstance(model, Posterior):
        return model
    if isinstance(model, list | tuple | nn.ModuleList):
        if not all(isinstance(m, nn.Module) or callable(m) for m in model):
            raise ValueError("model: every member of the list must be an nn.Module or callable")
        if not all(isinstance(m, nn.Module) for m in model):
            model = [_CallableModule(m) for m in model]
        return Ensemble(model, output=output)
    if not callable(model):
        raise ValueError(
            f"model must be a list of modules, a module or a callable, got {type(model).__name__}"
        )
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
    """The map ``x [B, C, H, W] -> U(x) [B]`` that attribution methods explain."""
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


# ---------------------------------------------------------------- sampled posteriors
class SampledPosterior(Posterior):
    """S passes of one stochastic network ``x -> logits [B, C]``, stacked to ``[B, S, C]``.

    With ``freeze=True`` (the default) sample ``s`` draws its noise from a generator
    seeded by ``(seed, s)`` alone, and the draw is shared by every image of the batch:
    the S samples are then S fixed networks, ``U(x)`` is a deterministic function of
    ``x`` and of nothing else in the batch, and every attribution method works on the
    posterior as on an ensemble. With ``freeze=False`` every call draws fresh noise.

    Subclasses say which noise a sample installs (:meth:`_sample`) and remove it
    afterwards (:meth:`_clear`).
    """

    def __init__(self, model: nn.Module, *, samples: int, seed: int, freeze: bool) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module returning logits [B, C], "
                             f"got {type(model).__name__}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        self.model = model
        self.num_samples = samples
        self.seed = seed
        self.freeze = freeze
        self._calls = 0
        self._cache: dict = {}

    def _generator(self, s: int) -> torch.Generator:
        call = 0 if self.freeze else self._calls
        state = np.random.SeedSequence([self.seed, call, s]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(state))

    def _draw(self, key: tuple, s: int, draw: Callable[[torch.Generator], Tensor],
              device: torch.device) -> Tensor:
        """Sample ``s``'s noise for ``key``, drawn on the CPU (the same on any device);
        kept while frozen."""
        cache_key = (key, s, device)
        if self.freeze and cache_key in self._cache:
            return self._cache[cache_key]
        noise = draw(self._generator(s)).to(device)
        if self.freeze:
            self._cache[cache_key] = noise
        return noise

    def _sample(self, s: int, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Logits ``[B, C]`` of sample ``s``."""
        raise NotImplementedError

    def logits(self, x: Tensor) -> Tensor:
        """The S samples' logits ``[B, S, C]``."""
        outs = [self._sample(s, x) for s in range(self.num_samples)]  # S x [B, C]
        self._calls += 1
        for s, out in enumerate(outs):
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(f"model must return logits [B, C] = [{x.shape[0]}, C], "
                                 f"got {tuple(out.shape)} for sample {s}")
        return torch.stack(outs, dim=1)  # [B, S, C]

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x).softmax(-1)

    def extra_repr(self) -> str:
        return f"samples={self.num_samples}, seed={self.seed}, freeze={self.freeze}"


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


class MCDropout(SampledPosterior):
    """MC-Dropout (Gal & Ghahramani 2016): the model's dropout layers stay active at
    inference, S passes.

    The model runs as it is (eval mode for everything else); each ``nn.Dropout`` /
    ``nn.Dropout2d`` layer's output is replaced by its input times a mask of sample
    ``s`` (``Bernoulli(1 - p) / (1 - p)``, per feature for ``nn.Dropout`` and per channel
    for ``nn.Dropout2d``), exactly what the layer does in training mode, but with masks
    this posterior controls. ``p`` is each layer's own. Dropout called as a function
    (``F.dropout``) cannot be reached: the model needs dropout modules.
    """

    def __init__(self, model: nn.Module, *, samples: int = 10, seed: int = 0,
                 freeze: bool = True) -> None:
        super().__init__(model, samples=samples, seed=seed, freeze=freeze)
        self.dropouts = [m for m in model.modules() if isinstance(m, _DROPOUTS)]
        if not self.dropouts:
            raise ValueError("model has no nn.Dropout layers: MC-Dropout needs dropout "
                             "modules (F.dropout calls cannot be switched on)")

    def _sample(self, s: int, x: Tensor) -> Tensor:
        hooks = [layer.register_forward_hook(self._masker(s, i))
                 for i, layer in enumerate(self.dropouts)]
        try:
            return self.model(x)
        finally:
            for hook in hooks:
                hook.remove()

    def _masker(self, s: int, index: int) -> Callable:
        def mask_output(layer: nn.Module, inputs: tuple, _output: Tensor) -> Tensor:
            x = inputs[0]
            keep = 1.0 - layer.p
            if keep == 1.0:
                return x
            # nn.Dropout: one mask entry per feature; Dropout{1,2,3}d: per channel
            shape = x.shape[1:] if type(layer) is nn.Dropout \
                else (x.shape[1],) + (1,) * (x.ndim - 2)
            if not self.freeze:  # fresh masks: one per image, as in training
                shape = (x.shape[0], *shape)
            mask = self._draw(("dropout", index, tuple(shape)), s,
                              lambda g: torch.bernoulli(torch.full(shape, keep), generator=g),
                              x.device)
            return x * mask.to(x.dtype) / keep if keep > 0 else x * 0

        return mask_output


class MCDropConnect(SampledPosterior):
    """MC-DropConnect (Mobiny et al. 2021): every weight of the model's ``nn.Linear`` and
    ``nn.Conv2d`` layers is dropped with probability ``p`` at inference (and kept weights
    scaled by ``1 / (1 - p)``), one mask per sample shared by the batch; biases are kept.
    The model is called with the masked weights through ``torch.func.functional_call``,
    so it is never modified."""

    def __init__(self, model: nn.Module, *, p: float = 0.1, samples: int = 10, seed: int = 0,
                 freeze: bool = True) -> None:
        super().__init__(model, samples=samples, seed=seed, freeze=freeze)
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        from .stochastic import dropconnect_weights

        self.weight_names = list(dropconnect_weights(model))

    def _sample(self, s: int, x: Tensor) -> Tensor:
        params = dict(self.model.named_parameters())
        keep = 1.0 - self.p
        masked = {}
        for name in self.weight_names:
            w = params[name]
            mask = self._draw(("dropconnect", name), s,
                              lambda g, w=w: torch.bernoulli(torch.full(w.shape, keep),
                                                             generator=g), w.device)
            masked[name] = w * mask.to(w.dtype) / keep
        return torch.func.functional_call(self.model, masked, (x,))

    def extra_repr(self) -> str:
        return f"p={self.p}, {super().extra_repr()}"


class Flipout(SampledPosterior):
    """A network of Flipout layers (mean-field Gaussian weights, :mod:`uattr.stochastic`):
    sample ``s`` sets every layer's weight to ``μ + σ ⊙ ε_s``, one draw shared by the
    batch. (Flipout's per-image sign flips only reduce the variance of the training
    gradient; at inference one draw per sample is the posterior itself.)"""

    def __init__(self, model: nn.Module, *, samples: int = 10, seed: int = 0,
                 freeze: bool = True) -> None:
        super().__init__(model, samples=samples, seed=seed, freeze=freeze)
        from .stochastic import flipout_layers

        self.layers = flipout_layers(model)
        if not self.layers:
            raise ValueError("model has no Flipout layers; convert it with "
                             "uattr.stochastic.to_flipout and train it")

    def _sample(self, s: int, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            w = layer.weight
            layer.weight_noise = self._draw(
                ("flipout", i), s,
                lambda g, w=w: torch.randn(w.shape, generator=g), w.device).to(w.dtype)
        try:
            return self.model(x)
        finally:
            for layer in self.layers:
                layer.weight_noise = None
