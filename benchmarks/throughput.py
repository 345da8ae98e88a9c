"""Throughput of attributing a data set: images/s per method in one process, and
``uattr attribute`` with 1 and 2 Ray workers, with Ray's overhead per shard.

    .venv/bin/python benchmarks/throughput.py --n 400 --shard-size 200 --out runs/throughput

On the MNIST test split with the cached 5-member ensemble (trained first if missing).
Prints three tables and writes each as Markdown, CSV and JSON into ``--out`` (with
``run-throughput.json``: the command, the CPU and its threads), so that a page can quote
them (``--results DIR`` copies them there too):

1. ``methods``: images/s of each method in one process (``--methods``; all threads of
   the machine);
2. ``ray``: ``uattr attribute`` with the optimization-based method (slic): one process,
   Ray with 1 worker, Ray with 2 workers, as images/s and as a ratio to one process;
3. ``overhead``: Ray with 1 worker (one thread) against one process held to one thread,
   the same shards, as a ratio and in seconds per shard. Ray's start is timed apart.

With ``--stops`` it measures one table instead, ``stops`` (and ``run-throughput-stops.json``):
``uattr attribute`` with the optimization-based method (slic) in one process under each
stopping rule and start of ``uattr bench stopping`` (the cold start with the loss rule,
the default; the mask rule from the cold start, from the first-order warm start and from
the amortised explainer's map, ``--init amortized``; the movement rule), images/s and as a
ratio to the loss rule, on the same images (the explainer is loaded before any clock
starts).

With ``--amortized`` it measures the ``amortized`` table instead (and
``run-throughput-amortized.json``): ``uattr attribute`` in one process with the
optimization-based method on slic (its defaults: the table's headline row), the same
method per pixel under its mask rule, and the amortised explainer (one forward pass of its
mask network; shipped, else cached, else distilled before the clock starts) per pixel and
averaged over the slic segments of the first row (``amortized (slic)``, which segments each
image too), and its map averaged with the first-order blur effect over 25 slic segments
(``amortized + first-order (slic)``: one forward and one backward pass of the posterior
more), images/s and as a speed-up over the first, on the same images.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time

import torch

from uattr.experiments.amortized import load_or_train_amortized
from uattr.experiments.attribute import ShardPlan, attribute_dataset, attribute_shard, cpu_model
from uattr.experiments.job import load_posterior
from uattr.experiments.registry import ROWS, detection_methods
from uattr.experiments.runs import RunFolder, markdown_table, threads_label
from uattr.experiments.settings import Settings
from uattr.zoo import data

METHOD = "optimization (slic)"
# (start, stop) of the --stops table, as uattr bench stopping names them; the default first
STOPS = (("cold", "loss rule"), ("cold", "mask rule"), ("warm", "mask rule"),
         ("amortized", "mask rule"), ("cold", "movement rule"))
# the method's start of each start of STOPS
INIT_OF = {"cold": "zeros", "warm": "first-order", "amortized": "amortized"}


# (row, method, stop) of the --amortized table, the headline first
AMORTIZED_ROWS = ((f"{METHOD}, 500 steps (loss rule)", METHOD, "loss"),
                  ("optimization (pixels), mask rule", "optimization (pixels)", "mask"),
                  ("amortized", "amortized", "loss"),
                  ("amortized, slic segments", "amortized (slic)", "loss"),
                  ("amortized + first-order, 25 slic segments", "amortized + first-order (slic)",
                   "loss"))


def _timed_run(settings: Settings, n: int, shard_size: int, method: str = METHOD,
               **ray) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        attribute_dataset(settings, method, folder, limit=n, shard_size=shard_size,
                          log=lambda _: None, **ray)
        return time.perf_counter() - start


def _write(out: RunFolder, stem: str, title: str, rows: list[dict]) -> None:
    out.write_table(stem, rows)
    print(f"\n{title}\n\n{markdown_table(rows)}", flush=True)


def _with_stop(settings: Settings, start: str, stop: str) -> Settings:
    """``settings`` with the method's stopping rule and start of a --stops row."""
    method = dataclasses.replace(settings.method, stop=stop.split()[0], init=INIT_OF[start])
    return dataclasses.replace(settings, method=method)


def _stops(settings: Settings, n: int, shard_size: int) -> list[dict]:
    """The --stops table: ``uattr attribute`` under each (start, stop) of :data:`STOPS`."""
    rows = []
    for start, stop in STOPS:
        seconds = _timed_run(_with_stop(settings, start, stop), n, shard_size)
        rows.append({"start": start, "stop": stop, "seconds": seconds, "images/s": n / seconds,
                     "ratio to the loss rule": rows[0]["seconds"] / seconds if rows else 1.0})
        print(f"{start} start, {stop}: {n / seconds:.3f} images/s", flush=True)
    return rows


def _amortized(settings: Settings, n: int, shard_size: int, name: str) -> list[dict]:
    """The --amortized table: ``uattr attribute`` with each row of :data:`AMORTIZED_ROWS`
    (the explainer ``name`` made already)."""
    rows = []
    for row, method, stop in AMORTIZED_ROWS:
        chosen = dataclasses.replace(settings, method=dataclasses.replace(settings.method,
                                                                          stop=stop))
        seconds = _timed_run(chosen, n, shard_size, method)
        rows.append({"method": row, "seconds": seconds, "images/s": n / seconds,
                     f"speed-up over {METHOD}": rows[0]["seconds"] / seconds if rows else 1.0})
        print(f"{row}: {n / seconds:.3f} images/s", flush=True)
    for row in rows:  # the explainer's rows name it
        if row["method"].startswith("amortized"):
            row["method"] = f"{row['method']} ({name})"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="images (default 400)")
    parser.add_argument("--shard-size", type=int, default=200, help="images per shard")
    parser.add_argument("--methods", nargs="+", default=[METHOD, "grad", "ua-backprop",
                                                         "occlusion", "kernelshap-fixed (slic)"],
                        help="methods of the first table")
    parser.add_argument("--stops", action="store_true",
                        help="measure only the stops table: the optimization-based method "
                             "under each stopping rule and start (module docstring)")
    parser.add_argument("--amortized", action="store_true",
                        help="measure only the amortized table: the amortised explainer "
                             "against the per-image method (module docstring)")
    parser.add_argument("--out", default="runs/throughput", help="folder of the tables")
    parser.add_argument("--results", help="also copy the tables to this folder")
    args = parser.parse_args()
    settings = Settings()
    threads = torch.get_num_threads()
    on = threads_label(threads)
    posterior, info = load_posterior(settings)
    specs = detection_methods(posterior, settings.method)
    unknown = [name for name in args.methods if name != METHOD and (
        name not in specs or any(r.name == name and r.generative for r in ROWS))]
    if unknown:
        raise SystemExit(f"--methods: {unknown} are not methods this script runs")
    images = data.load("mnist", "test").images[: args.n]
    index = torch.arange(args.n)
    out = RunFolder(args.out)
    shards = ShardPlan(index, args.shard_size).count
    weights = dict(info.get("weights", {}))
    if args.amortized or args.stops:  # made (or loaded) before any clock starts
        _, made = load_or_train_amortized(posterior, settings)
        weights.update(made["weights"])
    record = ("run-throughput-stops.json" if args.stops
              else "run-throughput-amortized.json" if args.amortized else "run-throughput.json")
    out.write_json(record, {
        "command": " ".join(["python", *sys.argv]), "cpu": cpu_model(), "threads": threads,
        "images": args.n, "shard size": args.shard_size, "shards": shards,
        "weights": dict(sorted(weights.items()))})
    if args.amortized:
        _write(out, "amortized", f"uattr attribute, one process, {on}, {args.n} MNIST test "
               "images: the per-image method and the amortised explainer",
               _amortized(settings, args.n, args.shard_size, made["name"]))
        if args.results:
            out.publish(args.results)
        return
    if args.stops:
        _write(out, "stops", f"uattr attribute, {METHOD}, one process, {on}, "
               f"{args.n} MNIST test images, by stopping rule and start",
               _stops(settings, args.n, args.shard_size))
        if args.results:
            out.publish(args.results)
        return

    import ray

    one = _timed_run(settings, args.n, args.shard_size)  # also the method's own row below
    rows = [{"method": METHOD, "seconds": one, "images/s": args.n / one}]
    for name in args.methods:
        if name == METHOD:
            continue
        start = time.perf_counter()
        attribute_shard(specs[name], images, index, kind="total", seed=0, batch_size=100,
                        device="cpu")
        seconds = time.perf_counter() - start
        rows.append({"method": name, "seconds": seconds, "images/s": args.n / seconds})
    _write(out, "methods", f"One process, {on}, {args.n} MNIST test images", rows)

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    ray_runs = {w: _timed_run(settings, args.n, args.shard_size, workers=w) for w in (1, 2)}
    ray.shutdown()
    _write(out, "ray", f"uattr attribute, {METHOD}, {args.n} images in shards of "
           f"{args.shard_size} (Ray's start, {started:.1f} s, not counted)",
           [{"run": "one process", "seconds": one, "images/s": args.n / one, "ratio": 1.0}]
           + [{"run": f"Ray, {w} worker{'s' if w > 1 else ''}", "seconds": t,
               "images/s": args.n / t, "ratio": one / t} for w, t in ray_runs.items()])

    torch.set_num_threads(1)  # the same work as one Ray worker: one thread
    single = _timed_run(settings, args.n, args.shard_size)
    _write(out, "overhead", "Ray's overhead: 1 worker against one process on one thread, "
           "the same shards",
           [{"run": "Ray, 1 worker, against one process on 1 thread",
             "one process (s)": single, "Ray (s)": ray_runs[1],
             "ratio": ray_runs[1] / single, "per shard (s)": (ray_runs[1] - single) / shards,
             "Ray's start (s)": started}])
    if args.results:
        out.publish(args.results)


if __name__ == "__main__":
    main()
