"""Choose CLUE's distance weight λ_x and δ-CLUE's radius δ on MNIST's validation split
(docs/hyperparameters.md), by papers/002's blurring test.

    python tuning/clue.py --results docs/results/mnist-valid-n100-seed0

The 100 validation images of highest epistemic uncertainty under the shipped ensemble,
maps of the epistemic uncertainty from the shipped VAE, each setting a row of the
blurring test (MURR and AUC-URR at 2% / 5% of the pixels, medians over images). Each
setting is a cell of ``--out``, so a rerun reuses every finished one; beside the medians,
each row's mean per-image MURR difference from its method's published setting and that
difference's standard error (the same images in every row). The table
``clue_tuning.{md,csv,json}`` lands in ``--out`` and, with ``--results``, there too. The
test images are never read.
"""

from __future__ import annotations

import sys

import numpy as np
from sweeps import arguments, finish

from uattr import uncertainty
from uattr.attribution import CLUE, DeltaCLUE
from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.blur_test import run_blur_test
from uattr.experiments.common import MethodSpec
from uattr.experiments.job import evaluated_images, load_vae, log, running_command

KIND = "epistemic"
PUBLISHED = ("CLUE, λ_x = 0.01", "δ-CLUE, δ = 3")  # the papers' settings, uattr's defaults
# (label, class, settings): CLUE over λ_x, δ-CLUE over δ (4 starts) and, at δ = 3, λ_x
GRID = (
    *((f"CLUE, λ_x = {lam:g}", CLUE, {"lam_x": lam}) for lam in (0.01, 0.1, 1.0, 3.0)),
    *((f"δ-CLUE, δ = {delta:g}", DeltaCLUE, {"delta": delta}) for delta in (1.0, 2.0, 3.0, 5.0)),
    *((f"δ-CLUE, δ = 3, λ_x = {lam:g}", DeltaCLUE, {"delta": 3.0, "lam_x": lam})
      for lam in (0.1, 1.0)),
)


def main() -> None:
    args = arguments(__doc__, "runs/tuning-clue").parse_args()
    with running_command(sys.argv[1:], program="python tuning/clue.py"):
        settings = Settings(data=DataSettings("mnist", "valid"))
        job = open_job(settings, args.out)
        vae = load_vae(settings)[0]
        images, indices, _ = evaluated_images(job, args.n, KIND)
        specs = [MethodSpec(label, method(job.posterior, vae, KIND, **options))
                 for label, method, options in GRID]
        per_image: dict[str, dict[str, list[float]]] = {}
        rows, _ = run_blur_test(
            images, specs, lambda x: uncertainty(job.posterior(x), KIND), folder=job.out,
            data_key={"split": "valid", "kind": KIND, "indices": indices.tolist()}, log=log,
            per_image=per_image)
        rows = [{"setting": row.pop("method"), **row} for row in rows]
        for row in rows:  # against the published setting of its method, on the same images
            published = PUBLISHED[0] if row["setting"].startswith("CLUE") else PUBLISHED[1]
            for column in ("MURR 2%", "MURR 5%"):
                difference = (np.array(per_image[row["setting"]][column])
                              - np.array(per_image[published][column]))
                se = float(difference.std(ddof=1) / len(difference) ** 0.5)
                row[f"{column} − published, mean"] = float(difference.mean())
                row[f"{column}: its s.e."] = se
                row[f"{column}: in s.e."] = float(difference.mean()) / se if se else None
        text = (f"mnist valid, the {args.n} images of highest epistemic uncertainty under the "
                "shipped ensemble, maps of the epistemic uncertainty: papers/002's blurring "
                "test for each of CLUE's λ_x and δ-CLUE's δ (4 starts, start standard "
                "deviation 0.15, λ_x = 0.01 unless said). MURR (higher is better) and AUC-URR "
                "(lower is better) are medians over images.")
        finish(job, "clue_tuning", rows, "CLUE's and δ-CLUE's settings", text, "clue",
               {"n": args.n, "split": "valid", "uncertainty": KIND,
                "grid": [[label, method.__name__, options] for label, method, options in GRID]},
               args.results)


if __name__ == "__main__":
    main()
