"""The qualitative figures of papers/002 (Figures 3, 4 and 5; Figure 6 is the mitigation
benchmark's), drawn on the test images of highest epistemic uncertainty.

- Figure 3: every method's epistemic map of the same images.
- Figure 4: total, aleatoric and epistemic maps of one method (UA-Backprop, the paper's).
- Figure 5: blurring sequences: each image as its top pixels (by that method's epistemic
  map) are blurred step by step, with U under each frame.
"""

from __future__ import annotations

import dataclasses

import torch

from ... import viz
from ...metrics import blur_top_pixels
from ...uq import uncertainty
from ..commands import BenchCommand, chosen_methods
from ..common import attribute_in_batches
from ..job import Job, Section, choose_methods, evaluated_images, log
from ..registry import PIXEL_METHODS, pixel_methods

__all__ = ["COMMAND", "FIGURE_METHODS", "SEQUENCE_FRACTIONS", "benchmark"]

# papers/002 Figure 3's methods, then the optimization-based method at the pixel level
FIGURE_METHODS = ("ua-backprop", "grad", "smoothgrad", "fullgrad", "integrated gradients",
                  "blur ig", "clue", "delta-clue", "optimization (pixels)")
# Figure 5's frames: the share of the image blurred
SEQUENCE_FRACTIONS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)
KINDS = ("epistemic", "aleatoric", "total")


def benchmark(job: Job, n: int, names: list[str] | None = None,
              method: str = "ua-backprop") -> Section:
    """Figures 3-5 of papers/002 on the ``n`` images of highest epistemic uncertainty;
    ``method`` is the one of Figures 4 and 5."""
    settings = job.settings
    where, device = settings.data, settings.device
    images, indices, u = evaluated_images(job, n, "epistemic")
    wanted = list(names) if names is not None else list(FIGURE_METHODS)
    by_kind = {kind: pixel_methods(job.posterior,
                                   dataclasses.replace(settings.method, uncertainty=kind),
                                   job.vae_for(wanted if kind == "epistemic" else [method]))
               for kind in KINDS}
    titles = [f"#{i} U_e={v:.3f}" for i, v in zip(indices.tolist(), u.tolist(), strict=True)]

    log(f"figure 3: the epistemic maps of {len(wanted)} methods on {n} images")
    specs = choose_methods(by_kind["epistemic"], wanted, "figures")
    maps = {spec.name: attribute_in_batches(spec, images, settings.batch_size, device)
            for spec in specs}
    job.out.save_figure("figure3_epistemic_maps.png", viz.maps_grid(images, maps, titles=titles))

    log(f"figure 4: {method}'s total, aleatoric and epistemic maps")
    kinds = {kind: attribute_in_batches(choose_methods(by_kind[kind], [method], "figures")[0],
                                        images, settings.batch_size, device)
             for kind in KINDS}
    job.out.save_figure("figure4_uncertainty_kinds.png",
                        viz.maps_grid(images, kinds, titles=titles))

    log(f"figure 5: blurring sequences in the order of {method}'s epistemic map")
    x = images.to(device)
    frames = torch.stack([x if f == 0 else blur_top_pixels(x, kinds["epistemic"].to(device), f)
                          for f in SEQUENCE_FRACTIONS], 1)  # [B, T, C, H, W]
    with torch.no_grad():
        u_frames = uncertainty(job.posterior(frames.flatten(0, 1)), "epistemic").view(n, -1)
    job.out.write_table("figure5_uncertainty", [
        {"image": int(i), **{f"U_e {100 * f:g}%": float(v) for f, v in
                             zip(SEQUENCE_FRACTIONS, row.tolist(), strict=True)}}
        for i, row in zip(indices.tolist(), u_frames.cpu(), strict=True)])
    job.out.save_figure("figure5_blurring_sequences.png",
                        viz.blur_sequences(frames.cpu(), u_frames.cpu(),
                                           torch.tensor(SEQUENCE_FRACTIONS),
                                           title=f"top pixels of {method}'s epistemic map "
                                                 "blurred (5×5, σ = 2); U_e under each frame"))
    text = (f"The {n} {where.dataset} {where.split} images of highest epistemic uncertainty. "
            f"Figure 3: the epistemic maps of every method; Figure 4: {method}'s epistemic, "
            "aleatoric and total maps; Figure 5: the images as the top pixels of its epistemic "
            "map are blurred, with the epistemic uncertainty under each frame (papers/002 "
            "Figures 3-5).")
    return Section("Figures of papers/002", text, [],
                   ["figure3_epistemic_maps.png", "figure4_uncertainty_kinds.png",
                    "figure5_blurring_sequences.png"])


COMMAND = BenchCommand(
    "figures", "papers/002 Figures 3-5: every method's epistemic maps, one method's three "
    "kinds of maps, blurring sequences (--n: images, default 6)",
    lambda job, args: benchmark(job, args.n, chosen_methods(args)),
    methods=lambda args: PIXEL_METHODS, defaults={"n": 6})
