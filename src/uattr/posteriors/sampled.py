"""Posteriors that sample one stochastic network: MC-Dropout, MC-DropConnect, Flipout.

Each draws S samples of the network's noise and stacks their logits to ``[B, S, C]``,
so that every attribution method works on them as on an :class:`uattr.Ensemble`
(the layout and the uncertainty decomposition are those of :mod:`uattr.uq`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..uq import Posterior
from .stochastic import dropconnect_weights, flipout_layers

__all__ = ["Flipout", "MCDropConnect", "MCDropout", "SampledPosterior", "StochasticPosterior"]


class SampledPosterior(Posterior):
    """S passes of one stochastic network ``x -> logits [B, C]``, stacked to ``[B, S, C]``.

    With ``freeze=True`` (the default) sample ``s`` draws its noise from a generator
    seeded by ``(seed, s)`` alone, and the draw is shared by every image of the batch:
    the S samples are then S fixed networks, ``U(x)`` is a deterministic function of
    ``x`` and of nothing else in the batch, and every attribution method works on the
    posterior as on an ensemble. With ``freeze=False`` every call draws fresh noise.

    Subclasses say how sample ``s`` computes its logits with its own noise
    (:meth:`_sample`), leaving the model as they found it.
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

    def sample_probs(self, x: Tensor, s: int) -> Tensor:
        """Sample ``s``'s probabilities ``[B, C]``: that network alone when the noise is
        frozen (the same as ``forward(x)[:, s]``), else a fresh draw of all S."""
        if not self.freeze:
            return self(x)[:, s]
        return self._sample(s, x).softmax(-1)

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
    """A network of Flipout layers (mean-field Gaussian weights,
    :mod:`uattr.posteriors.stochastic`): sample ``s`` sets every layer's weight to
    ``μ + σ ⊙ ε_s``, one draw shared by the batch. (Flipout's per-image sign flips only
    reduce the variance of the training gradient; at inference one draw per sample is the
    posterior itself.)"""

    def __init__(self, model: nn.Module, *, samples: int = 10, seed: int = 0,
                 freeze: bool = True) -> None:
        super().__init__(model, samples=samples, seed=seed, freeze=freeze)
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


class StochasticPosterior(SampledPosterior):
    """Any network whose forward pass is random, frozen into S samples: bayesian-torch's
    Reparameterization and Flipout layers, dropout left in training mode, a network that
    draws its own noise from torch's global generator.

    Sample ``s`` runs the network with torch's random state seeded by ``(seed, s)`` alone
    (inside :func:`torch.random.fork_rng`, so the caller's state is untouched, on the CPU
    and on the input's CUDA device) and through :func:`torch.func.vmap` with
    ``randomness="same"``, so that every image of the batch gets the same draw. ``U(x)``
    is then a deterministic function of ``x`` and of nothing else in the batch, as for
    the other sampled posteriors, and every method can explain it.

    The network must run on one image ``[1, C, H, W]`` under ``vmap`` (the layers of
    torch and bayesian-torch do; a returned ``(logits, kl)`` pair is taken for its
    logits). Methods that hook the network's layers (FullGrad, Guided Backprop,
    UA-Backprop's FullGrad path) cannot see through ``vmap``: give them an ensemble or
    :class:`MCDropout` instead.
    """

    def __init__(self, model: nn.Module, *, samples: int = 10, seed: int = 0) -> None:
        super().__init__(model, samples=samples, seed=seed, freeze=True)

    def _one(self, image: Tensor) -> Tensor:
        """Logits ``[C]`` of one image ``[C, H, W]``."""
        out = self.model(image[None])
        if isinstance(out, tuple):  # bayesian-torch layers may return (logits, kl)
            out = out[0]
        return out[0]

    def _sample(self, s: int, x: Tensor) -> Tensor:
        seed = int(self._generator(s).initial_seed())
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.func.vmap(self._one, randomness="same")(x)  # [B, C]
