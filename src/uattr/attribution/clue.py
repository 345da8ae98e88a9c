"""CLUE and δ-CLUE: uncertainty explained by a counterfactual a generative model can make.

CLUE (Antorán et al., ICLR 2021) looks, in the latent space of a VAE, for the image
nearest to x whose uncertainty is lowest,

    z* = argmin_z  U(dec(z)) + λ_x · mean_pixels |dec(z) - x|        # from z0 = μ_enc(x)

and explains x by what had to change: the map is ``|dec(z*) - x|`` summed over channels.
δ-CLUE (Ley et al., 2022) keeps z in the ball ``‖z - z0‖ ≤ δ`` (a projection after every
step) and starts from several points around z0, keeping the start of lowest cost.
papers/002 compares UA-Backprop against both (Tables 1 and 2).

Written here because Captum has no counterfactual methods. Every image and every start
of a batch is one row of one optimisation (Adam works per coordinate, so rows do not
interact), and a row stops on its own: when its cost has changed by less than
``abs_tol``, or by less than ``rel_tol`` of its value, over the last ``patience`` steps
(the rule of the original CLUE code); a stopped row is neither evaluated nor moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..ops.checks import check_positive, check_positive_ints
from ..ops.rng import GeneratorArg, draw_normal, make_generators
from ..uq import PosteriorLike, UncertaintySpec
from .base import UncertaintyAttribution, fingerprint

__all__ = ["CLUE", "CLUEResult", "DeltaCLUE"]


@dataclass(frozen=True)
class CLUEResult:
    """What one CLUE call found, per image: ``maps [B, H, W]``, the counterfactual
    ``counterfactual [B, C, H, W]``, its latent ``latent [B, d]``, ``steps [B]`` (the most
    any start of the image took), and U of the image and of its counterfactual
    (``uncertainty_before``, ``uncertainty_after`` ``[B]``)."""

    maps: Tensor
    counterfactual: Tensor
    latent: Tensor
    steps: Tensor
    uncertainty_before: Tensor
    uncertainty_after: Tensor


class CLUE(UncertaintyAttribution):
    """CLUE's counterfactual map ``|dec(z*) - x|`` (channels summed), ``[B, H, W]``.

    ``vae`` has ``encode(x) -> (mean, log_var)`` and ``decode(z) -> [B, C, H, W]`` in
    [0, 1] (:class:`uattr.zoo.vae.VAE`). Defaults (Perez et al.'s evaluation code, kept
    after the comparison on MNIST's validation split in docs/hyperparameters.md): Adam
    with ``lr`` 0.1, at most ``max_steps`` 1000, ``lam_x`` 0.01 on the mean absolute
    distance; stop when the cost changes by < ``rel_tol`` 1e-2 relative or < ``abs_tol``
    1e-3 over ``patience`` 3 steps.

    ``delta``: keep ``‖z - z0‖ ≤ delta`` (``None``: no ball, plain CLUE). ``starts``:
    start 0 is z0 itself, the others ``z0 + start_std · ε`` (ε ~ N(0, I), drawn from the
    image's generator), and the start of lowest final cost is kept.
    """

    name = "clue"

    def __init__(self, posterior: PosteriorLike, vae: nn.Module,
                 uncertainty: UncertaintySpec = "total", *, lam_x: float = 0.01, lr: float = 0.1,
                 max_steps: int = 1000, rel_tol: float = 1e-2, abs_tol: float = 1e-3,
                 patience: int = 3, delta: float | None = None, starts: int = 1,
                 start_std: float = 0.15, seed: int = 0) -> None:
        super().__init__(posterior, uncertainty)
        if not (callable(getattr(vae, "encode", None)) and callable(getattr(vae, "decode", None))):
            raise ValueError("vae must have encode(x) -> (mean, log_var) and decode(z) -> "
                             f"images, got {type(vae).__name__}")
        check_positive(lr=lr)
        check_positive(lam_x=lam_x, rel_tol=rel_tol, abs_tol=abs_tol, start_std=start_std,
                       allow_zero=True)
        check_positive_ints(max_steps=max_steps, patience=patience, starts=starts)
        if delta is not None:
            check_positive(delta=delta)
        self.vae = vae
        self.lam_x, self.lr, self.max_steps = lam_x, lr, max_steps
        self.rel_tol, self.abs_tol, self.patience = rel_tol, abs_tol, patience
        self.delta, self.starts, self.start_std, self.seed = delta, starts, start_std, seed

    def settings(self) -> dict[str, Any]:
        """The constructor's settings, the VAE known by the hash of its weights."""
        return {**super().settings(), "vae": fingerprint(self.vae)}

    def counted_networks(self) -> tuple[nn.Module, ...]:
        decoder = getattr(self.vae, "decoder", None)
        return (decoder,) if isinstance(decoder, nn.Module) else ()

    def _cost(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(cost [N], U [N], decoded [N, C, H, W])`` of latents ``z [N, d]`` against
        images ``x [N, C, H, W]``."""
        decoded = self.vae.decode(z)
        u = self.uncertainty_of(decoded)
        return u + self.lam_x * (decoded - x).abs().mean((1, 2, 3)), u, decoded

    def _project(self, z: Tensor, z0: Tensor) -> Tensor:
        """``z`` moved into the ball ``‖z - z0‖ ≤ δ`` (unchanged without a ball)."""
        if self.delta is None:
            return z
        offset = z - z0
        norm = offset.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return z0 + offset * (self.delta / norm).clamp(max=1.0)

    def explain(self, x: Tensor, *, generator: GeneratorArg = None) -> CLUEResult:
        """Search the counterfactuals of the batch ``x [B, C, H, W]`` (all images and all
        starts in one optimisation); see :class:`CLUEResult`."""
        x = self._check(x).detach()
        batch, starts = x.shape[0], self.starts
        shape = getattr(self.vae, "shape", None)  # a VAE of uattr's knows its images
        if shape is not None and tuple(shape) != tuple(x.shape[1:]):
            raise ValueError(f"x: the VAE makes images of shape {tuple(shape)}, "
                             f"got {tuple(x.shape[1:])}")
        with torch.no_grad():
            z0 = self.vae.encode(x)[0]  # [B, d]
        start = z0[:, None].repeat(1, starts, 1)  # [B, R, d]
        if starts > 1:
            generators = make_generators(generator, self.seed, batch, x.device)
            noise = draw_normal(generators, (batch, starts - 1, z0.shape[1]), x.device,
                                z0.dtype)
            start[:, 1:] += self.start_std * noise
        anchor = z0.repeat_interleave(starts, 0)  # [B·R, d]
        target = x.repeat_interleave(starts, 0)  # [B·R, C, H, W]
        z = self._project(start.flatten(0, 1), anchor).requires_grad_()  # [B·R, d]
        optimizer = torch.optim.Adam([z], lr=self.lr)
        rows = batch * starts
        active = torch.ones(rows, dtype=torch.bool, device=x.device)
        steps = torch.zeros(rows, dtype=torch.long, device=x.device)
        history = torch.full((self.patience + 1, rows), float("nan"), device=x.device)
        for step in range(self.max_steps):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            cost, _, _ = self._cost(z[idx], target[idx])
            optimizer.zero_grad(set_to_none=True)
            cost.sum().backward()
            # history[-1] is the cost at this step, history[0] the cost `patience` steps ago
            history = history.roll(-1, 0)
            history[-1, idx] = cost.detach()
            before = z.detach().clone()
            optimizer.step()
            with torch.no_grad():
                moved = self._project(z, anchor)
                z.copy_(torch.where(active[:, None], moved, before))
            steps[idx] += 1
            if step >= self.patience:
                change = (history[-1] - history[0]).abs()
                settled = (change < self.abs_tol) | (change < self.rel_tol * history[0].abs())
                active &= ~settled
        with torch.no_grad():
            final = z.detach()
            cost, u_after, decoded = self._cost(final, target)
            best = cost.view(batch, starts).argmin(1)  # [B]
            pick = torch.arange(batch, device=x.device) * starts + best
            counterfactual = decoded[pick]
            maps = (counterfactual - x).abs().sum(1)  # [B, H, W]
            u_before = self.uncertainty_of(x)
        return CLUEResult(maps, counterfactual, final[pick],
                          steps.view(batch, starts).max(1).values,
                          u_before, u_after[pick])

    def attribute(self, x: Tensor, *, segments: Tensor | None = None,
                  generator: GeneratorArg = None) -> Tensor:
        """``|dec(z*) - x|`` summed over channels, ``[B, H, W]``; ``segments`` is ignored."""
        return self.explain(x, generator=generator).maps


class DeltaCLUE(CLUE):
    """δ-CLUE: CLUE in the ball ``‖z - z0‖ ≤ delta`` around the encoding, from ``starts``
    points (z0 and ``starts - 1`` draws of ``z0 + start_std · ε``), keeping the start of
    lowest cost. Defaults: δ = 3 and 4 starts, chosen on MNIST's validation split
    (docs/hyperparameters.md); ``start_std`` 0.15 as the δ-CLUE code."""

    name = "delta-clue"

    # every argument is spelled out again (not **kwargs): a method's settings, and so its
    # stored cells' keys, are read from its constructor's signature
    def __init__(self, posterior: PosteriorLike, vae: nn.Module,
                 uncertainty: UncertaintySpec = "total", *, lam_x: float = 0.01, lr: float = 0.1,
                 max_steps: int = 1000, rel_tol: float = 1e-2, abs_tol: float = 1e-3,
                 patience: int = 3, delta: float = 3.0, starts: int = 4, start_std: float = 0.15,
                 seed: int = 0) -> None:
        super().__init__(posterior, vae, uncertainty, lam_x=lam_x, lr=lr, max_steps=max_steps,
                         rel_tol=rel_tol, abs_tol=abs_tol, patience=patience, delta=delta,
                         starts=starts, start_std=start_std, seed=seed)
