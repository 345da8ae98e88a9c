"""Can a network learn the per-pixel maps where its own objective collapses? Amortising the
optimization-based method by distillation, on MNIST's validation split.

    python tuning/amortized_distill.py --results docs/results/mnist-valid-n100-seed0

:class:`uattr.AmortizedUA` trained with the method's own objective blurs nothing
(``python tuning/amortized_signal.py``). Yet on the training images the shipped ensemble
is most unsure of, with no corruption at all, the per-image method finds regions whose
blurring removes much of U and pays under its objective. This script measures that, then
trains the same mask network (:class:`uattr.attribution.amortized.MaskNet`) to regress the
per-image maps (:meth:`uattr.AmortizedUA.distill`: binary cross-entropy on the
probabilities), and scores both explainers on
the validation detection set against the per-image method there:

1. the ``N_TRAIN`` training images of highest total uncertainty (no patch, no corruption:
   the posterior alone chooses them) and their per-pixel maps, ``OptimizationUA`` with the
   per-pixel mask rule (``PIXEL_MASK_RULE``), one generator per image seeded by its index;
   how much of U blurring the found region (``p > 0.5``) removes, and on how many it pays
   (U falls by more than λ times the region's share);
2. AmortizedUA with its own objective on those images (its map collapses or not);
3. the mask network distilled from the maps: 10 and 30 epochs on their probabilities,
   10 on their binary masks (``p > 0.5``, what the benchmark's box is found on), and a
   network twice as wide (32 channels) on either; the library's default
   (:data:`uattr.experiments.amortized.DEFAULT_CONFIG`) is the variant of highest IoU;
4. the per-image method per pixel, mask rule, on the validation detection images: the
   reference whose IoU the amortised ones are a share of.

The validation detection images are the benchmark's (patch swap); none of them, nor any
patch, is seen in training. The test split is never read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from sweeps import arguments, detection_scores, finish, image_ious, validation_detection

from uattr import AmortizedUA, OptimizationUA
from uattr.experiments import Settings
from uattr.experiments.amortized import AmortizedConfig, distil
from uattr.experiments.common import most_uncertain
from uattr.experiments.registry import PIXEL_MASK_RULE
from uattr.ops.rng import index_generators
from uattr.zoo import data

LAM = 3.0
N_TRAIN = 3000
CHUNK = 250  # training images attributed at once
OWN_EPOCHS = 10  # of AmortizedUA with its own objective
# (width, binary targets, epochs) of each distilled network
VARIANTS = ((16, False, 10), (16, False, 30), (16, True, 10), (32, False, 10), (32, True, 10))
BATCH, LR = 64, 2e-3


def distilled_variants(posterior, settings: Settings, x: torch.Tensor,
                       maps: torch.Tensor) -> list[tuple[str, AmortizedUA]]:
    """Each variant of :data:`VARIANTS` distilled from ``maps`` of ``x`` by the library's
    :func:`uattr.experiments.amortized.distil`, named as the table names it."""
    made = []
    for width, binary, epochs in VARIANTS:
        config = AmortizedConfig(width=width, binary_targets=binary, epochs=epochs,
                                 batch_size=BATCH, lr=LR, seed=0)
        what = "binary masks" if binary else "targets"
        wide = f", {width} channels" if width != 16 else ""
        made.append((f"mask network distilled from the {what}, {epochs} epochs{wide}",
                     distil(posterior, settings, x, maps, config)))
    return made


def paired_to_reference(reference_iou: torch.Tensor, scored: list[tuple[str, torch.Tensor]],
                        boxes: torch.Tensor) -> list[dict]:
    """A row per ``(name, maps)`` of ``scored``: IoU / ADA on ``boxes``, its share of the
    reference's mean IoU, and the paired difference to the reference's per-image IoU
    ``[N]`` with its standard error."""
    rows = []
    for name, found in scored:
        iou = image_ious(found, boxes).double()
        difference = iou - reference_iou
        rows.append({"explainer": name, "n": len(found), **detection_scores(found, boxes),
                     "share of the per-image IoU": float(iou.mean() / reference_iou.mean()),
                     "IoU - per-image": float(difference.mean()),
                     "its s.e.": float(difference.std() / len(difference) ** 0.5)})
    return rows


def targets(job, path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The most uncertain training images ``[N, 1, H, W]``, their per-pixel maps, and U
    before and after blurring each map's region (stored at ``path``: resumable)."""
    if path.exists():
        stored = torch.load(path)
        return stored["x"], stored["maps"], stored["u_before"], stored["u_after"]
    x, indices, _ = most_uncertain(job.posterior, data.load("mnist", "train"), N_TRAIN,
                                   progress=True)
    method = OptimizationUA(job.posterior, "total", lam=LAM, stop="mask", **PIXEL_MASK_RULE,
                            seed=0, progress=True)
    parts = [method.attribute_with_diagnostics(
        x[i : i + CHUNK], generator=index_generators(0, indices[i : i + CHUNK].tolist()))
        for i in range(0, N_TRAIN, CHUNK)]
    stored = {"x": x, "maps": torch.cat([p.maps for p in parts]),
              "u_before": torch.cat([p.u_before for p in parts]),
              "u_after": torch.cat([p.u_after for p in parts])}
    tmp = path.with_suffix(".tmp")
    torch.save(stored, tmp)
    os.replace(tmp, path)
    return stored["x"], stored["maps"], stored["u_before"], stored["u_after"]


def main() -> None:
    args = arguments(__doc__, "runs/tuning-amortized-distill").parse_args()
    with validation_detection(args, "amortized_distill.py") as (job, detection_set):
        images, boxes = detection_set.images, detection_set.boxes
        x, maps, u_before, u_after = targets(job, Path(args.out) / "targets.pt")
        share = (maps > 0.5).flatten(1).float().mean(1)  # [N]: the region found
        rows = [{"explainer": f"per-image method on the {N_TRAIN} most uncertain training "
                              "images (the targets)",
                 "n": N_TRAIN, "U removed": float((1 - u_after / u_before).mean()),
                 "pays": float(((u_before - u_after) > LAM * share).float().mean()),
                 "region share": float(share.mean())}]
        reference = OptimizationUA(job.posterior, "total", lam=LAM, stop="mask",
                                   **PIXEL_MASK_RULE, seed=0).attribute(
            images, generator=index_generators(0, range(len(images))))
        base = image_ious(reference, boxes).double()
        scored = [("per-image method, per pixel, mask rule", reference)]
        own = AmortizedUA(job.posterior, lam=LAM, seed=0).fit(x, epochs=OWN_EPOCHS,
                                                               batch_size=BATCH)
        scored.append((f"AmortizedUA, its own objective, {OWN_EPOCHS} epochs",
                       own.attribute(images)))
        scored += [(name, distilled.attribute(images))
                   for name, distilled in distilled_variants(job.posterior, job.settings, x,
                                                             maps)]
        rows += [{**row, "map mean": float(found.mean())}
                 for row, (_, found) in zip(paired_to_reference(base, scored, boxes), scored,
                                            strict=True)]
        text = (f"mnist valid, N = {args.n} detection images of the shipped ensemble; "
                f"training: the {N_TRAIN} training images of highest total uncertainty "
                "(no corruption) and the per-image method's per-pixel maps of them (mask "
                "rule per pixel). First row: how much of U blurring each target's region "
                f"(p > 0.5) removes, on how many it pays (U falls by more than λ = {LAM:g} "
                "times its share) and its mean share. Then each explainer on the detection "
                "images: IoU / ADA, its share of the per-image method's IoU, the paired "
                "difference to it, and the map's mean.")
        finish(job, "amortized_distill", rows, "Amortising by distillation", text,
               "amortized-distill", {"n": args.n, "split": "valid", "n_train": N_TRAIN,
                                     "variants": [list(v) for v in VARIANTS], "lam": LAM,
                                     "batch": BATCH, "lr": LR}, args.results)


if __name__ == "__main__":
    main()
