"""Speed of batching: seconds per image of a batch against images one at a time.

    .venv/bin/python benchmarks/batching.py --n 16 --steps 60

Uses randomly initialised MNIST-sized CNN members (the speed does not depend on the
weights) and reports the ratio one-at-a-time / batched for OptimizationUA and Grad.
"""

from __future__ import annotations

import argparse
import time

import torch

from uattr import Grad, OptimizationUA, as_posterior
from uattr.zoo.models import SmallCNN


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="images")
    parser.add_argument("--steps", type=int, default=60, help="optimization steps (no early stop)")
    args = parser.parse_args()
    torch.manual_seed(0)
    posterior = as_posterior([SmallCNN().eval() for _ in range(5)])
    x = torch.rand(args.n, 1, 28, 28)
    methods = {
        # no check before the last step: both ways do the same number of steps
        "optimization (pixels)": OptimizationUA(posterior, max_steps=args.steps,
                                                check_every=args.steps + 1),
        "grad": Grad(posterior),
    }
    print("| method | batched s/image | one-at-a-time s/image | ratio |\n|---|---|---|---|")
    for name, method in methods.items():
        batched = seconds(lambda m=method: m.attribute(x)) / args.n
        single = seconds(lambda m=method: [m.attribute(x[i : i + 1]) for i in range(args.n)])
        single /= args.n
        print(f"| {name} | {batched:.4f} | {single:.4f} | {single / batched:.1f}× |")


if __name__ == "__main__":
    main()
