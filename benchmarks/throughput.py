"""Throughput of attributing a data set: images/s per method in one process, and
``uattr attribute`` with 1 and 2 Ray workers, with Ray's overhead per shard.

    .venv/bin/python benchmarks/throughput.py --n 400 --shard-size 200

On the MNIST test split with the cached 5-member ensemble (trained first if missing).
Prints three tables:

1. images/s of each method in one process (``--methods``; all threads of the machine);
2. ``uattr attribute`` with the optimization-based method (slic): one process, Ray with 1
   worker, Ray with 2 workers, as images/s and as a ratio to one process;
3. Ray's overhead: Ray with 1 worker (one thread) over one process held to one thread,
   the same shards, and what that is in seconds per shard. Ray's start is timed apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from uattr.experiments.attribute import attribute_dataset, attribute_shard
from uattr.experiments.job import load_posterior
from uattr.experiments.registry import ROWS, detection_methods
from uattr.experiments.settings import Settings
from uattr.zoo import data

METHOD = "optimization (slic)"


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _timed_run(settings: Settings, n: int, shard_size: int, **ray) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        attribute_dataset(settings, METHOD, folder, limit=n, shard_size=shard_size,
                          log=lambda _: None, **ray)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="images (default 400)")
    parser.add_argument("--shard-size", type=int, default=200, help="images per shard")
    parser.add_argument("--methods", nargs="+", default=[METHOD, "grad", "ua-backprop",
                                                         "occlusion", "kernelshap (slic)"],
                        help="methods of the first table")
    args = parser.parse_args()
    settings = Settings()
    threads = torch.get_num_threads()
    posterior, _ = load_posterior(settings)
    specs = detection_methods(posterior, settings.method)
    images = data.load("mnist", "test").images[: args.n]
    index = torch.arange(args.n)

    import ray

    one = _timed_run(settings, args.n, args.shard_size)  # also the method's own row below
    rows = [{"method": METHOD, "images/s": args.n / one}]
    for name in args.methods:
        if name == METHOD:
            continue
        if name not in specs or any(r.name == name and r.generative for r in ROWS):
            raise SystemExit(f"--methods: {name!r} is not a method this script runs")
        start = time.perf_counter()
        attribute_shard(specs[name], images, index, kind="total", seed=0, batch_size=100,
                        device="cpu")
        rows.append({"method": name, "images/s": args.n / (time.perf_counter() - start)})
    print(f"\nOne process, {threads} threads, {args.n} MNIST test images\n")
    print(_table(rows))

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    ray_runs = {w: _timed_run(settings, args.n, args.shard_size, workers=w) for w in (1, 2)}
    ray.shutdown()
    print(f"\nuattr attribute, {METHOD}, {args.n} images in shards of {args.shard_size} "
          f"(Ray's start, {started:.1f} s, not counted)\n")
    print(_table([{"run": "one process", "images/s": args.n / one, "ratio": 1.0}]
                 + [{"run": f"Ray, {w} worker{'s' if w > 1 else ''}",
                     "images/s": args.n / t, "ratio": one / t} for w, t in ray_runs.items()]))

    torch.set_num_threads(1)  # the same work as one Ray worker: one thread
    single = _timed_run(settings, args.n, args.shard_size)
    shards = -(-args.n // args.shard_size)
    print("\nRay's overhead: 1 worker against one process on one thread, the same shards\n")
    print(_table([{"one process, 1 thread (s)": single, "Ray, 1 worker (s)": ray_runs[1],
                   "ratio": ray_runs[1] / single,
                   "overhead per shard (s)": (ray_runs[1] - single) / shards}]))


if __name__ == "__main__":
    main()
