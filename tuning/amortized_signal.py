"""Why the amortised explainer (:class:`uattr.AmortizedUA`) learns to blur nothing on MNIST:
on which training images does blurring a region pay under the method's own objective?

    python tuning/amortized_signal.py --results docs/results/mnist-valid-n100-seed0

The objective of the optimization-based method, ``U(x') + λ · mean M`` (λ = 3, a blur of
σ0 = 0.05 × the side, the shipped ensemble's total uncertainty), rewards blurring a region
only where that lowers U by more than ``λ`` times the region's share of the image. For
each kind of image this measures U, U with one region blurred, U with everything blurred,
the region's share of the image, and the share of images where blurring the region pays:

- training images, a random shape as the region (``uattr.zoo.tampering.random_shapes``);
- the same training images retouched inside that shape (shift, noise, blur, sharpening or
  strokes: corruptions disjoint from the benchmark's patch swap), the shape as the region;
- the validation split's detection images, the pasted patch as the region (the benchmark's
  own mechanism: an explainer trained on such images would be an oracle).

Then an :class:`~uattr.AmortizedUA` trained for one epoch on 10 000 retouched training
images is scored on the validation detection set (IoU, and its map's mean). Last, the
oracle: training images corrupted by the benchmark's own patch swap (the 2 000 of 20 000
whose U rose most, as the detection set is chosen), probed with the pasted patch, and an
explainer trained on them for 5 epochs, scored the same way: if even it blurs nothing,
the training images are not the only obstacle. The test split is never read.
"""

from __future__ import annotations

import torch
from sweeps import arguments, detection_scores, finish, validation_detection

from uattr import AmortizedUA
from uattr.experiments.benchmarks.detection import build_detection_set
from uattr.ops.perturb import gaussian_blur
from uattr.ops.segment import box_mask
from uattr.uq import uncertainty
from uattr.zoo import data
from uattr.zoo.tampering import random_shapes, retouch

LAM, SIGMA_INIT = 3.0, 0.05
N_TRAIN, N_FIT = 6000, 10_000
N_POOL, N_ORACLE, ORACLE_EPOCHS = 20_000, 2000, 5


def probe(posterior, images: torch.Tensor, region: torch.Tensor, name: str) -> dict:
    """One row: ``images [N, C, H, W]`` with ``region [N, 1, H, W]`` (1 inside)."""
    def u(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([uncertainty(posterior(x[i : i + 2000]), "total")
                              for i in range(0, len(x), 2000)])

    blurred = gaussian_blur(images, SIGMA_INIT * min(images.shape[-2:]))
    plain, everything = u(images), u(blurred)
    local = u(region * blurred + (1 - region) * images)
    area = region.flatten(1).mean(1)
    gain = plain - local - LAM * area  # > 0: the objective prefers blurring the region
    return {"images": name, "n": len(images), "U": float(plain.mean()),
            "U, region blurred": float(local.mean()), "U, all blurred": float(everything.mean()),
            "region share": float(area.mean()), "share where blurring the region pays":
            float((gain > 0).double().mean()), "mean gain of blurring the region":
            float(gain.mean())}


def box_region(boxes: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``[N, 1, H, W]`` of ``images [N, C, H, W]``: 1 inside each image's box ``(top, left,
    height, width)``."""
    return box_mask(boxes, *images.shape[-2:]).to(images.dtype)[:, None]


def main() -> None:
    args = arguments(__doc__, "runs/tuning-amortized").parse_args()
    with validation_detection(args, "amortized_signal.py") as (job, detection_set):
        train = data.load("mnist", "train")
        generator = torch.Generator().manual_seed(1)
        chosen = torch.randperm(len(train.images), generator=generator)
        images = train.images[chosen[:N_TRAIN]]
        shapes = random_shapes(len(images), *images.shape[-2:], generator).to(images.dtype)
        retouched, _ = retouch(images, generator, clean=0.0)
        boxes = detection_set.boxes
        patch = box_region(boxes, detection_set.images)
        rows = [probe(job.posterior, images, shapes, "training images, a random shape"),
                probe(job.posterior, retouched, shapes,
                      "training images retouched in that shape"),
                probe(job.posterior, detection_set.images, patch,
                      "validation detection images, the pasted patch (oracle)")]
        fit_images, _ = retouch(train.images[chosen[N_TRAIN : N_TRAIN + N_FIT]], generator,
                                clean=0.2)
        explainer = AmortizedUA(job.posterior, lam=LAM, sigma_init=SIGMA_INIT, seed=0).fit(
            fit_images, epochs=1, batch_size=64, lr=1e-3, progress=True)
        maps = explainer.attribute(detection_set.images)
        rows.append({"images": "AmortizedUA trained on 10 000 retouched training images, "
                               "scored on the validation detection images",
                     "n": len(maps), **detection_scores(maps, boxes),
                     "map mean": float(maps.mean())})
        # the oracle: the benchmark's corruption on training images (donors from the
        # training split too), the pasted patch as the region
        pool = data.Split(train.images[:N_POOL], train.labels[:N_POOL])
        swapped = build_detection_set(job.posterior, pool, train, n=N_ORACLE, seed=7)
        pasted = box_region(swapped.boxes, swapped.images)
        rows.append(probe(job.posterior, swapped.images, pasted,
                          "training images patch-swapped (oracle), the pasted patch"))
        oracle = AmortizedUA(job.posterior, lam=LAM, sigma_init=SIGMA_INIT, seed=0).fit(
            swapped.images, epochs=ORACLE_EPOCHS, batch_size=64, lr=1e-3, progress=True)
        maps = oracle.attribute(detection_set.images)
        rows.append({"images": "AmortizedUA trained on those 2 000 patch-swapped training "
                               "images (oracle), scored on the validation detection images",
                     "n": len(maps), **detection_scores(maps, boxes),
                     "map mean": float(maps.mean())})
        finish(job, "amortized_signal", rows, "Does blurring a region pay?", __doc__,
               "amortized", {"lam": LAM, "sigma_init": SIGMA_INIT, "n_train": N_TRAIN,
                             "n_fit": N_FIT, "n_pool": N_POOL, "n_oracle": N_ORACLE,
                             "oracle_epochs": ORACLE_EPOCHS}, args.results)


if __name__ == "__main__":
    main()
