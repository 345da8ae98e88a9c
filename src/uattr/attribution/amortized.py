"""An amortised explainer of the uncertainty: one forward pass of a small network gives the
map that :class:`~uattr.attribution.OptimizationUA` would learn image by image
(papers/000 §6 names amortisation as its future work; DESIGN §3.1).

A mask network ``g_θ`` maps an image to one logit per pixel; it is trained on images of a
training split, the posterior frozen, with the optimization-based method's own objective
(no maps as targets)::

    M_b   = σ((g_θ(x_b) + t_b) / τ)          Gumbel-sigmoid mask per pixel [H, W] (training)
    x'_b  = (1 - M_b) ⊙ x_b + M_b ⊙ blur(x_b, σ0)
    loss  = mean_b [ U(x'_b) + λ · mean_pixels M_b ]

and its map is ``σ(g_θ(x))``, with no draws: an image's map is the same alone and in any
batch. On segments (``segments=...``) the map is its mean over each segment. With
``first_order=True`` the map is averaged with the image's first-order blur effect
(:func:`~uattr.attribution.optimization.first_order_blur_effect`, the blur width σ0),
kept where positive and scaled by its largest pixel::

    map_b = ½ · (σ(g_θ(x_b)) + e⁺_b / max e⁺_b),      e⁺ = max(e, 0)     [H, W], in [0, 1]

which costs one forward and one backward pass of the posterior per image.

Trained that way from a random start the mask collapses to nothing on MNIST (the blurred
image's U gives too little gradient before the mask finds a region). :meth:`AmortizedUA.distill`
trains the same network on maps instead (binary cross-entropy to the per-image method's
probabilities ``p_b``, ``[N, H, W]``)::

    loss = mean_b mean_pixels BCE(σ(g_θ(x_b)), p_b)

which is what :func:`uattr.experiments.amortized.load_or_train_amortized` does with the
per-pixel maps of the training images a posterior is most unsure of.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..ops.checks import check_positive, check_positive_ints
from ..ops.perturb import gaussian_blur
from ..ops.segment import check_segments, segment_means
from ..uq import PosteriorLike, UncertaintySpec, check_images
from .base import UncertaintyAttribution, fingerprint
from .optimization import first_order_blur_effect, gumbel_sigmoid, logistic_noise

__all__ = ["AmortizedUA", "MaskNet"]

_TINY = torch.finfo(torch.float32).tiny


class MaskNet(nn.Module):
    """A small U-Net ``[B, C, H, W] -> [B, H, W]`` logits, any size: two 3×3 stages at full
    resolution, one at half, upsampled back and joined with the full-resolution features.
    About 10k parameters for 16 channels."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.in_channels, self.width = in_channels, width
        self.down = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.middle = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(width, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        full = self.down(x)  # [B, w, H, W]
        half = self.middle(F.max_pool2d(full, 2, ceil_mode=True))  # [B, 2w, ⌈H/2⌉, ⌈W/2⌉]
        back = F.interpolate(half, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return self.up(torch.cat([full, back], 1)).squeeze(1)  # [B, H, W]


class AmortizedUA(UncertaintyAttribution):
    """A mask network trained to do what the optimization-based method does, then one
    forward pass per batch (module docstring).

    Args:
        posterior, uncertainty: see :class:`~uattr.attribution.base.UncertaintyAttribution`.
        network: the mask network (default: a :class:`MaskNet` for the images' channels,
            made on the first :meth:`fit`).
        lam, tau, sigma_init: the objective's λ, the Gumbel-sigmoid's τ during training and
            the blur width σ0 as a fraction of the image side (as
            :class:`~uattr.attribution.OptimizationUA`'s).
        seed: seed of the network's initial weights, the batches' order and the draws.
        first_order: average the network's map with the first-order blur effect (module
            docstring): a guess of what blurring each pixel does, read off the posterior
            itself, beside the network's guess of what the per-image method would find.

    :meth:`fit` trains the network on images (``[N, C, H, W]``) and returns the explainer;
    :meth:`attribute` refuses to run before it has been trained or given one.
    """

    name = "amortized"

    def __init__(self, posterior: PosteriorLike, uncertainty: UncertaintySpec = "total", *,
                 network: nn.Module | None = None, lam: float = 3.0, tau: float = 0.1,
                 sigma_init: float = 0.05, seed: int = 0, first_order: bool = False) -> None:
        super().__init__(posterior, uncertainty)
        check_positive(lam=lam, allow_zero=True)
        check_positive(tau=tau, sigma_init=sigma_init)
        self.network, self.lam, self.tau, self.sigma_init, self.seed = (
            network, lam, tau, sigma_init, seed)
        self.first_order = first_order
        self.trained = network is not None

    # ------------------------------------------------------------------ training
    def objective(self, x: Tensor, logits: Tensor, noise: Tensor | None = None) -> Tensor:
        """``[B]``: ``U(x') + λ · mean M`` of each image under its mask logits ``[B, H, W]``
        (``noise``: logistic draws for a Gumbel-sigmoid mask; ``None``: ``M = σ(logits)``)."""
        mask = torch.sigmoid(logits) if noise is None else gumbel_sigmoid(logits, noise,
                                                                           self.tau)
        blurred = gaussian_blur(x, self.sigma_init * min(x.shape[-2:]))
        perturbed = (1 - mask[:, None]) * x + mask[:, None] * blurred
        return self.uncertainty_of(perturbed) + self.lam * mask.flatten(1).mean(1)

    def fit(self, images: Tensor, *, epochs: int = 1, batch_size: int = 64, lr: float = 1e-3,
            progress: bool = False) -> AmortizedUA:
        """Train the mask network on ``images`` ``[N, C, H, W]`` (a training split: never
        the images it will be judged on) with Adam, the posterior frozen (it gets no
        gradients). Returns ``self``."""
        images = self._check(images).detach()

        def loss(index: Tensor, generator: torch.Generator) -> Tensor:
            batch = images[index]
            uniform = torch.rand(batch.shape[0], *batch.shape[-2:], generator=generator)
            noise = logistic_noise(uniform).to(batch.device)
            return self.objective(batch, self.network(batch), noise).mean()

        return self._train(images, loss, epochs, batch_size, lr, progress, "training")

    def distill(self, images: Tensor, maps: Tensor, *, epochs: int = 10,
                batch_size: int = 64, lr: float = 2e-3,
                progress: bool = False) -> AmortizedUA:
        """Train the mask network to give ``maps`` ``[N, H, W]`` (probabilities in [0, 1],
        for example :class:`~uattr.attribution.OptimizationUA`'s per-pixel maps) of
        ``images`` ``[N, C, H, W]`` (a training split) by binary cross-entropy, with Adam;
        the posterior is never run. The defaults are those chosen on MNIST's validation
        split (``python tuning/amortized_distill.py``). Returns ``self``."""
        images = check_images(images, "images").detach()
        if maps.shape != (images.shape[0], *images.shape[-2:]):
            raise ValueError(f"maps: expected one map per image, shape "
                             f"{[images.shape[0], *images.shape[-2:]]}, got "
                             f"{list(maps.shape)}")
        if not torch.isfinite(maps).all() or maps.min() < 0 or maps.max() > 1:
            raise ValueError("maps: expected probabilities in [0, 1]")
        maps = maps.detach().to(images.device, images.dtype)

        def loss(index: Tensor, generator: torch.Generator) -> Tensor:
            return F.binary_cross_entropy_with_logits(self.network(images[index]),
                                                      maps[index])

        return self._train(images, loss, epochs, batch_size, lr, progress, "distilling")

    def _train(self, images: Tensor, loss: Callable[[Tensor, torch.Generator], Tensor],
               epochs: int, batch_size: int, lr: float, progress: bool,
               verb: str) -> AmortizedUA:
        """Adam on the mask network's parameters alone (the posterior gets no gradients),
        ``loss(indices of a batch, generator)`` over ``epochs`` seeded passes."""
        check_positive_ints(epochs=epochs, batch_size=batch_size)
        check_positive(lr=lr)
        generator = torch.Generator().manual_seed(self.seed)
        if self.network is None:
            torch.manual_seed(self.seed)  # the network's initial weights
            self.network = MaskNet(images.shape[1])
        self.network.to(images.device).train()
        parameters = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(parameters, lr=lr)
        total = epochs * -(-len(images) // batch_size)
        with tqdm(total=total, desc=f"{self.name}: {verb}", disable=not progress,
                  leave=False) as bar:
            for index in _batches(len(images), epochs, batch_size, generator):
                value = loss(index.to(images.device), generator)
                grads = torch.autograd.grad(value, parameters)  # the network's only
                for parameter, grad in zip(parameters, grads, strict=True):
                    parameter.grad = grad
                optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{value.item():.4f}")
        self.network.eval()
        self.trained = True
        return self

    # ------------------------------------------------------------------ the verb
    def attribute(self, x: Tensor, *, segments: Tensor | None = None) -> Tensor:
        """Maps ``[B, H, W]``: ``σ(g_θ(x))`` per pixel (averaged with the first-order blur
        effect with ``first_order``), or its mean over each segment."""
        if not self.trained or self.network is None:
            raise ValueError("AmortizedUA: the mask network is not trained: call fit(images) "
                             "on training images first, or pass network=")
        # the posterior runs only for the first-order effect: only then is it checked
        x = self._check(x) if self.first_order else check_images(x, "x")
        channels = getattr(self.network, "in_channels", x.shape[1])
        if channels != x.shape[1]:
            raise ValueError(f"x: the mask network takes {channels} channels, got images of "
                             f"shape {list(x.shape[1:])}")
        with torch.no_grad():
            maps = torch.sigmoid(self.network(x.detach()))  # [B, H, W]
        if self.first_order:
            maps = (maps + self.scaled_effect(x.detach())) / 2
        if segments is None:
            return maps
        segments = check_segments(segments, x)
        means = segment_means(maps, segments)  # [B, K]
        return means.gather(1, segments.flatten(1)).view_as(maps)

    def scaled_effect(self, x: Tensor) -> Tensor:
        """``[B, H, W]`` in [0, 1]: the first-order blur effect of each pixel
        (:func:`~uattr.attribution.optimization.first_order_blur_effect`, the blur width
        σ0) kept where positive and scaled by the image's largest, ``e⁺ / max e⁺``; one
        forward and one backward pass of the posterior. 0 where the largest is below a
        millionth of U(x): blurring no pixel moves U by what float32's seven digits
        resolve (a flat image, whose ``x - blur(x)`` is rounding), so there is nothing to
        scale up."""
        x = self._check(x).detach()
        values: list[Tensor] = []  # U(x) of each chunk, from the gradient's own passes

        def recorded(images: Tensor) -> Tensor:
            u = self.uncertainty_of(images)  # [n]
            values.append(u.detach())
            return u

        sigma0 = self.sigma_init * min(x.shape[-2:])
        effect = first_order_blur_effect(recorded, x, sigma0).clamp_min(0)  # [B, H, W]
        with torch.no_grad():
            peak = effect.flatten(1).amax(1)  # [B]
            resolved = (peak > 1e-6 * torch.cat(values))[:, None, None]
            return torch.where(resolved, effect / peak.clamp_min(_TINY)[:, None, None], 0.0)

    def settings(self) -> dict:
        return {**super().settings(), "network": fingerprint(self.network)}

    def key_settings(self) -> dict:
        """:meth:`settings` without ``first_order`` when it is off (results stored before
        it existed keep their keys)."""
        return {k: v for k, v in self.settings().items()
                if k != "first_order" or self.first_order}


def _batches(n: int, epochs: int, batch_size: int,
             generator: torch.Generator) -> Iterator[Tensor]:
    """The indices of ``epochs`` passes over ``n`` items in a seeded random order,
    ``batch_size`` at a time."""
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]
