"""The one interface every attribution method shares."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..uq import UNCERTAINTY_KINDS, PosteriorLike, UncertaintySpec, as_posterior, check_images
from ..uq import uncertainty as _uncertainty

__all__ = ["UncertaintyAttribution", "check_posterior_takes", "constructor_settings",
           "fingerprint", "keyword_defaults", "require_layers"]


class UncertaintyAttribution:
    """Base class: configure in ``__init__``, explain with ``attribute``.

    ``posterior`` is a :class:`~uattr.uq.Posterior`, a list of member modules returning
    logits (a deep ensemble), or any callable ``x -> probabilities [B, S, C]`` (checked
    to sum to 1: logits must go through :func:`~uattr.as_posterior`).
    ``uncertainty`` is ``"total" | "aleatoric" | "epistemic"`` or a callable
    ``P [B, S, C] -> [B]``.

    ``attribute(x [B, C, H, W], *, segments=None) -> [B, H, W]``: higher means the
    region contributes more to the uncertainty (perturbing it lowers the uncertainty).
    """

    #: short name used in tables
    name: str = "attribution"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total") -> None:
        if isinstance(posterior, list | tuple | nn.ModuleList):
            posterior = as_posterior(posterior)
        if not callable(posterior):
            raise ValueError(
                "posterior must be a Posterior, a list of modules or a callable x -> [B, S, C], "
                f"got {type(posterior).__name__}"
            )
        if not callable(uncertainty) and uncertainty not in UNCERTAINTY_KINDS:
            raise ValueError(
                f"uncertainty must be one of {UNCERTAINTY_KINDS} or a callable, got {uncertainty!r}"
            )
        self.posterior = posterior
        self.uncertainty = uncertainty

    def uncertainty_of(self, x: Tensor) -> Tensor:
        """``U(x) [B]``, differentiable in ``x`` (a ``ValueError`` when ``x`` carries a
        gradient and the posterior's output does not: :func:`require_gradient`)."""
        return _uncertainty(require_gradient(x, self.posterior(x), type(self).__name__),
                            self.uncertainty)

    def _check(self, x: Tensor) -> Tensor:
        x = check_images(x, "x")
        taken = getattr(self, "_taken_shape", None)
        if taken != tuple(x.shape[1:]):
            # once per image shape: one pass of one image, then, on the method's first
            # call only, the same pass again for the randomness check
            check_posterior_takes(self.posterior, x[:1], repeat=taken is None)
            self._taken_shape = tuple(x.shape[1:])
        return x

    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def counted_networks(self) -> tuple[nn.Module, ...]:
        """Networks the method runs besides the posterior's, once per image and step (a
        generative model's decoder): a pass counter counts one pass through them and the
        posterior together as one forward pass."""
        return ()

    def settings(self) -> dict[str, Any]:
        """Every argument of the constructor but the posterior, with the value the method
        holds (a default already resolved where ``__init__`` resolves it): what its maps
        were computed with. A stored result is keyed by it and ``repr`` shows it, so a
        subclass stores each argument under its own name and never writes them twice."""
        return constructor_settings(self)

    def key_settings(self) -> dict[str, Any]:
        """The settings that decide the maps, which key a stored result: :meth:`settings`
        but those that have no effect as the others are (a subclass leaves them out, so
        that adding a setting does not orphan what was computed before it)."""
        return self.settings()

    def __repr__(self) -> str:
        listed = ", ".join(f"{name}={value!r}" for name, value in self.settings().items())
        return f"{type(self).__name__}({listed})"


class RandomPosteriorWarning(UserWarning):
    """The posterior gives another output on every call for the same input."""


def check_posterior_takes(posterior: Callable[[Tensor], Tensor], x: Tensor,
                          repeat: bool = True) -> None:
    """Run ``posterior`` on one image ``x [1, C, H, W]``: a ``ValueError`` naming ``x``
    when the network cannot take images of that shape (a grey model given colour images,
    a colour one given grey, a fixed-size network another size), where torch would raise
    a ``RuntimeError`` about matrix or weight shapes from deep inside the method; with
    ``repeat``, a second pass for :func:`warn_if_random`. The passes are not counted as
    the method's."""
    from ..posteriors.passes import uncounted

    try:
        with torch.no_grad(), uncounted():
            first = posterior(x)
    except RuntimeError as error:
        channels = x.shape[1]
        hint = ("a grey model takes x.mean(1, keepdim=True)" if channels == 3 else
                "a colour model takes x.expand(-1, 3, -1, -1)" if channels == 1 else
                "give the channels it was trained on")
        raise ValueError(
            f"x: the posterior cannot take images of shape [C, H, W] = {list(x.shape[1:])} "
            f"({channels} channel{'s' if channels != 1 else ''}): give images of the channel "
            f"count and size its network was trained on ({hint}). The network said: "
            f"{str(error).splitlines()[0]}") from error
    if repeat:
        warn_if_random(posterior, x, first)


def warn_if_random(posterior: Callable[[Tensor], Tensor], x: Tensor,
                   first: Tensor | None = None) -> None:
    """Warn (:class:`RandomPosteriorWarning`) when two calls of ``posterior`` on the same
    image ``x [1, C, H, W]`` differ by more than float32 rounding (``first``: the output
    of a call already made): its forward pass draws fresh noise (dropout in training
    mode, Bayesian layers that sample on every call), so U(x) is not a function of x and
    every method would average over that noise silently. The passes are not counted as
    the method's."""
    from ..posteriors.passes import uncounted

    with torch.no_grad(), uncounted():
        first = posterior(x) if first is None else first
        second = posterior(x)
    # probabilities in [0, 1] from the same float32 computation twice: a deterministic
    # network repeats them bit for bit; 1e-6 leaves room for nondeterministic kernels
    if isinstance(first, Tensor) and first.shape == second.shape and \
            float((first - second).abs().max()) > 1e-6:
        import warnings

        warnings.warn(RandomPosteriorWarning(
            "the posterior returns different outputs for the same image on two calls: its "
            "forward pass draws fresh noise (dropout left in training mode, Bayesian layers "
            "that sample weights on every call), so U(x) changes from call to call and the "
            "map averages over that noise. Freeze it: uattr.SampledPosterior(model, "
            "samples=S) runs S samples, each with its own fixed random state (or call "
            ".eval() if the noise is not meant to be there)"), stacklevel=5)


def require_gradient(x: Tensor, out: Tensor, method: str) -> Tensor:
    """``out`` (the posterior's output on ``x``), unchanged; a ``ValueError`` that names
    the cause and the fix when ``x`` carries a gradient and ``out`` does not. A posterior
    run under ``torch.no_grad()`` or detached inside would otherwise end in torch's
    "element 0 of tensors does not require grad", or, where the method's loss has other
    terms (the optimization-based method's sparsity, CLUE's distance), in a map shaped
    by those terms alone."""
    if torch.is_grad_enabled() and x.requires_grad and not out.requires_grad:
        raise ValueError(
            f"{method} needs the gradient of the posterior's output with respect to the "
            "image, and the posterior returns none: it runs the network under "
            "torch.no_grad() or detaches its output (as laplace-torch's "
            "predictive_samples and many predict() helpers do). Pass networks that run with "
            "gradients: an ensemble's members, a stochastic network through "
            "uattr.SampledPosterior, or S weight samples frozen into S networks; methods "
            "that need no gradient (Occlusion, KernelSHAP, LIME) take it as it is")
    return out


def constructor_settings(obj: object) -> dict[str, Any]:
    """``{argument: value}`` for every argument of ``type(obj).__init__`` but ``self`` and
    ``posterior``, read from the attribute of the same name (which every configurable
    object of uattr keeps), as JSON can hold them."""
    names = [name for name in inspect.signature(type(obj).__init__).parameters
             if name not in ("self", "posterior")]
    return {name: _plain(getattr(obj, name)) for name in names}


def keyword_defaults(function: Callable) -> dict[str, Any]:
    """``{argument: default}`` of every argument of ``function`` that has one: settings
    read from the function itself instead of written a second time."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _plain(value: Any) -> Any:
    """A setting as JSON can hold it: an explainer (a warm start's) by its class and
    settings, a callable (an uncertainty of the user's) by its qualified name."""
    if isinstance(value, UncertaintyAttribution):
        return {"class": type(value).__name__, **value.settings()}
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}"
    return value


def fingerprint(model: object) -> str:
    """A short hash of a module: its structure (``repr``), the plain public attributes
    of each of its submodules (a sampled posterior's samples and seed, the train/eval
    mode) and every weight and buffer. A plain callable shows none of these, so it is
    known by its qualified name only."""
    digest = hashlib.sha1()
    if isinstance(model, nn.Module):
        digest.update(repr(model).encode())
        for name, module in model.named_modules():
            plain = {key: value for key, value in vars(module).items()
                     if not key.startswith("_")
                     and isinstance(value, bool | int | float | str | tuple)}
            digest.update(f"{name}: {sorted(plain.items())}".encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        digest.update(f"{getattr(model, '__module__', '?')}."
                      f"{getattr(model, '__qualname__', type(model).__name__)}".encode())
    return digest.hexdigest()[:12]


def require_layers(posterior: object, method: str, layers: str,
                   kind: type[nn.Module]) -> None:
    """``ValueError`` when ``posterior`` runs a model whose ``layers`` (modules of ``kind``)
    a method cannot hook: TorchScript, a ``torch.export`` program (a graph module with no
    ``kind`` module left), or a :class:`~uattr.posteriors.sampled.StochasticPosterior`
    (its network runs under ``vmap``). The method would find no layer and silently return
    another map."""
    if not isinstance(posterior, nn.Module):
        return
    from ..posteriors.sampled import StochasticPosterior

    modules = list(posterior.modules())
    if any(isinstance(m, StochasticPosterior) for m in modules):
        raise ValueError(
            f"{method} hooks the model's {layers}, which StochasticPosterior runs under "
            "torch.func.vmap, where hooks see no layer outputs: explain it with a method "
            "that needs no hooks (Grad, Integrated Gradients, SmoothGrad, the "
            "optimization-based method, UA-Backprop with path='gradient', the perturbation "
            "methods), or freeze the network's samples into an ensemble of modules")
    scripted = any(isinstance(m, torch.jit.ScriptModule) for m in modules)
    exported = any(isinstance(m, torch.fx.GraphModule)
                   and not any(isinstance(c, kind) for c in m.modules()) for m in modules)
    if scripted or exported:
        raise ValueError(
            f"{method} hooks the model's {layers}, which a TorchScript or torch.export model "
            "compiles away: load the model as Python modules instead (on the command line, "
            "--model module:function or file.py:function returning them)")
