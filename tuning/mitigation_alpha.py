"""Choose the attention strength α of the mitigation benchmark on MNIST's validation split
(docs/hyperparameters.md, papers/002 §5.2.2).

    python tuning/mitigation_alpha.py --results docs/results/mnist-valid-mitigation

For each α, ``uattr bench mitigation --split valid --n 500 --test-images 1000 --runs 3
--methods ua-backprop --alpha α``: the 500 training images of the test run, each with
UA-Backprop's epistemic map as attention in the latent space and on the input, a fresh
network trained on them per seed, ACC and NLL on 1000 random validation images. Every α
shares one run folder (its maps and the runs without attention are computed once; each
training run is a cell, so a rerun reuses every finished one). The table
``mitigation_alpha.{md,csv,json}`` has one row per α and space, with the paired
difference from no attention (each α's own table beside it, ``mitigation-alpha-<α>.*``,
and the attention maps in ``mitigation-alpha-0.5_attention.png``); they land in
``--out`` and, with ``--results``, there too. The test images are never read.
"""

from __future__ import annotations

import argparse
import sys

from sweeps import finish

from uattr.experiments import DataSettings, Settings, open_job
from uattr.experiments.benchmarks.mitigation import NO_ATTENTION, MitigationSettings, benchmark
from uattr.experiments.job import running_command

ALPHAS = (0.5, 1.0, 2.0, 5.0, 10.0)
METHOD = "ua-backprop"
COLUMNS = ("ACC (%)", "ACC sd", "NLL", "NLL sd", "ΔACC", "ΔACC s.e.", "ΔACC in s.e.", "runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="training images (default 500)")
    parser.add_argument("--test-images", type=int, default=1000,
                        help="validation images evaluated (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="network seeds per row (3)")
    parser.add_argument("--out", default="runs/tuning-mitigation", help="run folder")
    parser.add_argument("--results", help="also copy the table to this folder")
    args = parser.parse_args()
    with running_command(sys.argv[1:], program="python tuning/mitigation_alpha.py"):
        job = open_job(Settings(data=DataSettings("mnist", "valid")), args.out)
        rows: list[dict] = []
        for alpha in ALPHAS:
            settings = MitigationSettings(train_images=args.n, test_images=args.test_images,
                                          runs=args.runs, alpha=alpha,
                                          input_space=(METHOD,))
            # the attention maps do not depend on α: drawn once
            table = benchmark(job, settings, [METHOD], stem=f"mitigation-alpha-{alpha:g}",
                              figure=alpha == ALPHAS[0]).tables[0][1]
            if not rows:  # no attention: the same runs for every α
                plain = next(row for row in table if row["method"] == NO_ATTENTION)
                rows.append({"attention": NO_ATTENTION, "α": 0.0, "space": "–",
                             **{c: plain[c] for c in COLUMNS}})
            rows += [{"attention": f"α = {alpha:g}, {row['space']}", "α": alpha,
                      "space": row["space"], **{c: row[c] for c in COLUMNS}}
                     for row in table if row["method"] == METHOD]
        text = (f"mnist valid: {args.n} random training images (those of the test run), each "
                f"with {METHOD}'s epistemic map as attention, (1 + α·A) ⊙ features (latent) "
                f"or ⊙ image (input); a fresh network per seed; ACC and NLL on "
                f"{args.test_images} random validation images, mean and standard deviation "
                f"over {args.runs} seeds; ΔACC: the paired difference from {NO_ATTENTION} "
                "(α = 0), its standard error and the difference in standard errors.")
        finish(job, "mitigation_alpha", rows, "The attention's strength α", text,
               "mitigation", {"n": args.n, "test_images": args.test_images,
                              "runs": args.runs, "split": "valid", "method": METHOD,
                              "alphas": list(ALPHAS)}, args.results)


if __name__ == "__main__":
    main()
